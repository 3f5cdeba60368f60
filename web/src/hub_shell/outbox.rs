//! [`Outbox`]: one socket's write side, shared by the room task (which pushes and never
//! waits) and the socket's task (which writes).
//!
//! Frames arrive framed already (`wire`), the same `Bytes` for every viewer, so a push
//! is a reference-count increment and the socket task writes them with no per-socket
//! framing or copy: everything queued goes out in one vectored write. The queue is
//! bounded; overflow closes with 4001.
//!
//! Measured against the room writing into each socket itself when nothing was queued
//! (docs/benchmarks.md, "Framed once, written raw by each socket's task"): that made a
//! broadcast one long poll of the room task, on one core, and was slower than letting
//! the sockets' tasks write in parallel.

use std::io;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use streaming::hub::{CLOSE_LAGGING, OutboundQueue};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;

use super::wire;

/// The socket's write half.
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// Queued frames written per system call when the socket task catches up.
const WRITE_BATCH: usize = 64;

pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the socket task: something was queued, or the socket is to be closed.
    notify: Notify,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

struct State {
    writer: Writer,
    /// The frame being written: the part the socket has not taken yet.
    current: Option<Bytes>,
    /// Whole frames waiting behind `current`.
    queue: OutboundQueue<Bytes>,
    close: Option<Closing>,
    /// Writing failed (the peer is gone): everything else is dropped.
    failed: bool,
}

#[derive(Debug, Clone, Copy)]
enum Closing {
    /// Send a close frame after what is queued, then end the connection.
    Frame(u16, &'static str),
    /// The peer closed: write what is queued (the close reply among it), then end.
    Finish,
}

/// How [`Outbox::write_queued`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Nothing left to write; wait for more.
    Idle,
    /// The connection is finished (closed, or the peer is gone).
    Done,
}

