//! Simulation harness: rooms on fake nodes, fake clients, a fake bus and fake time, all in
//! one thread (str0m `tests/common.rs` style). The harness plays the shell: it carries out
//! effects exactly as `web` must (broadcast to clients joined before the call, bus messages
//! to every other node, encode/decode on the way).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use streaming::hub::{
    BusMessage, ConnId, Effect, Entry, EventInfo, EventStatus, Input, Millis, NodeId, Room,
    RoomConfig, RoomSeed, ServerMessage, StaffRole, Viewer, ViewerId, ViewerSample,
};

pub fn event() -> EventInfo {
    EventInfo {
        id: "42".into(),
        title: "区长在线访谈：老旧小区改造".into(),
        status: EventStatus::Live,
        details: Default::default(),
    }
}

pub fn config() -> RoomConfig {
    RoomConfig {
        join_grace: Duration::ZERO,
        ..RoomConfig::default()
    }
}

/// A fake browser tab.
#[derive(Debug, Default)]
pub struct Client {
    /// Every message received, batches unpacked, in order.
    pub received: Vec<ServerMessage>,
    /// Raw frames, to count how many the coalescing produced.
    pub frames: usize,
    pub closed: Option<u16>,
    /// Added to the node's fan-out set after the effects of its join (as the shell does).
    pub joined: bool,
}

impl Client {
    pub fn chat_texts(&self) -> Vec<String> {
        self.received
            .iter()
            .filter_map(|m| match m {
                ServerMessage::ChatMessage(c) => Some(c.text.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn errors(&self) -> Vec<String> {
        self.received
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Error { code, .. } => Some(
                    serde_json::to_value(code)
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_owned(),
                ),
                _ => None,
            })
            .collect()
    }

    pub fn last_seq(&self) -> u64 {
        let mut last = 0;
        for m in &self.received {
            match m {
                ServerMessage::Snapshot(s) => last = s.seq,
                ServerMessage::Resumed { seq, .. } => last = last.max(*seq),
                other => {
                    if let Some(seq) = other.seq() {
                        last = seq;
                    }
                }
            }
        }
        last
    }

    /// Checks what a client may rely on: after a snapshot, logged broadcasts arrive with
    /// strictly increasing seq, contiguous except at a sequencer takeover; never a repeat.
    pub fn assert_consistent(&self, allow_jumps: bool) {
        let mut last: Option<u64> = None;
        for m in &self.received {
            match m {
                ServerMessage::Snapshot(s) => last = Some(s.seq),
                ServerMessage::Resumed { seq, .. } => assert_eq!(last, Some(*seq)),
                other => {
                    if let Some(seq) = other.seq() {
                        let prev = last.expect("a broadcast before any snapshot");
                        assert!(seq > prev, "seq {seq} after {prev}: {:#?}", self.received);
                        if !allow_jumps {
                            assert_eq!(seq, prev + 1, "gap after {prev}");
                        }
                        last = Some(seq);
                    }
                }
            }
        }
    }

    pub fn count(&self, pred: impl Fn(&ServerMessage) -> bool) -> usize {
        self.received.iter().filter(|m| pred(m)).count()
    }
}

pub struct Node {
    pub room: Room,
    pub clients: BTreeMap<ConnId, Client>,
    /// A crashed node neither receives nor sends.
    pub down: bool,
}

/// A bus fault: what happens to the messages `applies_to` picks.
#[derive(Debug, Clone, Copy)]
pub struct BusFault {
    pub applies_to: fn(&BusMessage) -> bool,
    pub fault: Fault,
}

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Delivered this much later (after messages published since, as under load).
    Delay(Duration),
    Drop,
}

/// A message some node published (heartbeats included), for checks on bus traffic.
#[derive(Debug, Clone)]
pub struct Published {
    pub node: usize,
    pub at: Millis,
    pub message: BusMessage,
}

pub struct Sim {
    pub now: Millis,
    pub nodes: Vec<Node>,
    bus: VecDeque<(usize, BusMessage)>,
    /// Applies to messages published from when it is set until it is reset to `None`.
    pub fault: Option<BusFault>,
    /// Delayed messages: when due, sender, message (in publish order).
    delayed: VecDeque<(Millis, usize, BusMessage)>,
    pub published: Vec<Published>,
    pub persisted: Vec<Entry>,
    pub samples: Vec<ViewerSample>,
    /// Every effect in order, rendered, for snapshot tests.
    pub log: Vec<String>,
    pub record_log: bool,
    next_conn: u64,
}

impl Sim {
    pub fn new(nodes: usize, config: RoomConfig) -> Sim {
        Sim::with_seed(nodes, config, RoomSeed::default())
    }

