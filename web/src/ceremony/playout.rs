//! The live play-out: once a draw is computed and stored, its result is shown step by step
//! on the linked event's WebSocket (`draw.seed`, one `draw.number` per lottery number,
//! `draw.admitted` per kindergarten), then the draw is published (`draw.published`).
//!
//! Nothing shown here is computed here: every step is read from the stored, signed
//! transcript, so what viewers watch is exactly what anyone can verify. Progress is
//! stored, so a restarted server resumes where it stopped instead of starting over.

use std::collections::HashMap;
use std::time::Duration;

use lottery::{AppCode, SignedTranscript};
use streaming::hub::{DrawAdmittedInfo, DrawSeedInfo, DrawUpdate};

use crate::domain::draw::DrawState;
use crate::domain::event::EventId;
use crate::state::AppState;
use crate::store::{StepWrite, now_ms};

/// Progress is stored (and the lease renewed) at least this often.
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// A play-out lease not renewed for this long is taken over by another node.
const LEASE: Duration = Duration::from_secs(15);

/// The play-out steps of a transcript, in order (publication not included).
pub fn steps(signed: &SignedTranscript) -> Vec<DrawUpdate> {
    let transcript = &signed.transcript;
    let draw_id = transcript.announcement.draw_id.to_string();
    let sizes = unit_sizes(signed);
    let mut steps = Vec::with_capacity(2 + transcript.lottery.len() + transcript.admitted.len());
    steps.push(DrawUpdate::Seed(DrawSeedInfo {
        draw_id: draw_id.clone(),
        seed: transcript.seed.to_string(),
        reveals: transcript.reveals.iter().map(|r| r.to_hex()).collect(),
        beacon_text: transcript.beacon_text.clone(),
        units: transcript.lottery.len() as u64,
    }));
    for (i, unit) in transcript.lottery.iter().enumerate() {
        steps.push(DrawUpdate::Number {
            draw_id: draw_id.clone(),
            number: i as u64 + 1,
            unit: unit.to_string(),
            size: sizes.get(unit).copied().unwrap_or(1),
        });
    }
    for placement in &transcript.admitted {
        let kg = transcript
            .announcement
            .kindergartens
            .iter()
            .find(|k| k.code == placement.kg);
        steps.push(DrawUpdate::Admitted(DrawAdmittedInfo {
            draw_id: draw_id.clone(),
            kg: placement.kg.to_string(),
            name: kg.map(|k| k.name.clone()).unwrap_or_default(),
            seats: kg.map_or(0, |k| k.seats),
            units: placement.units.iter().map(ToString::to_string).collect(),
            children: placement
                .units
                .iter()
                .map(|u| sizes.get(u).copied().unwrap_or(1))
                .sum(),
        }));
    }
    steps
}

/// Unit id -> number of children in it.
pub fn unit_sizes(signed: &SignedTranscript) -> HashMap<AppCode, u64> {
    let mut groups: HashMap<&str, (AppCode, u64)> = HashMap::new();
    let mut sizes = HashMap::new();
    for leaf in &signed.transcript.leaves {
        if leaf.group.is_none() {
            sizes.insert(leaf.app, 1);
        } else {
            let entry = groups.entry(leaf.group.as_str()).or_insert((leaf.app, 0));
            entry.0 = entry.0.min(leaf.app);
            entry.1 += 1;
        }
    }
    for (unit, size) in groups.into_values() {
        sizes.insert(unit, size);
    }
    sizes
}

/// Starts (or resumes) the play-out of a drawn draw in the background.
pub fn spawn(state: AppState, draw_id: String) {
    if !state.ceremony.start_playing(&draw_id) {
        return;
    }
    tokio::spawn(async move {
        if let Err(error) = run(&state, &draw_id).await {
            tracing::error!(draw = %draw_id, error = ?error, "draw play-out failed");
        }
        state.ceremony.stop_playing(&draw_id);
    });
}

