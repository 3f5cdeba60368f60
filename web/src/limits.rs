//! Connection limits beside the rate limiters: open WebSockets and WHEP sessions per
//! client IP, and a deadline for receiving a request's body.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use hyper::body::Frame;

/// How long a client over a per-IP cap is told to wait (`Retry-After`).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts open things (WebSockets) per client IP, up to `max` each.
#[derive(Debug, Clone)]
pub struct IpSlots {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One counted slot; released when dropped.
#[derive(Debug)]
pub struct IpSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl IpSlots {
    pub fn new(max: usize) -> IpSlots {
        IpSlots {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for `ip`, or `None` when it already holds `max`.
    pub fn acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        let mut open = lock(&self.open);
        let count = open.entry(ip).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            open: self.open.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// WHEP viewer sessions per client IP. A session lives in the SFU until the viewer
/// leaves, its peer fails or the event ends, so ended ones are found by asking it.
#[derive(Debug)]
pub struct MediaSessions {
    max: usize,
    by_ip: Mutex<HashMap<IpAddr, Vec<Tracked>>>,
    next: std::sync::atomic::AtomicU64,
}

#[derive(Debug, PartialEq, Eq)]
enum Tracked {
    /// An offer being answered.
    Pending(u64),
    Open {
        event: String,
        session: String,
    },
}

/// A place held for an offer being answered; dropped unconfirmed, it is freed.
#[derive(Debug)]
pub struct Reservation<'a> {
    sessions: &'a MediaSessions,
    ip: IpAddr,
    token: u64,
}

impl MediaSessions {
    pub fn new(max: usize) -> MediaSessions {
        MediaSessions {
            max,
            by_ip: Mutex::default(),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Holds a place for one more session from `ip`, after forgetting the sessions that
    /// `alive(event, session)` says have ended; `None` when `ip` is at the cap.
    pub fn reserve(
        &self,
        ip: IpAddr,
        alive: impl Fn(&str, &str) -> bool,
    ) -> Option<Reservation<'_>> {
        let mut by_ip = lock(&self.by_ip);
        let tracked = by_ip.entry(ip).or_default();
        tracked.retain(|t| match t {
            Tracked::Pending(_) => true,
            Tracked::Open { event, session } => alive(event, session),
        });
        if tracked.len() >= self.max {
            return None;
        }
        let token = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracked.push(Tracked::Pending(token));
        Some(Reservation {
            sessions: self,
            ip,
            token,
        })
    }

    /// Forgets addresses with no session (called periodically).
    pub fn prune(&self, alive: impl Fn(&str, &str) -> bool) {
        let mut by_ip = lock(&self.by_ip);
        for tracked in by_ip.values_mut() {
            tracked.retain(|t| match t {
                Tracked::Pending(_) => true,
                Tracked::Open { event, session } => alive(event, session),
            });
        }
        by_ip.retain(|_, t| !t.is_empty());
    }
}

impl Reservation<'_> {
    /// The offer was answered: the place is now `session` of `event`.
    pub fn confirm(self, event: &str, session: &str) {
        let mut by_ip = lock(&self.sessions.by_ip);
        if let Some(t) = by_ip
            .get_mut(&self.ip)
            .and_then(|t| t.iter_mut().find(|t| **t == Tracked::Pending(self.token)))
        {
            *t = Tracked::Open {
                event: event.to_owned(),
                session: session.to_owned(),
            };
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut by_ip = lock(&self.sessions.by_ip);
        if let Some(tracked) = by_ip.get_mut(&self.ip) {
            tracked.retain(|t| *t != Tracked::Pending(self.token));
            if tracked.is_empty() {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// `body`, given `timeout` from the end of its request's header to arrive in full (not
/// per chunk: a client sending a byte every few seconds is cut off too). Responses are
/// not limited: long downloads and WebSockets (which have no request body) are unaffected.
pub fn deadline_body(body: Body, timeout: Duration) -> Body {
    if body.is_end_stream() {
        return body; // nothing to wait for (most GETs)
    }
    Body::new(DeadlineBody {
        body,
        sleep: Box::pin(tokio::time::sleep(timeout)),
    })
}

struct DeadlineBody {
    body: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// The body did not arrive within `[limits] body_timeout_secs`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_ip_and_released() {
        let slots = IpSlots::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let one = slots.acquire(a).unwrap();
        let _two = slots.acquire(a).unwrap();
        assert!(slots.acquire(a).is_none());
        assert!(slots.acquire(b).is_some());
        drop(one);
        assert!(slots.acquire(a).is_some());
    }

    #[test]
    fn media_sessions_count_open_and_pending_ones() {
        let sessions = MediaSessions::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let first = sessions.reserve(ip, |_, _| true).unwrap();
        first.confirm("e", "s1");
        let pending = sessions.reserve(ip, |_, _| true).unwrap();
        assert!(sessions.reserve(ip, |_, _| true).is_none());
        drop(pending);
        let second = sessions.reserve(ip, |_, _| true).unwrap();
        second.confirm("e", "s2");
        assert!(sessions.reserve(ip, |_, _| true).is_none());
        // s1 ended.
        assert!(sessions.reserve(ip, |_, s| s != "s1").is_some());
    }
}
