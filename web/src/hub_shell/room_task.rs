//! One task per room: owns the `Room`, feeds it commands, bus messages and ticks, and
//! carries out its effects (queue frames, close sockets, persist, publish).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use streaming::hub::{
    BusMessage, ClientFrame, ConnId, Effect, Entry, ErrorCode, EventInfo, Input, Millis, Op, Room,
    StaffRole, Viewer,
};
use tokio::sync::{mpsc, oneshot};

use super::bus::{Subscription, changes_subject, room_subject};
use super::outbox::Outbox;
use super::persist::{self, Job};
use super::{Hub, event_info, now_millis, wire};
use crate::domain::event::Event;

/// What sockets, the staff API and `event_changed` ask of a room.
#[derive(Debug)]
pub enum Command {
    Join {
        conn: ConnId,
        viewer: Viewer,
        role: Option<StaffRole>,
        since: Option<u64>,
        outbox: Arc<Outbox>,
        /// Answered once the room has taken the connection; dropped if the room retired
        /// first (the socket then asks the hub for a new room).
        joined: oneshot::Sender<()>,
    },
    Leave {
        conn: ConnId,
    },
    Text {
        conn: ConnId,
        text: String,
    },
    /// A staff action from the HTTP API, through a connection that exists only for it.
    Staff {
        viewer: Viewer,
        role: StaffRole,
        frame: ClientFrame,
        reply: oneshot::Sender<Result<(), ErrorCode>>,
    },
    /// The event was edited or changed status (on this node).
    Changed(EventInfo),
    /// A step of a draw's live play-out; `step`: its index in the play-out.
    Draw {
        update: streaming::hub::DrawUpdate,
        step: Option<u64>,
    },
    /// The event's publisher connected (`true`) or went away (`false`).
    Media(bool),
}

/// "The event changed", published by a node that has no room for the event; the
/// sequencer's node applies it (so it happens once).
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeNotice {
    pub event: EventInfo,
}

struct Slot {
    outbox: Arc<Outbox>,
    /// In the fan-out set (after its `Join` effects were carried out).
    joined: bool,
}

struct Shell {
    hub: Hub,
    event: Event,
    room: Room,
    conns: BTreeMap<ConnId, Slot>,
    staff: HashMap<ConnId, oneshot::Sender<Result<(), ErrorCode>>>,
    persist: mpsc::UnboundedSender<Job>,
    publish: mpsc::UnboundedSender<Bytes>,
}

/// The room's life: load the seed, run until shutdown or idle, leave the cluster.
pub async fn run(hub: Hub, event: Event, mut rx: mpsc::Receiver<Command>) {
    let subject = room_subject(&event.id);
    let mut room_bus = subscribe(&hub, &subject).await;
    let mut changes_bus = subscribe(&hub, &changes_subject(&event.id)).await;
    let options = &hub.0.options;
    let seed = match hub
        .0
        .store
        .room_seed(
            &event.id,
            options.room.recent_messages,
            crate::store::now_ms(),
        )
        .await
    {
        Ok(seed) => seed,
        Err(error) => {
            tracing::error!(%error, event = %event.id, "cannot load the room's state; not opening it");
            hub.retire(&event.id, &mut rx, true);
            return;
        }
    };
    let now = now_millis();
    let (room, effects) = Room::new(
        hub.0.node.clone(),
        event_info(&event),
        seed,
        options.room.clone(),
        now,
    );
    tracing::info!(event = %event.id, node = %hub.0.node.0, "room opened");
    let mut link = hub.0.bus.link();
    let persist = persist::spawn(&hub.0.tasks, hub.0.store.clone(), event.id.clone());
    let publish = spawn_publisher(&hub, subject.clone());
    let mut shell = Shell {
        hub: hub.clone(),
        event,
        room,
        conns: BTreeMap::new(),
        staff: HashMap::new(),
        persist,
        publish,
    };
    shell.apply(now, effects);
    // Opened while the bus is down: the room must know (no failover without a bus).
    let mut connections = link
        .as_mut()
        .map_or(0, |l| l.borrow_and_update().connections);
    if let Some(l) = &link
        && !l.borrow().connected
    {
        shell.input(Input::BusConnection(false));
    }

    let idle_after = options.room_idle;
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        let now = now_millis();
        let tick = tokio::time::sleep(shell.room.poll_timeout().since(now));
        let idle_at = idle_since.map(|since| since + idle_after);
        tokio::select! {
            biased;
            () = hub.0.shutdown.cancelled() => break,
            command = rx.recv() => match command {
                Some(command) => shell.command(command).await,
                None => break,
            },
            Some(payload) = next(&mut room_bus) => match BusMessage::decode(&payload) {
                Ok(message) => shell.input(Input::Bus(message)),
                Err(error) => tracing::warn!(%error, "undecodable bus message"),
            },
            Some(payload) = next(&mut changes_bus) => {
                match serde_json::from_slice::<ChangeNotice>(&payload) {
                    Ok(notice) if shell.room.is_sequencer() => shell.changed(notice.event),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "undecodable change notice"),
                }
            }
            Some(state) = link_changed(&mut link) => {
                if state.connections != connections {
                    // Lost and made again (maybe too fast to see it down): catch up.
                    connections = state.connections;
                    shell.input(Input::BusConnection(false));
                }
                shell.input(Input::BusConnection(state.connected));
            }
            () = tick => shell.input(Input::Tick),
            () = sleep_until(idle_at) => {
                if hub.retire(&shell.event.id, &mut rx, false) {
                    tracing::info!(event = %shell.event.id, "idle room closed");
                    break;
                }
                idle_since = None;
            }
        }
        shell.forget_abandoned_staff();
        let empty = shell.room.connections() == 0;
        idle_since = match (empty, idle_since) {
            (false, _) => None,
            (true, None) => Some(tokio::time::Instant::now()),
            (true, since) => since,
        };
    }
    let effects = shell.room.shutdown(now_millis());
    shell.apply(now_millis(), effects);
    hub.retire(&shell.event.id, &mut rx, true);
    drop(shell);
    drop((room_bus, changes_bus));
    hub.0.bus.forget(&subject);
}