/// At start and then periodically: resumes every draw whose play-out did not finish and
/// that no live node is playing (a node that died mid-play-out loses its lease).
pub async fn resume_all(state: &AppState) -> anyhow::Result<()> {
    let now = now_ms();
    let stale_before = now - i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
    for draw in state.store.draws_in_state(DrawState::Drawn).await? {
        let mine = draw.playout_node.as_deref() == Some(node(state));
        let orphaned = draw.playout_node.is_none()
            || draw.playout_heartbeat.is_none_or(|t| t < stale_before)
            || (mine && !state.ceremony.is_playing(&draw.id));
        if orphaned {
            tracing::info!(draw = %draw.id, played = draw.played, "resuming draw play-out");
            spawn(state.clone(), draw.id);
        }
    }
    Ok(())
}

fn node(state: &AppState) -> &str {
    &state.ceremony.owner
}

/// Looks for orphaned play-outs every few seconds (another node may have died).
pub fn spawn_watchdog(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = state.shutdown.cancelled() => return,
            }
            if let Err(error) = resume_all(&state).await {
                tracing::warn!(error = ?error, "draw play-out check failed");
            }
        }
    });
}

async fn run(state: &AppState, draw_id: &str) -> anyhow::Result<()> {
    let Some(draw) = state.store.draw(draw_id).await? else {
        return Ok(());
    };
    if draw.state != DrawState::Drawn {
        return Ok(());
    }
    let stale_before = now_ms() - i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
    if !state
        .store
        .claim_playout(draw_id, node(state), now_ms(), stale_before)
        .await?
    {
        tracing::debug!(draw = %draw_id, "another node plays this draw out");
        return Ok(());
    }
    let (Some(transcript), Some(hash)) = (&draw.transcript, &draw.transcript_hash) else {
        anyhow::bail!("a drawn draw without a transcript");
    };
    let signed = state.ceremony.cache.transcript(draw_id, hash, || {
        Ok(lottery::verify::parse(transcript.as_bytes())?)
    })?;
    let event = match draw.event_id.as_deref().and_then(EventId::parse) {
        Some(id) => state.store.event(&id).await?,
        None => None,
    };
    let steps = steps(&signed);
    let pace = state.ceremony.pace;
    let start = usize::try_from(draw.played).unwrap_or(0).min(steps.len());
    let mut saved = tokio::time::Instant::now();
    for (i, step) in steps.iter().enumerate().skip(start) {
        if state.shutdown.is_cancelled() {
            state
                .store
                .set_draw_played(draw_id, i as i64, node(state), now_ms())
                .await?;
            return Ok(());
        }
        if let Some(event) = &event {
            // The room stores the step's index with it before showing it, so a restart
            // during the pause below resumes after this step (`store::hub`).
            state
                .hub
                .draw_update(event, step.clone(), Some(i as u64))
                .await;
            let wait = match step {
                // The seed is the moment of truth: give viewers a breath before the numbers.
                DrawUpdate::Seed(_) => pace * 5,
                DrawUpdate::Admitted(_) => pace * 3,
                _ => pace,
            };
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = state.shutdown.cancelled() => {}
                }
            }
        }
        if saved.elapsed() >= SAVE_EVERY || !pace.is_zero() {
            state
                .store
                .set_draw_played(draw_id, i as i64 + 1, node(state), now_ms())
                .await?;
            saved = tokio::time::Instant::now();
        }
    }
    state
        .store
        .set_draw_played(draw_id, steps.len() as i64, node(state), now_ms())
        .await?;
    let published = state
        .store
        .draw_step(
            draw_id,
            (DrawState::Drawn, DrawState::Published),
            StepWrite::default(),
            "gongkai",
            &format!("transcript {hash}"),
            now_ms(),
        )
        .await?;
    if published && let Some(event) = &event {
        state
            .hub
            .draw_update(
                event,
                DrawUpdate::Published {
                    draw_id: draw_id.to_owned(),
                    transcript_hash: hash.clone(),
                },
                None,
            )
            .await;
    }
    // Let the play-out's last frames leave before anything else happens to the room.
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