    pub fn with_seed(nodes: usize, config: RoomConfig, seed: RoomSeed) -> Sim {
        let mut sim = Sim {
            now: Millis(1_700_000_000_000),
            nodes: Vec::new(),
            bus: VecDeque::new(),
            fault: None,
            delayed: VecDeque::new(),
            published: Vec::new(),
            persisted: Vec::new(),
            samples: Vec::new(),
            log: Vec::new(),
            record_log: false,
            next_conn: 1,
        };
        for i in 0..nodes {
            sim.add_node(i, config.clone(), seed.clone());
        }
        sim.settle();
        sim
    }

    pub fn add_node(&mut self, i: usize, config: RoomConfig, seed: RoomSeed) {
        let name = NodeId(format!("node-{}", (b'a' + i as u8) as char));
        let (room, effects) = Room::new(name, event(), seed, config, self.now);
        self.nodes.push(Node {
            room,
            clients: BTreeMap::new(),
            down: false,
        });
        let index = self.nodes.len() - 1;
        self.apply(index, effects);
    }

    pub fn room(&self, node: usize) -> &Room {
        &self.nodes[node].room
    }

    pub fn client(&self, node: usize, conn: ConnId) -> &Client {
        &self.nodes[node].clients[&conn]
    }

    pub fn join(&mut self, node: usize, viewer: &str, role: Option<StaffRole>) -> ConnId {
        self.join_with(node, viewer, role, None, None)
    }

    pub fn join_with(
        &mut self,
        node: usize,
        viewer: &str,
        role: Option<StaffRole>,
        since: Option<u64>,
        ip: Option<&str>,
    ) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.nodes[node].clients.insert(conn, Client::default());
        let input = Input::Join {
            conn,
            viewer: Viewer {
                id: ViewerId(viewer.to_owned()),
                nickname: format!("网友{viewer}"),
                ip: ip.map(|ip| ip.parse().unwrap()),
            },
            role,
            since,
        };
        self.input(node, input);
        if let Some(client) = self.nodes[node].clients.get_mut(&conn) {
            client.joined = true;
        }
        self.settle();
        conn
    }

    pub fn leave(&mut self, node: usize, conn: ConnId) {
        self.input(node, Input::Leave { conn });
        if let Some(c) = self.nodes[node].clients.get_mut(&conn) {
            c.joined = false;
        }
        self.settle();
    }

    /// A client sends a text frame.
    pub fn say(&mut self, node: usize, conn: ConnId, json: &str) {
        self.input(
            node,
            Input::Text {
                conn,
                text: json.to_owned(),
            },
        );
        self.settle();
    }

    pub fn chat(&mut self, node: usize, conn: ConnId, text: &str) {
        let json = serde_json::json!({"type": "chat.send", "text": text}).to_string();
        self.say(node, conn, &json);
    }

    pub fn input(&mut self, node: usize, input: Input) {
        if self.nodes[node].down {
            return;
        }
        if self.record_log {
            self.log.push(format!(
                "-- node {node} @{}: {}",
                self.rel(),
                describe(&input)
            ));
        }
        let effects = self.nodes[node].room.handle(self.now, input);
        self.apply(node, effects);
    }