impl Outbox {
    pub fn new(writer: Writer, max_frames: usize, max_bytes: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            state: Mutex::new(State {
                writer,
                current: None,
                queue: OutboundQueue::new(max_frames, max_bytes),
                close: None,
                failed: false,
            }),
            notify: Notify::new(),
        })
    }

    /// Queues a framed message for the socket task. `false`: the queue overflowed, the
    /// socket is being closed with 4001 and the caller must forget the connection.
    pub fn push(&self, bytes: Bytes) -> bool {
        let mut state = self.lock();
        if state.close.is_some() || state.failed {
            return true;
        }
        let was_idle = state.idle();
        // Overflow drops the queue but not `current`: a frame is never cut short.
        if state.queue.push(bytes).is_err() {
            state.close = Some(Closing::Frame(
                CLOSE_LAGGING,
                "connection fell behind; resume with since",
            ));
            drop(state);
            self.notify.notify_one();
            return false;
        }
        drop(state);
        // A socket task that is writing finds this in the queue without being told.
        if was_idle {
            self.notify.notify_one();
        }
        true
    }

    /// Closes with `code` after the frames already queued are written.
    pub fn close(&self, code: u16, reason: &'static str) {
        self.closing(Closing::Frame(code, reason));
    }

    /// The peer closed: write what is queued, then end.
    pub fn finish(&self) {
        self.closing(Closing::Finish);
    }

    fn closing(&self, closing: Closing) {
        let mut state = self.lock();
        if state.close.is_none() {
            state.close = Some(closing);
        }
        drop(state);
        self.notify.notify_one();
    }

    /// The socket task's side: waits until there is something to do, writes it, and
    /// returns when the queue is empty again or the connection is finished.
    pub async fn write_queued(&self) -> Drained {
        self.notify.notified().await;
        std::future::poll_fn(|cx| self.poll_write_queued(cx)).await
    }

    fn poll_write_queued(&self, cx: &mut Context<'_>) -> Poll<Drained> {
        let mut state = self.lock();
        loop {
            if state.failed {
                return Poll::Ready(Drained::Done);
            }
            if state.idle() {
                match state.close {
                    None => return Poll::Ready(Drained::Idle),
                    Some(Closing::Frame(code, reason)) => {
                        state.close = Some(Closing::Finish);
                        state.current = Some(wire::close(code, reason));
                        continue;
                    }
                    Some(Closing::Finish) => {
                        // Best effort: the connection ends either way.
                        let _ = state.writer.as_mut().poll_shutdown(cx);
                        state.failed = true;
                        return Poll::Ready(Drained::Done);
                    }
                }
            }
            match state.poll_write_some(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => state.failed = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover the data if something did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn idle(&self) -> bool {
        self.current.is_none() && self.queue.is_empty()
    }

    /// One vectored write of `current` and the frames behind it.
    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut written = {
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
            let mut count = 0;
            for (slice, bytes) in slices
                .iter_mut()
                .zip(self.current.iter().chain(self.queue.iter()))
            {
                *slice = IoSlice::new(bytes);
                count += 1;
            }
            match self
                .writer
                .as_mut()
                .poll_write_vectored(cx, &slices[..count])
            {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        };
        loop {
            let Some(mut front) = self.current.take().or_else(|| self.queue.pop()) else {
                break;
            };
            if written < front.len() {
                front.advance(written);
                self.current = Some(front);
                break;
            }
            written -= front.len();
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, DuplexStream};

    use super::*;

    fn new_outbox(capacity: usize, frames: usize) -> (Arc<Outbox>, DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(capacity);
        let (_, write) = tokio::io::split(ours);
        (Outbox::new(Box::pin(write), frames, 1 << 20), theirs)
    }

    async fn read_exactly(peer: &mut DuplexStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        peer.read_exact(&mut buf).await.expect("read");
        buf
    }

    fn spawn_writer(outbox: &Arc<Outbox>) -> tokio::task::JoinHandle<Drained> {
        let outbox = Arc::clone(outbox);
        tokio::spawn(async move { outbox.write_queued().await })
    }

    #[tokio::test]
    async fn writes_in_order_through_a_socket_that_takes_a_little_at_a_time() {
        let (outbox, mut peer) = new_outbox(8, 16);
        assert!(outbox.push(Bytes::from_static(b"0123456789")));
        assert!(outbox.push(Bytes::from_static(b"abc")));
        let writer = spawn_writer(&outbox);
        assert_eq!(read_exactly(&mut peer, 13).await, b"0123456789abc");
        assert_eq!(writer.await.expect("task"), Drained::Idle);
        assert!(outbox.push(Bytes::from_static(b"next")));
        let writer = spawn_writer(&outbox);
        assert_eq!(read_exactly(&mut peer, 4).await, b"next");
        assert_eq!(writer.await.expect("task"), Drained::Idle);
    }

    #[tokio::test]
    async fn overflow_closes_with_4001_after_the_frame_begun() {
        let (outbox, mut peer) = new_outbox(4, 2);
        assert!(outbox.push(Bytes::from_static(b"abcdef")));
        // The socket takes 4 bytes; "ef" is left of the frame being written.
        let writer = spawn_writer(&outbox);
        let mut first = [0; 4];
        peer.read_exact(&mut first).await.expect("read");
        assert!(outbox.push(Bytes::from_static(b"gh")));
        assert!(outbox.push(Bytes::from_static(b"ij")));
        assert!(
            !outbox.push(Bytes::from_static(b"kl")),
            "third queued frame"
        );
        assert!(
            outbox.push(Bytes::from_static(b"mn")),
            "ignored once closing"
        );
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest)
            .await
            .expect("read to the shutdown");
        let close = wire::close(CLOSE_LAGGING, "connection fell behind; resume with since");
        assert_eq!(
            [&first[..], &rest].concat(),
            [&b"abcdef"[..], &close].concat(),
            "the frame begun is finished, the queue dropped, then the close"
        );
        assert_eq!(writer.await.expect("task"), Drained::Done);
    }

    #[tokio::test]
    async fn close_and_finish_write_what_is_queued_first() {
        let (outbox, mut peer) = new_outbox(1024, 4);
        assert!(outbox.push(Bytes::from_static(b"hi")));
        outbox.close(1001, "bye");
        assert_eq!(outbox.write_queued().await, Drained::Done);
        let mut all = Vec::new();
        peer.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, [&b"hi"[..], &wire::close(1001, "bye")].concat());

        let (finishing, mut peer) = new_outbox(1024, 4);
        assert!(finishing.push(Bytes::from_static(b"pong")));
        finishing.finish();
        assert_eq!(finishing.write_queued().await, Drained::Done);
        let mut all = Vec::new();
        peer.read_to_end(&mut all).await.expect("read");
        assert_eq!(
            all, b"pong",
            "no close frame of ours after the peer's close"
        );
    }
}