impl Shell {
    async fn command(&mut self, command: Command) {
        let now = now_millis();
        match command {
            Command::Join {
                conn,
                viewer,
                role,
                since,
                outbox,
                joined,
            } => {
                self.conns.insert(
                    conn,
                    Slot {
                        outbox,
                        joined: false,
                    },
                );
                let effects = self.room.handle(
                    now,
                    Input::Join {
                        conn,
                        viewer,
                        role,
                        since,
                    },
                );
                self.apply(now, effects);
                if let Some(slot) = self.conns.get_mut(&conn) {
                    slot.joined = true;
                }
                let _ = joined.send(());
            }
            Command::Leave { conn } => {
                self.conns.remove(&conn);
                self.input(Input::Leave { conn });
            }
            Command::Text { conn, text } => self.input(Input::Text { conn, text }),
            Command::Staff {
                viewer,
                role,
                frame,
                reply,
            } => {
                let conn = self.hub.next_conn();
                self.staff.insert(conn, reply);
                let join = Input::Join {
                    conn,
                    viewer,
                    role: Some(role),
                    since: Some(self.room.seq()),
                };
                let effects = self.room.handle(now, join);
                self.apply(now, effects);
                self.input(Input::Message { conn, frame });
            }
            Command::Changed(info) => self.changed(info),
            Command::Draw { update, step } => self.draw(update, step).await,
            Command::Media(publishing) => self.input(Input::MediaChanged(publishing)),
        }
    }

    /// A play-out step is stored before anyone is shown it: its entry records the
    /// play-out's progress (`store::hub`), so a crash right after the step was shown
    /// cannot make the resumed play-out show it again.
    async fn draw(&mut self, update: streaming::hub::DrawUpdate, step: Option<u64>) {
        let now = now_millis();
        let effects = self.room.handle(now, Input::Draw { update, step });
        let numbered = |e: &Effect| {
            matches!(
                e,
                Effect::Persist(Entry {
                    op: Op::Draw { step: Some(_), .. },
                    ..
                })
            )
        };
        if !effects.iter().any(numbered) {
            // Not sequenced here (another node sequences, and stores it there).
            self.apply(now, effects);
            return;
        }
        let (writes, rest): (Vec<Effect>, Vec<Effect>) = effects
            .into_iter()
            .partition(|e| matches!(e, Effect::Persist(_) | Effect::SampleViewers(_)));
        self.apply(now, writes);
        let (done, written) = oneshot::channel();
        let _ = self.persist.send(Job::Flushed(done));
        if tokio::time::timeout(DRAW_STORE_TIMEOUT, written)
            .await
            .is_err()
        {
            tracing::warn!(event = %self.event.id, "draw step not stored in time; showing it anyway");
        }
        self.apply(now_millis(), rest);
    }

    /// Turns a new version of the event into the room's inputs: a status change and/or
    /// an edit (the staff API does one at a time; nothing when nothing changed).
    fn changed(&mut self, info: EventInfo) {
        let current = self.room.event().clone();
        if info.status != current.status {
            self.input(Input::StatusChanged(info.status));
        }
        let mut same_status = info.clone();
        same_status.status = current.status;
        if same_status != current {
            self.input(Input::EventEdited(info));
        }
    }