    /// Advances fake time by `ms`, ticking each room when it asks and delivering the bus
    /// (delayed messages when they are due).
    pub fn advance(&mut self, ms: u64) {
        let target = Millis(self.now.0 + ms);
        loop {
            self.deliver_due();
            self.settle();
            let next = self
                .nodes
                .iter()
                .filter(|n| !n.down)
                .map(|n| n.room.poll_timeout())
                .chain(self.delayed.front().map(|d| d.0))
                .min();
            match next {
                Some(next) if next <= target => {
                    self.now = self.now.max(next);
                    self.deliver_due();
                    self.settle();
                    for i in 0..self.nodes.len() {
                        if !self.nodes[i].down && self.nodes[i].room.poll_timeout() <= self.now {
                            self.input(i, Input::Tick);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = target;
        self.deliver_due();
        for i in 0..self.nodes.len() {
            self.input(i, Input::Tick);
        }
        self.settle();
    }

    /// Sync requests published so far: by which node, when.
    pub fn sync_requests(&self) -> Vec<(usize, Millis)> {
        self.published
            .iter()
            .filter(|p| matches!(p.message, BusMessage::SyncRequest { .. }))
            .map(|p| (p.node, p.at))
            .collect()
    }

    fn deliver_due(&mut self) {
        while self.delayed.front().is_some_and(|d| d.0 <= self.now) {
            if let Some((_, from, message)) = self.delayed.pop_front() {
                self.bus.push_back((from, message));
            }
        }
    }

    /// Delivers bus messages until quiet (instant delivery, in publish order).
    pub fn settle(&mut self) {
        let mut guard = 0;
        while let Some((from, message)) = self.bus.pop_front() {
            guard += 1;
            assert!(guard < 100_000, "bus storm");
            for i in 0..self.nodes.len() {
                if i != from {
                    self.input(i, Input::Bus(message.clone()));
                }
            }
        }
    }

    fn rel(&self) -> u64 {
        self.now.0 - 1_700_000_000_000
    }

    fn apply(&mut self, node: usize, effects: Vec<Effect>) {
        for effect in effects {
            let line = if self.record_log {
                render(&effect)
            } else {
                None
            };
            if let Some(line) = line {
                self.log.push(format!("  {line}"));
            }
            let n = &mut self.nodes[node];
            match effect {
                Effect::Send { conn, frame } => {
                    if let Some(c) = n.clients.get_mut(&conn) {
                        receive(c, frame.as_str());
                    }
                }
                Effect::Broadcast { frame } => {
                    for c in n.clients.values_mut().filter(|c| c.joined) {
                        receive(c, frame.as_str());
                    }
                }
                Effect::Close { conn, code, .. } => {
                    if let Some(c) = n.clients.get_mut(&conn) {
                        c.closed = Some(code);
                        c.joined = false;
                    }
                }
                Effect::Persist(entry) => self.persisted.push(entry),
                Effect::Publish(message) => {
                    if n.down {
                        continue;
                    }
                    // Through bytes, as over NATS.
                    let message = BusMessage::decode(&message.encode()).unwrap();
                    self.published.push(Published {
                        node,
                        at: self.now,
                        message: message.clone(),
                    });
                    match self.fault {
                        Some(f) if (f.applies_to)(&message) => match f.fault {
                            Fault::Delay(by) => {
                                let due = Millis(self.now.0 + by.as_millis() as u64);
                                self.delayed.push_back((due, node, message));
                            }
                            Fault::Drop => {}
                        },
                        _ => self.bus.push_back((node, message)),
                    }
                }
                Effect::SampleViewers(sample) => self.samples.push(sample),
            }
        }
    }
}

fn receive(client: &mut Client, frame: &str) {
    client.frames += 1;
    let message: ServerMessage =
        serde_json::from_str(frame).unwrap_or_else(|e| panic!("bad frame {frame}: {e}"));
    match message {
        ServerMessage::Batch { messages } => client.received.extend(messages),
        other => client.received.push(other),
    }
}

fn describe(input: &Input) -> String {
    match input {
        Input::Join {
            conn,
            viewer,
            role,
            since,
            ..
        } => format!("join c{} {} {role:?} since={since:?}", conn.0, viewer.id.0),
        Input::Leave { conn } => format!("leave c{}", conn.0),
        Input::Text { conn, text } => format!("text c{} {text}", conn.0),
        Input::Message { conn, frame } => format!("message c{} {frame:?}", conn.0),
        Input::Tick => "tick".into(),
        Input::StatusChanged(s) => format!("status {s:?}"),
        Input::EventEdited(e) => format!("edited {}", e.title),
        Input::MediaChanged(p) => format!("media publishing={p}"),
        Input::Draw { update, step } => format!("draw {step:?} {update:?}"),
        Input::Bus(m) => format!("bus {}", bus_kind(m)),
        Input::BusConnection(up) => format!("bus connection up={up}"),
    }
}

fn bus_kind(m: &BusMessage) -> &'static str {
    match m {
        BusMessage::Heartbeat(_) => "heartbeat",
        BusMessage::Forward { .. } => "forward",
        BusMessage::Entries { .. } => "entries",
        BusMessage::Reject { .. } => "reject",
        BusMessage::SyncRequest { .. } => "sync_request",
        BusMessage::Sync { .. } => "sync",
        BusMessage::Viewers { .. } => "viewers",
        BusMessage::Leave { .. } => "leave",
    }
}

/// One line per effect; heartbeats are left out (they are timing noise).
fn render(effect: &Effect) -> Option<String> {
    Some(match effect {
        Effect::Send { conn, frame } => {
            format!("send c{} {}", conn.0, strip_snapshot(frame.as_str()))
        }
        Effect::Broadcast { frame } => format!("broadcast {frame}"),
        Effect::Close { conn, code, reason } => format!("close c{} {code} {reason}", conn.0),
        Effect::Persist(entry) => {
            let mut v = serde_json::to_value(entry).unwrap();
            v["at"] = serde_json::json!("<at>");
            format!("persist {v}")
        }
        Effect::Publish(BusMessage::Heartbeat(_)) => return None,
        Effect::Publish(m) => format!("publish {}", bus_kind(m)),
        Effect::SampleViewers(s) => format!("sample {:?}", s.counts),
    })
}

/// Snapshots carry absolute times; keep the lines stable and short.
fn strip_snapshot(frame: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(frame).unwrap();
    if v["type"] == "snapshot" {
        v["event"] = serde_json::json!("<event>");
    }
    v.to_string()
}
