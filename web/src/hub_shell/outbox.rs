//! [`Outbox`]: one socket's bounded outgoing queue, shared by the room task (which
//! pushes and never waits) and the socket's send loop (which drains).

use std::sync::{Arc, Mutex, PoisonError};

use streaming::hub::{CLOSE_LAGGING, Frame, OutboundQueue};
use tokio::sync::Notify;

/// Frames written per socket flush.
const DRAIN_BATCH: usize = 64;

#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Debug)]
struct State {
    queue: OutboundQueue<Frame>,
    close: Option<(u16, &'static str)>,
}

/// What the send loop does next.
#[derive(Debug)]
pub enum Next {
    Frames(Vec<Frame>),
    Close(u16, &'static str),
}

impl Outbox {
    pub fn new(max_frames: usize, max_bytes: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            state: Mutex::new(State {
                queue: OutboundQueue::new(max_frames, max_bytes),
                close: None,
            }),
            notify: Notify::new(),
        })
    }

    /// Queues a frame. `false`: the queue overflowed, the socket is being closed with
    /// 4001 and the caller must forget the connection.
    pub fn push(&self, frame: Frame) -> bool {
        let mut state = self.lock();
        if state.close.is_some() {
            return true;
        }
        let ok = state.queue.push(frame).is_ok();
        if !ok {
            state.close = Some((CLOSE_LAGGING, "connection fell behind; resume with since"));
        }
        drop(state);
        self.notify.notify_one();
        ok
    }

    /// Closes after the frames already queued are written.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut state = self.lock();
        if state.close.is_none() {
            state.close = Some((code, reason));
        }
        drop(state);
        self.notify.notify_one();
    }

    /// Waits for frames to write or the close.
    pub async fn next(&self) -> Next {
        loop {
            {
                let mut state = self.lock();
                if !state.queue.is_empty() {
                    return Next::Frames(state.queue.drain(DRAIN_BATCH));
                }
                if let Some((code, reason)) = state.close {
                    return Next::Close(code, reason);
                }
            }
            // `notify_one` stores a permit when nobody waits, so a push between the check
            // above and this await is not missed.
            self.notify.notified().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover the data if something did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_then_closes_and_overflow_closes_with_4001() {
        let outbox = Outbox::new(2, 1 << 20);
        assert!(outbox.push(Frame::from_json("a")));
        outbox.close(1001, "bye");
        assert!(matches!(outbox.next().await, Next::Frames(f) if f.len() == 1));
        assert!(matches!(outbox.next().await, Next::Close(1001, _)));

        let slow = Outbox::new(2, 1 << 20);
        assert!(slow.push(Frame::from_json("a")));
        assert!(slow.push(Frame::from_json("b")));
        assert!(!slow.push(Frame::from_json("c")));
        assert!(matches!(slow.next().await, Next::Close(CLOSE_LAGGING, _)));
    }
}