    fn input(&mut self, input: Input) {
        let now = now_millis();
        let effects = self.room.handle(now, input);
        self.apply(now, effects);
    }

    fn apply(&mut self, now: Millis, effects: Vec<Effect>) {
        let mut gone = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send { conn, frame } => {
                    if let Some(slot) = self.conns.get(&conn) {
                        if !slot.outbox.push(wire::text(frame.as_str().as_bytes())) {
                            gone.push(conn);
                        }
                    } else if self.staff.contains_key(&conn)
                        && let Some(result) = staff_outcome(frame.as_str())
                    {
                        if let Some(reply) = self.staff.remove(&conn) {
                            let _ = reply.send(result);
                        }
                        gone.push(conn);
                    }
                }
                Effect::Broadcast { frame } => {
                    // Framed once; every socket gets the same bytes.
                    let bytes = wire::text(frame.as_str().as_bytes());
                    for (conn, slot) in &self.conns {
                        if slot.joined && !slot.outbox.push(bytes.clone()) {
                            gone.push(*conn);
                        }
                    }
                }
                Effect::Close { conn, code, reason } => {
                    if let Some(slot) = self.conns.remove(&conn) {
                        slot.outbox.close(code, reason);
                    }
                    self.staff.remove(&conn);
                }
                Effect::Persist(entry) => {
                    let _ = self.persist.send(Job::Entry(Box::new(entry)));
                }
                Effect::SampleViewers(sample) => {
                    let _ = self.persist.send(Job::Sample(sample));
                }
                Effect::Publish(message) => {
                    let _ = self.publish.send(Bytes::from(message.encode()));
                }
            }
        }
        for conn in gone {
            self.conns.remove(&conn);
            self.staff.remove(&conn);
            let effects = self.room.handle(now, Input::Leave { conn });
            self.apply(now, effects);
        }
    }

    /// Staff API callers that gave up (timed out) no longer need their connection.
    fn forget_abandoned_staff(&mut self) {
        let abandoned: Vec<ConnId> = self
            .staff
            .iter()
            .filter(|(_, reply)| reply.is_closed())
            .map(|(conn, _)| *conn)
            .collect();
        for conn in abandoned {
            self.staff.remove(&conn);
            self.input(Input::Leave { conn });
        }
    }
}

/// `ack` or `error` addressed to a staff API connection (a snapshot is neither).
fn staff_outcome(frame: &str) -> Option<Result<(), ErrorCode>> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        code: Option<ErrorCode>,
    }
    let reply: Reply = serde_json::from_str(frame).ok()?;
    match reply.kind.as_str() {
        "ack" => Some(Ok(())),
        "error" => Some(Err(reply.code.unwrap_or(ErrorCode::Internal))),
        _ => None,
    }
}

async fn subscribe(hub: &Hub, subject: &str) -> Option<Subscription> {
    match hub.0.bus.subscribe(subject).await {
        Ok(subscription) => Some(subscription),
        Err(error) => {
            tracing::error!(%error, subject, "cannot subscribe on the bus; this room runs alone");
            None
        }
    }
}

async fn next(subscription: &mut Option<Subscription>) -> Option<Bytes> {
    match subscription {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The bus link's next state; never resolves for the in-process bus.
async fn link_changed(
    link: &mut Option<tokio::sync::watch::Receiver<super::bus::Link>>,
) -> Option<super::bus::Link> {
    let Some(receiver) = link else {
        return std::future::pending().await;
    };
    if receiver.changed().await.is_err() {
        *link = None;
        return std::future::pending().await;
    }
    Some(*receiver.borrow_and_update())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Publishes the room's bus messages in order without making the room wait.
fn spawn_publisher(hub: &Hub, subject: String) -> mpsc::UnboundedSender<Bytes> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let bus = hub.0.bus.clone();
    hub.0.tasks.spawn(async move {
        while let Some(payload) = rx.recv().await {
            bus.publish(&subject, payload).await;
        }
    });
    tx
}

/// How long a play-out step waits to be stored before it is shown regardless.
const DRAW_STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the staff API waits for the room's `ack`.
pub const STAFF_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_outcome_reads_ack_and_error_only() {
        assert_eq!(
            staff_outcome(r#"{"type":"ack","action":"x"}"#),
            Some(Ok(()))
        );
        assert_eq!(
            staff_outcome(r#"{"type":"error","code":"not_found","message":"m"}"#),
            Some(Err(ErrorCode::NotFound))
        );
        assert_eq!(staff_outcome(r#"{"type":"snapshot","seq":1}"#), None);
    }
}
