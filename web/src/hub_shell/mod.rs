//! The async shell around `streaming::hub`: rooms, WebSockets, persistence and the bus.
//!
//! # Layout
//! - [`Hub`]: this node's rooms (one task per event with connections), its node id, the
//!   bus, and the tasks to wait for at shutdown.
//! - `room_task`: the task that owns one `Room`, feeds it and carries out its effects.
//! - `upgrade`: the WebSocket handshake, keeping the raw upgraded connection.
//! - `socket`: one WebSocket (one task: the outbox's writer and a receive loop).
//! - `outbox`: a socket's write side: a bounded queue of framed bytes (overflow closes
//!   with 4001), written with one vectored write.
//! - `wire`: server frames as bytes, framed once for every viewer.
//! - `persist`: the per-room database writer.
//! - `bus`: in-process or NATS fan-out between nodes.
//! - `api`: `GET /ws/events/{id}`, `/api/v1/events/{id}/record`, the staff answer API.

mod api;
pub mod bus;
mod origin;
mod outbox;
mod persist;
mod room_task;
mod socket;
mod upgrade;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use streaming::hub::{
    ConnId, EventInfo, EventStatus, Millis, NodeId, RoomConfig, SensitiveMode, SensitiveWords,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use api::{api_routes, ws_routes};
pub use bus::Bus;

use crate::config::{HubSettings, SensitiveModeSetting};
use crate::domain::event::{self, Event, EventId};
use crate::state::AppState;
use crate::store::Store;
use room_task::{ChangeNotice, Command};

/// Commands a room may have queued before senders wait (socket readers then slow down).
const ROOM_QUEUE: usize = 1024;

/// Tells the event's room (on every node) that the event changed.
pub fn event_changed(state: &AppState, event: &Event) {
    state.hub.event_changed(event);
}

/// This node's rooms. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub(Arc<HubInner>);

#[derive(Debug)]
pub struct HubInner {
    node: NodeId,
    bus: Bus,
    store: Store,
    options: HubOptions,
    rooms: Mutex<HashMap<EventId, mpsc::Sender<Command>>>,
    /// The event of each open room, as this node last saw it: a WebSocket upgrade for a
    /// room that is already open needs no database read (at tens of thousands of
    /// connects per minute those reads exhausted the pool).
    events: Mutex<HashMap<EventId, Arc<Event>>>,
    next_conn: AtomicU64,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// The hub's knobs, from `[hub]` settings (tests build them directly).
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub room: RoomConfig,
    /// A room with no connections closes after this long.
    pub room_idle: Duration,
    pub queue_frames: usize,
    pub queue_bytes: usize,
}

impl HubOptions {
    /// Reads the sensitive-word file; `shared`: other nodes may serve the same events.
    pub fn from_settings(settings: &HubSettings, shared: bool) -> anyhow::Result<HubOptions> {
        let mode = match settings.sensitive_mode {
            SensitiveModeSetting::Mask => SensitiveMode::Mask,
            SensitiveModeSetting::Reject => SensitiveMode::Reject,
        };
        let sensitive = match &settings.sensitive_words_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "configuration key `hub.sensitive_words_file`: cannot read {}",
                        path.display()
                    )
                })?;
                SensitiveWords::parse(&text, mode)
                    .context("configuration key `hub.sensitive_words_file`")?
            }
            None => SensitiveWords::default(),
        };
        let mut room = RoomConfig {
            coalesce: Duration::from_millis(settings.coalesce_ms),
            sensitive,
            slow_mode_per_ip: settings.slow_mode_per_ip,
            votes_per_question_per_ip: settings.votes_per_question_per_ip,
            ..RoomConfig::default()
        };
        if !settings.limit_per_ip {
            let unlimited = streaming::hub::RateLimit::new(1e9, 1e9);
            room.chat_rate_per_ip = unlimited;
            room.question_rate_per_ip = unlimited;
            room.like_rate_per_ip = unlimited;
            room.slow_mode_per_ip = u32::MAX;
            room.votes_per_question_per_ip = u32::MAX;
        }
        if !shared {
            // Alone on the bus: nobody to wait for.
            room.join_grace = Duration::ZERO;
        }
        Ok(HubOptions {
            room,
            room_idle: Duration::from_secs(settings.room_idle_secs),
            queue_frames: settings.queue_frames,
            queue_bytes: settings.queue_bytes,
        })
    }
}

impl Hub {
    pub fn new(store: Store, bus: Bus, options: HubOptions, shutdown: CancellationToken) -> Hub {
        Hub(Arc::new(HubInner {
            node: new_node_id(),
            bus,
            store,
            options,
            rooms: Mutex::new(HashMap::new()),
            events: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            shutdown,
            tasks: TaskTracker::new(),
        }))
    }

    pub fn node(&self) -> &NodeId {
        &self.0.node
    }

    /// Rooms open on this node.
    pub fn rooms(&self) -> usize {
        self.lock_rooms().len()
    }

    /// Waits (at most `timeout`) for rooms, sockets and writers to finish after the
    /// shutdown token fired: sockets get their 1001 close, the database its last rows.
    pub async fn drain(&self, timeout: Duration) {
        self.0.tasks.close();
        if tokio::time::timeout(timeout, self.0.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("hub tasks did not finish in time");
        }
    }

