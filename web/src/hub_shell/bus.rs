//! The bus between `gongkai serve` processes serving the same event: in-process (one
//! node, the default; also several hubs in one test process) or NATS core pub/sub.
//!
//! Payloads are bytes on a subject per event ([`room_subject`]); the room's
//! `BusMessage` JSON is the payload. Delivery is at most once and unordered across
//! publishers, which is what the hub core's sequencer design assumes.
//!
//! The NATS client reconnects by itself; [`Bus::link`] says whether it is connected and
//! counts reconnections, so rooms can hold failover while the bus is down and catch up
//! when it is back (`Input::BusConnection`), and `/readyz` can report a lost bus.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};

use crate::domain::event::EventId;

/// Messages an in-process subscriber may fall behind by before it misses some (the room
/// notices the gap and asks for a sync, as with NATS).
const LOCAL_CAPACITY: usize = 4096;

/// The subject of an event's room traffic.
pub fn room_subject(event: &EventId) -> String {
    format!("gongkai.events.{event}")
}

/// The subject of "the event changed" notices from nodes without a room for it.
pub fn changes_subject(event: &EventId) -> String {
    format!("gongkai.events.{event}.changed")
}

#[derive(Debug, Clone)]
pub enum Bus {
    Local(LocalBus),
    Nats {
        client: async_nats::Client,
        link: watch::Receiver<Link>,
    },
}

/// The state of this process's connection to the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub connected: bool,
    /// Connections made so far (1 after the first): a changed value means the link was
    /// lost and made again, even if nobody saw it down.
    pub connections: u64,
}

/// The longest wait between reconnection attempts: short, so that every node is back
/// well within the rooms' peer timeout once the NATS server is.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(1000);

/// Subjects to broadcast channels, shared by clones.
#[derive(Debug, Clone, Default)]
pub struct LocalBus {
    subjects: Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>,
}

impl Bus {
    pub fn local() -> Bus {
        Bus::Local(LocalBus::default())
    }

    pub async fn connect_nats(url: &str) -> anyhow::Result<Bus> {
        let (tx, link) = watch::channel(Link {
            connected: true,
            connections: 1,
        });
        let client = async_nats::ConnectOptions::new()
            .name("gongkai")
            .reconnect_delay_callback(|attempts| {
                let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
                (Duration::from_millis(100) * attempts).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("bus: connected to NATS");
                            tx.send_modify(|link| {
                                if !link.connected {
                                    link.connected = true;
                                    link.connections += 1;
                                }
                            });
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("bus: NATS connection lost; reconnecting");
                            tx.send_modify(|link| link.connected = false);
                        }
                        // Each failed reconnection attempt: the "lost" warning said it.
                        async_nats::Event::ClientError(error) => {
                            tracing::debug!(%error, "bus: NATS client error");
                        }
                        other => tracing::info!(event = %other, "bus: NATS event"),
                    }
                }
            })
            .connect(url)
            .await?;
        Ok(Bus::Nats { client, link })
    }

    /// Whether other processes may be on this bus (new rooms then wait for a sync).
    pub fn is_shared(&self) -> bool {
        matches!(self, Bus::Nats { .. })
    }

    /// Whether messages can go out now (the in-process bus always can).
    pub fn connected(&self) -> bool {
        match self {
            Bus::Local(_) => true,
            Bus::Nats { link, .. } => link.borrow().connected,
        }
    }

    /// The connection's state as it changes (`None`: the in-process bus, always up).
    pub fn link(&self) -> Option<watch::Receiver<Link>> {
        match self {
            Bus::Local(_) => None,
            Bus::Nats { link, .. } => Some(link.clone()),
        }
    }

    pub async fn subscribe(&self, subject: &str) -> anyhow::Result<Subscription> {
        match self {
            Bus::Local(local) => Ok(Subscription::Local(local.sender(subject).subscribe())),
            Bus::Nats { client, .. } => Ok(Subscription::Nats(
                client.subscribe(subject.to_owned()).await?,
            )),
        }
    }

    /// Publishes; failures are logged (the room recovers from lost messages).
    pub async fn publish(&self, subject: &str, payload: Bytes) {
        match self {
            Bus::Local(local) => {
                // No subscriber is not an error: nobody else runs the room.
                let _ = local.sender(subject).send(payload);
            }
            Bus::Nats { client, .. } => {
                if let Err(error) = client.publish(subject.to_owned(), payload).await {
                    tracing::warn!(%error, subject, "bus publish failed");
                }
            }
        }
    }

    /// Drops in-process channels nobody listens to any more.
    pub fn forget(&self, subject: &str) {
        if let Bus::Local(local) = self {
            local.forget(subject);
        }
    }
}

impl LocalBus {
    fn sender(&self, subject: &str) -> broadcast::Sender<Bytes> {
        let mut subjects = self
            .subjects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subjects
            .entry(subject.to_owned())
            .or_insert_with(|| broadcast::channel(LOCAL_CAPACITY).0)
            .clone()
    }

    fn forget(&self, subject: &str) {
        let mut subjects = self
            .subjects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if subjects
            .get(subject)
            .is_some_and(|s| s.receiver_count() == 0)
        {
            subjects.remove(subject);
        }
    }
}

pub enum Subscription {
    Local(broadcast::Receiver<Bytes>),
    Nats(async_nats::Subscriber),
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Subscription::Local(_) => "Subscription::Local",
            Subscription::Nats(_) => "Subscription::Nats",
        })
    }
}

impl Subscription {
    /// The next payload; `None` when the bus is gone.
    pub async fn next(&mut self) -> Option<Bytes> {
        match self {
            Subscription::Local(receiver) => loop {
                match receiver.recv().await {
                    Ok(payload) => return Some(payload),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "in-process bus subscriber fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
            Subscription::Nats(subscriber) => subscriber.next().await.map(|m| m.payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_bus_delivers_to_every_subscriber_of_a_subject() {
        let bus = Bus::local();
        let mut a = bus.subscribe("s").await.unwrap();
        let mut b = bus.subscribe("s").await.unwrap();
        let mut other = bus.subscribe("t").await.unwrap();
        bus.publish("s", Bytes::from_static(b"x")).await;
        assert_eq!(a.next().await.unwrap(), "x");
        assert_eq!(b.next().await.unwrap(), "x");
        bus.publish("t", Bytes::from_static(b"y")).await;
        assert_eq!(other.next().await.unwrap(), "y");
        drop((a, b));
        bus.forget("s");
        let Bus::Local(local) = &bus else { panic!() };
        assert!(!local.subjects.lock().unwrap().contains_key("s"));
    }
}
