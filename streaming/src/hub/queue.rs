//! The per-connection outgoing queue the shell puts between the room and a socket.
//!
//! A slow connection must not slow the room or hold memory without bound: frames queue up
//! to a count and a byte budget, and the push that would exceed either fails. The shell
//! then closes the socket with [`CLOSE_LAGGING`]; the client reconnects with `since` and
//! gets exactly what it missed (or a snapshot). Dropping individual frames instead would be
//! a silent gap, which the protocol forbids.

use std::collections::VecDeque;

use super::Frame;

/// WebSocket close code for "your connection fell behind; reconnect with `since`".
/// 4000-4999 is the application range (RFC 6455 §7.4.2).
pub const CLOSE_LAGGING: u16 = 4001;
/// Close code when the room closes a connection for protocol abuse.
pub const CLOSE_POLICY: u16 = 1008;
/// Close code when the event's room shuts down on this node (client may reconnect).
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Anything with a size in bytes, so the queue can bound memory, not just count.
pub trait QueueItem {
    fn byte_len(&self) -> usize;
}

impl QueueItem for Frame {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

impl QueueItem for bytes::Bytes {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

/// The push was refused: the connection must be closed with [`CLOSE_LAGGING`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// A bounded FIFO with drop-the-connection-on-overflow semantics. Synchronous and
/// lock-free by itself: the shell wraps it (e.g. a `Mutex` plus a `Notify`) or uses
/// the same limits on a bounded channel with `try_send`.
#[derive(Debug, Clone)]
pub struct OutboundQueue<T> {
    items: VecDeque<T>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    overflowed: bool,
}

impl<T: QueueItem> OutboundQueue<T> {
    pub fn new(max_items: usize, max_bytes: usize) -> OutboundQueue<T> {
        OutboundQueue {
            items: VecDeque::new(),
            bytes: 0,
            max_items: max_items.max(1),
            max_bytes,
            overflowed: false,
        }
    }

    /// Queues `item`, or reports overflow. After an overflow every push fails: the
    /// connection is finished and nothing after the gap may be delivered.
    pub fn push(&mut self, item: T) -> Result<(), Overflow> {
        let len = item.byte_len();
        if self.overflowed
            || self.items.len() >= self.max_items
            // One frame larger than the budget still goes through on an empty queue.
            || (!self.items.is_empty() && self.bytes + len > self.max_bytes)
        {
            self.overflowed = true;
            self.items.clear();
            self.bytes = 0;
            return Err(Overflow);
        }
        self.bytes += len;
        self.items.push_back(item);
        Ok(())
    }

    pub fn pop(&mut self) -> Option<T> {
        let item = self.items.pop_front()?;
        self.bytes -= item.byte_len();
        Some(item)
    }

    /// The queued items, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: usize) -> Frame {
        Frame::from_json("x".repeat(n))
    }

    #[test]
    fn bounded_by_count() {
        let mut q = OutboundQueue::new(2, 1000);
        assert!(q.push(f(1)).is_ok());
        assert!(q.push(f(1)).is_ok());
        assert_eq!(q.push(f(1)), Err(Overflow));
        assert!(q.overflowed());
        assert!(q.is_empty(), "an overflowed queue delivers nothing more");
        assert_eq!(q.push(f(1)), Err(Overflow));
    }

    #[test]
    fn bounded_by_bytes_and_drains() {
        let mut q = OutboundQueue::new(100, 10);
        assert!(q.push(f(20)).is_ok(), "one big frame alone is fine");
        assert_eq!(q.pop().map(|f| f.len()), Some(20));
        assert!(q.push(f(4)).is_ok());
        assert!(q.push(f(4)).is_ok());
        assert_eq!(q.bytes(), 8);
        assert_eq!(q.iter().count(), 2);
        assert!(q.pop().is_some() && q.pop().is_some());
        assert_eq!(q.bytes(), 0);
        assert!(q.push(f(6)).is_ok());
        assert_eq!(q.push(f(6)), Err(Overflow));
    }
}