    /// The event's room on this node, opened if needed.
    fn room(&self, event: &Event) -> mpsc::Sender<Command> {
        let mut rooms = self.lock_rooms();
        if let Some(room) = rooms.get(&event.id)
            && !room.is_closed()
        {
            return room.clone();
        }
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        rooms.insert(event.id.clone(), tx.clone());
        self.lock_events()
            .insert(event.id.clone(), Arc::new(event.clone()));
        self.0
            .tasks
            .spawn(room_task::run(self.clone(), event.clone(), rx));
        tx
    }

    fn existing_room(&self, event: &EventId) -> Option<mpsc::Sender<Command>> {
        self.lock_rooms()
            .get(event)
            .filter(|r| !r.is_closed())
            .cloned()
    }

    /// Removes a room from the registry if nothing is waiting in its queue (or always,
    /// with `force`), then refuses further commands. Joins that raced in are dropped
    /// unanswered, so their sockets open a new room.
    fn retire(&self, event: &EventId, rx: &mut mpsc::Receiver<Command>, force: bool) -> bool {
        let mut rooms = self.lock_rooms();
        if !force && !rx.is_empty() {
            return false;
        }
        // The entry is this room's: a replacement is only opened after it is gone.
        rooms.remove(event);
        self.lock_events().remove(event);
        drop(rooms);
        rx.close();
        while rx.try_recv().is_ok() {}
        true
    }

    fn next_conn(&self) -> ConnId {
        ConnId(self.0.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// The event of a room open on this node, if there is one (no database read).
    pub fn open_event(&self, id: &EventId) -> Option<Arc<Event>> {
        let rooms = self.lock_rooms();
        rooms.get(id).filter(|r| !r.is_closed())?;
        self.lock_events().get(id).cloned()
    }

    /// Feeds the change to this node's room, or (no room here) tells the other nodes.
    pub fn event_changed(&self, event: &Event) {
        tracing::debug!(event = %event.id, status = %event.status, "event changed");
        let info = event_info(event);
        if let Some(slot) = self.lock_events().get_mut(&event.id) {
            *slot = Arc::new(event.clone());
        }
        if let Some(room) = self.existing_room(&event.id) {
            let event_id = event.id.clone();
            tokio::spawn(async move {
                if room.send(Command::Changed(info)).await.is_err() {
                    tracing::debug!(event = %event_id, "room closed before the change arrived");
                }
            });
            return;
        }
        if !self.0.bus.is_shared() {
            return;
        }
        let bus = self.0.bus.clone();
        let subject = bus::changes_subject(&event.id);
        match serde_json::to_vec(&ChangeNotice { event: info }) {
            Ok(payload) => {
                tokio::spawn(async move { bus.publish(&subject, Bytes::from(payload)).await });
            }
            Err(error) => tracing::error!(%error, "change notice failed to serialize"),
        }
    }

    /// Broadcasts a draw play-out step in the event's room (opened here if needed, so
    /// the step is sequenced even when nobody on this node watches). `step`: its index in
    /// the play-out, stored with it before it is shown (`None` for the publication).
    pub async fn draw_update(
        &self,
        event: &Event,
        update: streaming::hub::DrawUpdate,
        step: Option<u64>,
    ) {
        let mut command = Command::Draw { update, step };
        // A room may be retiring as we send; one retry reaches its replacement.
        for _ in 0..2 {
            match self.room(event).send(command).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => command = returned,
            }
        }
        tracing::warn!(event = %event.id, "draw step not delivered: the room kept closing");
    }

    /// Tells the event's room (opened here if needed) whether its publisher is connected;
    /// the room broadcasts `media.state` when that changes.
    pub async fn media_changed(&self, event: &Event, publishing: bool) {
        if self
            .room(event)
            .send(Command::Media(publishing))
            .await
            .is_err()
        {
            // The room retired as we sent: its replacement starts from a fresh state and
            // the next reconciliation asserts it again.
            tracing::debug!(event = %event.id, "media state not delivered: the room closed");
        }
    }

    /// As [`Hub::media_changed`], only to a room open on this node, without waiting (a
    /// periodic re-assertion must not keep idle rooms open).
    pub fn assert_media(&self, id: &EventId, publishing: bool) {
        if let Some(room) = self.existing_room(id) {
            let _ = room.try_send(Command::Media(publishing));
        }
    }

    /// The bus between nodes (also carries media control, `crate::on_air`).
    pub fn bus(&self) -> &Bus {
        &self.0.bus
    }

    fn lock_events(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, Arc<Event>>> {
        self.0.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, mpsc::Sender<Command>>> {
        // The lock guards plain map operations that do not panic.
        self.0.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The event as rooms and snapshots show it (assigned staff left out).
pub fn event_info(event: &Event) -> EventInfo {
    let mut details = match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    for private in ["id", "title", "status", "broadcasters", "moderators"] {
        details.remove(private);
    }
    EventInfo {
        id: event.id.to_string(),
        title: event.title.clone(),
        status: match event.status {
            event::EventStatus::Scheduled => EventStatus::Scheduled,
            event::EventStatus::Live => EventStatus::Live,
            event::EventStatus::Ended => EventStatus::Ended,
            event::EventStatus::Cancelled => EventStatus::Cancelled,
        },
        details,
    }
}

/// Unique per process start: the pid and random bits (the smallest live id sequences).
fn new_node_id() -> NodeId {
    NodeId(format!(
        "n{:08x}-{}",
        rand::random::<u32>(),
        std::process::id()
    ))
}

fn now_millis() -> Millis {
    Millis(u64::try_from(crate::store::now_ms()).unwrap_or(0))
}
