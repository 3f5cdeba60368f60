//! On air means on air: the event's status is the one switch for its media, on every node.
//!
//! A status change (start, end, reopen, cancel, or an event following its publisher) is
//! stored first; then [`status_changed`] carries it to the hub (the pages), this node's SFU
//! and, over the bus, every other node's SFU. Three things keep a node right when a bus
//! message is lost or late: each WHIP/WHEP request hands the SFU the status it has just
//! read, a reconciliation pass every [`RECONCILE_EVERY`] re-reads the status of every
//! event with media on this node, and the SFU orders what it hears
//! (`streaming::sfu::air`), so stale news never undoes an end.
//!
//! The SFU's publisher changes go the other way: [`spawn`] turns them into the room's
//! `media.state` broadcasts (pages connect their players when the event is live and a
//! publisher is there) and moves an event that follows its publisher to `live`.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use streaming::sfu::SfuEvent;
use streaming::sfu::air::{Air, AirState};

use crate::domain::event::{Event, EventId, EventStatus};
use crate::state::AppState;
use crate::store::now_ms;

/// The bus subject every node listens on for status changes made elsewhere.
pub const AIR_SUBJECT: &str = "gongkai.media.air";
/// How often a node re-reads the status of the events it has media for.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// A status change as it crosses the bus.
#[derive(Debug, Serialize, Deserialize)]
struct AirNotice {
    event: String,
    air: AirName,
    since_ms: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AirName {
    Rehearsal,
    Live,
    Ended,
}

impl From<Air> for AirName {
    fn from(air: Air) -> Self {
        match air {
            Air::Rehearsal => AirName::Rehearsal,
            Air::Live => AirName::Live,
            Air::Ended => AirName::Ended,
        }
    }
}

impl From<AirName> for Air {
    fn from(air: AirName) -> Self {
        match air {
            AirName::Rehearsal => Air::Rehearsal,
            AirName::Live => Air::Live,
            AirName::Ended => Air::Ended,
        }
    }
}

/// What the event's stored status means for its media, stamped with when it began (so
/// the SFU can tell newer news from older).
pub fn air_of(event: &Event) -> AirState {
    match event.status {
        // The first state: anything later supersedes it.
        EventStatus::Scheduled => AirState::new(Air::Rehearsal, 0),
        EventStatus::Live => AirState::new(
            Air::Live,
            event.started_ms.max(event.reopened_ms).unwrap_or(0),
        ),
        EventStatus::Ended => AirState::new(Air::Ended, event.ended_ms.unwrap_or(i64::MAX)),
        // Final: nothing supersedes a cancellation.
        EventStatus::Cancelled => AirState::new(Air::Ended, i64::MAX),
    }
}

/// The event's status changed (already stored): tell the pages, this node's media and
/// every other node's. Returns once this node's sessions are closed (for an end).
pub async fn status_changed(state: &AppState, event: &Event) {
    crate::hub_shell::event_changed(state, event);
    let air = air_of(event);
    state.sfu.set_air(event.id.as_str(), air).await;
    let bus = state.hub.bus();
    if !bus.is_shared() {
        return;
    }
    let notice = AirNotice {
        event: event.id.as_str().to_owned(),
        air: air.air.into(),
        since_ms: air.since_ms,
    };
    match serde_json::to_vec(&notice) {
        Ok(payload) => bus.publish(AIR_SUBJECT, Bytes::from(payload)).await,
        Err(error) => tracing::error!(%error, "air notice failed to serialize"),
    }
}

/// Starts the tasks that keep media and status in step on this node: the bus listener,
/// the SFU's publisher changes, and the reconciliation pass.
pub async fn spawn(state: &AppState) -> anyhow::Result<()> {
    if state.hub.bus().is_shared() {
        let mut notices = state.hub.bus().subscribe(AIR_SUBJECT).await?;
        let state = state.clone();
        tokio::spawn(async move {
            while let Some(payload) = notices.next().await {
                let Ok(notice) = serde_json::from_slice::<AirNotice>(&payload) else {
                    tracing::warn!("unreadable air notice on the bus");
                    continue;
                };
                if EventId::parse(&notice.event).is_none() {
                    continue;
                }
                let air = AirState::new(notice.air.into(), notice.since_ms);
                state.sfu.set_air(&notice.event, air).await;
            }
        });
    }
    spawn_publisher_changes(state);
    spawn_reconciliation(state);
    Ok(())
}

/// Publisher up or gone: the room's `media.state`, and an event that follows its
/// publisher goes live when it comes up.
fn spawn_publisher_changes(state: &AppState) {
    let mut changes = state.sfu.subscribe();
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            let (event_id, publishing) = match changes.recv().await {
                Ok(SfuEvent::PublisherConnected { event_id }) => (event_id, true),
                Ok(SfuEvent::PublisherGone { event_id }) => (event_id, false),
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    // Reconciliation re-asserts what was missed.
                    tracing::warn!(missed, "on-air control fell behind the SFU's events");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let Some(id) = EventId::parse(&event_id) else {
                continue;
            };
            let event = match state.store.event(&id).await {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the event of a publisher change");
                    continue;
                }
            };
            state.hub.media_changed(&event, publishing).await;
            if publishing && event.follow_publisher && event.status == EventStatus::Scheduled {
                follow_publisher(&state, &id).await;
            }
        }
    });
}

/// An event that follows its publisher goes live when the publisher's connection is up.
async fn follow_publisher(state: &AppState, id: &EventId) {
    match state
        .store
        .set_event_status(id, &[EventStatus::Scheduled], EventStatus::Live, now_ms())
        .await
    {
        Ok(Some(event)) => {
            tracing::info!(event_id = %id, "event live: following its publisher");
            status_changed(state, &event).await;
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "could not follow the publisher"),
    }
}

/// Every [`RECONCILE_EVERY`]: the stored status of each event with media on this node goes
/// to the SFU again (a lost bus notice is repaired here), and a connected publisher is
/// asserted to the event's room (a no-op unless the room missed it).
fn spawn_reconciliation(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RECONCILE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = state.shutdown.cancelled() => return,
            }
            for (event_id, media) in state.sfu.statuses() {
                let Some(id) = EventId::parse(&event_id) else {
                    continue;
                };
                let Ok(Some(event)) = state.store.event(&id).await else {
                    continue;
                };
                state.sfu.set_air(&event_id, air_of(&event)).await;
                if media.publishing {
                    state.hub.assert_media(&id, true);
                }
            }
        }
    });
}
