//! [`Room`]: one event's hub on one node. Inputs in, effects out; see the `hub` docs.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use super::{
    ChatSettings, ClientFrame, ClientMessage, ConnId, DrawUpdate, ErrorCode, EventInfo,
    EventStatus, Frame, MediaInfo, Millis, NodeId, ServerMessage, StaffRole, Viewer, ViewerCounts,
    ViewerId, You,
    cluster::{Author, BanTarget, BusMessage, Entry, Heartbeat, Intent, Op, Origin},
    moderation::{Ban, Permission, RateLimit, TokenBucket, banned_until, permits},
    parse_client_frame,
    queue::{CLOSE_GOING_AWAY, CLOSE_POLICY},
    replay::{Replay, ReplayBuffer},
    state::{ChatRecord, QuestionRecord, RoomState},
    text::{SensitiveWords, clean, clean_message, clean_nickname},
};

/// Knobs. `Default` is production; tests shorten or zero the timings.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// Broadcasts within this window after a flush go out together in one frame.
    pub coalesce: Duration,
    /// `viewers` at most this often (and only when the counts changed).
    pub viewers_interval: Duration,
    /// Viewer-count samples for the chart.
    pub sample_interval: Duration,
    pub heartbeat_interval: Duration,
    /// A replica asks for a full sync when entries a sequencer heartbeat announced have
    /// not arrived within this long. Under load entries are late rather than lost, and a
    /// needless sync (a state transfer plus a snapshot to every socket) adds to the load.
    pub lag_timeout: Duration,
    /// A node not heard from for this long is gone.
    pub peer_timeout: Duration,
    /// A new room waits this long for a sync from an existing sequencer before it
    /// sequences itself. Zero for a single node (in-process bus).
    pub join_grace: Duration,
    /// Added to the highest known seq when a sequencer takes over from another, so that
    /// no seq is reused even if the old sequencer's last entries never arrived.
    pub takeover_seq_jump: u64,
    pub snapshot_messages: usize,
    pub snapshot_answered: usize,
    /// Chat messages kept in memory (snapshot, bans by message id).
    pub recent_messages: usize,
    pub replay_capacity: usize,
    pub max_frame_bytes: usize,
    pub max_text_chars: usize,
    pub max_answer_chars: usize,
    pub max_like_batch: u32,
    pub max_ban: Duration,
    pub max_slow_mode_secs: u32,
    /// Every frame from a connection, valid or not.
    pub frame_rate: RateLimit,
    /// After this many frames refused in a row for rate, the connection is closed.
    pub max_refused_frames: u32,
    /// Per viewer identity on this node: chat messages, questions (+ upvotes), like taps.
    pub chat_rate: RateLimit,
    pub question_rate: RateLimit,
    pub like_rate: RateLimit,
    /// Per client address on this node, over every identity from it: minting fresh
    /// cookies is no way around the per-identity limits. Looser than those, because many
    /// people may share one address (an office, a carrier's NAT). Staff are exempt;
    /// connections without a known address are limited per identity only.
    pub chat_rate_per_ip: RateLimit,
    pub question_rate_per_ip: RateLimit,
    pub like_rate_per_ip: RateLimit,
    /// Under slow mode: chat messages one address may send per `slow_mode_secs`.
    pub slow_mode_per_ip: u32,
    /// Votes one address may give one question (each identity still votes once).
    pub votes_per_question_per_ip: u32,
    /// Intents held while a new room waits for its first sync.
    pub max_parked: usize,
    pub sensitive: SensitiveWords,
}

impl Default for RoomConfig {
    fn default() -> RoomConfig {
        RoomConfig {
            coalesce: Duration::from_millis(100),
            viewers_interval: Duration::from_secs(1),
            sample_interval: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(1),
            lag_timeout: Duration::from_secs(3),
            peer_timeout: Duration::from_millis(3500),
            join_grace: Duration::from_millis(1500),
            takeover_seq_jump: 1000,
            snapshot_messages: 50,
            snapshot_answered: 50,
            recent_messages: 500,
            replay_capacity: 2048,
            max_frame_bytes: 4096,
            max_text_chars: 500,
            max_answer_chars: 5000,
            max_like_batch: 50,
            max_ban: Duration::from_secs(365 * 24 * 3600),
            max_slow_mode_secs: 3600,
            frame_rate: RateLimit::new(10.0, 30.0),
            max_refused_frames: 100,
            chat_rate: RateLimit::new(1.0, 5.0),
            question_rate: RateLimit::new(0.2, 5.0),
            like_rate: RateLimit::new(20.0, 100.0),
            chat_rate_per_ip: RateLimit::new(5.0, 20.0),
            question_rate_per_ip: RateLimit::new(1.0, 20.0),
            like_rate_per_ip: RateLimit::new(40.0, 200.0),
            slow_mode_per_ip: 3,
            votes_per_question_per_ip: 3,
            max_parked: 1000,
            sensitive: SensitiveWords::default(),
        }
    }
}

/// What the shell loads from the database when it creates a room (all optional).
#[derive(Debug, Clone, Default)]
pub struct RoomSeed {
    /// The highest seq ever persisted for the event: the log continues after it.
    pub last_seq: u64,
    pub likes: u64,
    pub chat_open: Option<bool>,
    pub slow_mode_secs: u32,
    /// Recent chat, oldest first (the last `recent_messages` are kept).
    pub messages: Vec<ChatRecord>,
    pub questions: Vec<QuestionRecord>,
    /// Bans still in force.
    pub bans: Vec<Ban>,
    pub peak_viewers: u64,
    pub cumulative_viewers: u64,
}

/// Everything the room reacts to.
#[derive(Debug, Clone)]
pub enum Input {
    /// A socket opened. `since`: the `?since=` query parameter, if any.
    Join {
        conn: ConnId,
        viewer: Viewer,
        role: Option<StaffRole>,
        since: Option<u64>,
    },
    /// A socket closed (idempotent; also fine after [`Effect::Close`]).
    Leave { conn: ConnId },
    /// A text frame from a socket, unparsed: the room rate-limits and parses it.
    Text { conn: ConnId, text: String },
    /// An already-parsed message (tests, or a shell that parses itself).
    Message { conn: ConnId, frame: ClientFrame },
    /// Time passed; call at [`Room::poll_timeout`] (extra ticks are harmless).
    Tick,
    /// The staff API changed the event's status (start, end, cancel).
    StatusChanged(EventStatus),
    /// The staff API edited the event (title, guests, summary, ...).
    EventEdited(EventInfo),
    /// The event's publisher connected (`true`) or went away (`false`). Repeating the
    /// current value changes nothing, so a shell may re-assert it.
    MediaChanged(bool),
    /// A step of a draw's live play-out, broadcast to everyone. `step`: its index in the
    /// play-out (persisted with the entry, see [`Op::Draw`]).
    Draw {
        update: DrawUpdate,
        step: Option<u64>,
    },
    /// A message from the bus (any node, including echoes of this node's own).
    Bus(BusMessage),
    /// This node's link to the bus went down (`false`) or came back (`true`). While it
    /// is down nothing can be heard, so nobody is presumed gone: no failover, the
    /// sequencer goes on, replicas refuse viewers' interactions (`unavailable`). When it
    /// is back, a replica asks the sequencer for what it missed.
    BusConnection(bool),
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Queue `frame` on one connection.
    Send { conn: ConnId, frame: Frame },
    /// Queue `frame` on every local connection that joined before this `handle` call
    /// (the shell adds a joining connection to its fan-out set after carrying out the
    /// effects of its `Join`).
    Broadcast { frame: Frame },
    /// Close the socket with a WebSocket close code; the room has already forgotten it.
    Close {
        conn: ConnId,
        code: u16,
        reason: &'static str,
    },
    /// Store this entry (only the sequencer emits these, so each happens once per
    /// cluster). Entries with a seq: the shell should also keep the highest seq, to seed
    /// [`RoomSeed::last_seq`] after a restart.
    Persist(Entry),
    /// Publish on the event's bus subject.
    Publish(BusMessage),
    /// Record a viewer-count sample for the chart (sequencer only).
    SampleViewers(ViewerSample),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewerSample {
    pub at: Millis,
    pub counts: ViewerCounts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Waiting for a sync from an existing sequencer (until the grace period ends).
    Joining {
        until: Millis,
    },
    Sequencer,
    Replica,
}

#[derive(Debug)]
struct Conn {
    author: Author,
    frames: TokenBucket,
    refused: u32,
}

/// Per identity on this node: rate limits and slow mode survive reconnects (kept for a
/// while after the last socket closes, so reconnecting is not a way around them).
#[derive(Debug)]
struct LocalViewer {
    conns: usize,
    chat: TokenBucket,
    questions: TokenBucket,
    likes: TokenBucket,
    last_chat: Option<Millis>,
    idle_since: Millis,
}

/// Per client address on this node: the same limits over all identities from it.
#[derive(Debug)]
struct LocalIp {
    chat: TokenBucket,
    questions: TokenBucket,
    likes: TokenBucket,
    /// The latest chat messages' times (at most `slow_mode_per_ip`), for slow mode.
    recent_chat: VecDeque<Millis>,
    last_used: Millis,
}

#[derive(Debug, Clone)]
struct Peer {
    last_heard: Millis,
    viewers: u64,
    term: u64,
    seq: u64,
    /// It says it sequences (heartbeat flag, or it sent entries).
    sequencer: bool,
}

/// One event's room on one node.
pub struct Room {
    config: RoomConfig,
    node: NodeId,
    state: RoomState,
    role: Role,
    conns: BTreeMap<ConnId, Conn>,
    locals: HashMap<ViewerId, LocalViewer>,
    ips: HashMap<IpAddr, LocalIp>,
    peers: BTreeMap<NodeId, Peer>,
    /// Broadcast frames not yet flushed to local sockets.
    outbox: Vec<Frame>,
    /// Entries not yet published (sequencer).
    unpublished: Vec<Entry>,
    last_flush: Option<Millis>,
    flush_now: bool,
    pending_likes: u64,
    last_likes: Option<Millis>,
    /// Identities seen on this node (each reported once).
    seen: HashSet<ViewerId>,
    /// Identities to report in the next heartbeat.
    new_viewers: Vec<ViewerId>,
    /// Sequencer: identities seen anywhere this term, on top of `cumulative_base`.
    distinct: HashSet<ViewerId>,
    cumulative_base: u64,
    viewers_sent: Option<ViewerCounts>,
    next_viewers: Millis,
    next_heartbeat: Millis,
    next_sample: Millis,
    /// Idle per-identity limiters are dropped this often (a full scan, so not per second).
    next_prune: Millis,
    /// Replica: indexes the sequencer's heartbeats announced that we have not reached
    /// yet, with when we first heard of each (ascending; the front is the oldest).
    announced: VecDeque<(u64, Millis)>,
    last_sync_request: Option<Millis>,
    /// This node's link to the bus is up (as the shell last said).
    bus_up: bool,
    /// After the bus came back: until then, a replica keeps asking for a sync until one
    /// arrives (a request may be lost while nodes resubscribe).
    resync_until: Option<Millis>,
    parked: VecDeque<(Option<Origin>, Intent)>,
    effects: Vec<Effect>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("node", &self.node)
            .field("event", &self.state.event.id)
            .field("role", &self.role)
            .field("seq", &self.state.seq())
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl Room {
    /// Creates the room and returns its first effects (announcing itself on the bus).
    pub fn new(
        node: NodeId,
        event: EventInfo,
        seed: RoomSeed,
        config: RoomConfig,
        now: Millis,
    ) -> (Room, Vec<Effect>) {
        let mut messages: VecDeque<ChatRecord> = seed.messages.into();
        while messages.len() > config.recent_messages {
            messages.pop_front();
        }
        let messages_floor = messages.front().map_or(seed.last_seq + 1, |m| m.id);
        let state = RoomState {
            term: 0,
            index: 0,
            event,
            chat: ChatSettings {
                open: seed.chat_open.unwrap_or(true),
                slow_mode_secs: seed.slow_mode_secs,
            },
            media: MediaInfo::default(),
            likes: seed.likes,
            messages,
            messages_floor,
            questions: seed.questions.into_iter().map(|q| (q.id, q)).collect(),
            bans: seed.bans,
            viewers: ViewerCounts {
                current: 0,
                peak: seed.peak_viewers,
                cumulative: seed.cumulative_viewers,
            },
            replay: ReplayBuffer::new(config.replay_capacity, seed.last_seq),
            recent_capacity: config.recent_messages,
        };
        let role = Role::Joining {
            until: now.plus(config.join_grace),
        };
        let mut room = Room {
            node,
            state,
            role,
            conns: BTreeMap::new(),
            locals: HashMap::new(),
            ips: HashMap::new(),
            peers: BTreeMap::new(),
            outbox: Vec::new(),
            unpublished: Vec::new(),
            last_flush: None,
            flush_now: false,
            pending_likes: 0,
            last_likes: None,
            seen: HashSet::new(),
            new_viewers: Vec::new(),
            distinct: HashSet::new(),
            cumulative_base: seed.cumulative_viewers,
            viewers_sent: None,
            next_viewers: now,
            next_heartbeat: now,
            next_sample: next_boundary(now, config.sample_interval),
            next_prune: now.plus(PRUNE_INTERVAL),
            announced: VecDeque::new(),
            last_sync_request: None,
            bus_up: true,
            resync_until: None,
            parked: VecDeque::new(),
            effects: Vec::new(),
            config,
        };
        if !room.config.join_grace.is_zero() {
            room.request_sync(now, None);
        }
        room.drive(now);
        let effects = std::mem::take(&mut room.effects);
        (room, effects)
    }

    /// Feeds one input; returns what to do, in order.
    pub fn handle(&mut self, now: Millis, input: Input) -> Vec<Effect> {
        // Roles first, so the input is routed by who sequences *now*.
        self.update_role(now);
        match input {
            Input::Join {
                conn,
                viewer,
                role,
                since,
            } => self.join(now, conn, viewer, role, since),
            Input::Leave { conn } => self.leave(now, conn),
            Input::Text { conn, text } => self.text(now, conn, &text),
            Input::Message { conn, frame } => {
                if self.conns.contains_key(&conn) {
                    self.message(now, conn, frame);
                }
            }
            Input::Tick => {}
            Input::StatusChanged(status) => self.submit(now, None, Intent::Status { status }),
            Input::EventEdited(event) => self.submit(now, None, Intent::Edit { event }),
            Input::MediaChanged(publishing) => {
                if self.state.media.publishing != publishing {
                    self.submit(now, None, Intent::Media { publishing });
                }
            }
            Input::Draw { update, step } => self.submit(now, None, Intent::Draw { update, step }),
            Input::Bus(message) => self.bus(now, message),
            Input::BusConnection(up) => self.bus_connection(now, up),
        }
        self.drive(now);
        std::mem::take(&mut self.effects)
    }

    /// The latest time at which the shell must call `handle(now, Input::Tick)`.
    pub fn poll_timeout(&self) -> Millis {
        let mut next = self.next_heartbeat;
        if !self.outbox.is_empty() || !self.unpublished.is_empty() {
            next = next.min(self.flush_due());
        }
        if self.pending_likes > 0 {
            next = next.min(self.likes_due());
        }
        match self.role {
            Role::Joining { until } => next = next.min(until),
            Role::Sequencer => next = next.min(self.next_viewers).min(self.next_sample),
            Role::Replica => {
                if let Some(due) = self.lag_due() {
                    next = next.min(due);
                }
            }
        }
        next
    }

    /// Leaves the cluster and closes local sockets (the node is shutting down or the
    /// shell is dropping an idle room). Clients reconnect, possibly to another node.
    pub fn shutdown(&mut self, now: Millis) -> Vec<Effect> {
        self.flush(now);
        self.effects.push(Effect::Publish(BusMessage::Leave {
            from: self.node.clone(),
        }));
        for conn in std::mem::take(&mut self.conns).into_keys() {
            self.effects.push(Effect::Close {
                conn,
                code: CLOSE_GOING_AWAY,
                reason: "room closing",
            });
        }
        std::mem::take(&mut self.effects)
    }

    /// Local connections (the shell may drop a room with none for a while).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn is_sequencer(&self) -> bool {
        self.role == Role::Sequencer
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The last broadcast seq.
    pub fn seq(&self) -> u64 {
        self.state.seq()
    }

    pub fn viewers(&self) -> ViewerCounts {
        self.state.viewers
    }

    pub fn event(&self) -> &EventInfo {
        &self.state.event
    }

    /// A snapshot as an anonymous viewer would get it (for tests and server-side pages).
    pub fn snapshot(&self) -> super::Snapshot {
        self.state.snapshot(
            You {
                nickname: String::new(),
                role: None,
                banned_until: None,
            },
            self.config.snapshot_messages,
            self.config.snapshot_answered,
        )
    }
}

// Connections and client messages.
impl Room {
    fn join(
        &mut self,
        now: Millis,
        conn: ConnId,
        viewer: Viewer,
        role: Option<StaffRole>,
        since: Option<u64>,
    ) {
        if self.conns.contains_key(&conn) {
            self.leave(now, conn);
        }
        let author = Author {
            nickname: clean_nickname(&viewer.nickname),
            viewer_id: viewer.id,
            role,
            ip: viewer.ip,
        };
        let config = &self.config;
        let local = self
            .locals
            .entry(author.viewer_id.clone())
            .or_insert_with(|| LocalViewer {
                conns: 0,
                chat: TokenBucket::new(config.chat_rate, now),
                questions: TokenBucket::new(config.question_rate, now),
                likes: TokenBucket::new(config.like_rate, now),
                last_chat: None,
                idle_since: now,
            });
        local.conns += 1;
        if self.seen.insert(author.viewer_id.clone()) {
            if self.role == Role::Sequencer {
                self.distinct.insert(author.viewer_id.clone());
            } else {
                self.new_viewers.push(author.viewer_id.clone());
            }
        }
        tracing::debug!(conn = conn.0, since, "join");
        // Everything already broadcast goes out first, so what follows (snapshot or
        // replay) is exactly "everything up to now" for the newcomer.
        self.flush(now);
        let replay = match since {
            Some(since) => self.state.replay.since(since),
            None => Replay::Snapshot,
        };
        match replay {
            Replay::Frames(frames) => {
                let replayed = frames.len() as u64;
                if let Some(frame) = Frame::batch(&frames) {
                    self.effects.push(Effect::Send { conn, frame });
                }
                let resumed = ServerMessage::Resumed {
                    seq: self.state.seq(),
                    replayed,
                };
                self.send(conn, &resumed);
                let viewers = self.viewers_message();
                self.send(conn, &viewers);
            }
            Replay::Snapshot => {
                let snapshot = self.snapshot_for(&author, now);
                self.send(conn, &snapshot);
            }
        }
        self.conns.insert(
            conn,
            Conn {
                author,
                frames: TokenBucket::new(self.config.frame_rate, now),
                refused: 0,
            },
        );
    }

    fn leave(&mut self, now: Millis, conn: ConnId) {
        let Some(gone) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(local) = self.locals.get_mut(&gone.author.viewer_id) {
            local.conns = local.conns.saturating_sub(1);
            local.idle_since = now;
        }
        tracing::debug!(conn = conn.0, "leave");
    }

    fn text(&mut self, now: Millis, conn_id: ConnId, text: &str) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        // Every frame costs a token, malformed ones included: garbage is not free.
        if !conn.frames.try_take(self.config.frame_rate, now, 1.0) {
            conn.refused += 1;
            if conn.refused > self.config.max_refused_frames {
                self.conns.remove(&conn_id);
                self.effects.push(Effect::Close {
                    conn: conn_id,
                    code: CLOSE_POLICY,
                    reason: "too many messages",
                });
                return;
            }
            self.error(conn_id, ErrorCode::RateLimited, None);
            return;
        }
        conn.refused = 0;
        match parse_client_frame(text, self.config.max_frame_bytes) {
            Ok(frame) => self.message(now, conn_id, frame),
            Err(rejected) => {
                tracing::debug!(conn = conn_id.0, code = ?rejected.code, "bad frame");
                self.error(conn_id, rejected.code, rejected.reference);
            }
        }
    }

    fn message(&mut self, now: Millis, conn: ConnId, frame: ClientFrame) {
        let reference = frame.reference;
        match self.intent_for(now, conn, frame.message) {
            Ok(Some(intent)) => {
                let origin = Origin {
                    node: self.node.clone(),
                    conn,
                    reference,
                };
                self.submit(now, Some(origin), intent);
            }
            Ok(None) => {}
            Err(code) => self.error(conn, code, reference),
        }
    }

    /// Local checks (permissions, text, rate limits, slow mode) plus the state checks
    /// against this node's copy of the state, for an early and cheap refusal. Returns
    /// `Ok(None)` when the message was fully handled here (ping, likes).
    fn intent_for(
        &mut self,
        now: Millis,
        conn: ConnId,
        message: ClientMessage,
    ) -> Result<Option<Intent>, ErrorCode> {
        let author = match self.conns.get(&conn) {
            Some(c) => c.author.clone(),
            None => return Ok(None),
        };
        let staff = author.role.is_some();
        let role = author.role;
        let need = |permission| {
            if permits(role, permission) {
                Ok(())
            } else {
                Err(ErrorCode::Forbidden)
            }
        };
        let intent = match message {
            ClientMessage::Ping { t } => {
                self.send(conn, &ServerMessage::Pong { t });
                return Ok(None);
            }
            ClientMessage::ChatSend { text } => {
                let text = clean_message(&text, self.config.max_text_chars)?;
                let text = self.config.sensitive.apply(text)?;
                let intent = Intent::Chat { author, text };
                self.check(now, &intent)?;
                if !staff {
                    let slow = u64::from(self.state.chat.slow_mode_secs) * 1000;
                    let limit = self.config.chat_rate;
                    let ip_limit = self.config.chat_rate_per_ip;
                    let per_ip = self.config.slow_mode_per_ip as usize;
                    let ip = author_ip(&intent);
                    let local = self.local(&intent)?;
                    let waiting = local
                        .last_chat
                        .is_some_and(|last| now.0 < last.0.saturating_add(slow));
                    if slow > 0 && waiting {
                        return Err(ErrorCode::SlowMode);
                    }
                    if let Some(shared) = ip.map(|ip| self.local_ip(ip, now)) {
                        let recent = shared
                            .recent_chat
                            .iter()
                            .filter(|t| now.0 < t.0.saturating_add(slow))
                            .count();
                        if slow > 0 && recent >= per_ip {
                            return Err(ErrorCode::SlowMode);
                        }
                    }
                    let local = self.local(&intent)?;
                    if !local.chat.try_take(limit, now, 1.0) {
                        return Err(ErrorCode::RateLimited);
                    }
                    if let Some(shared) = ip.map(|ip| self.local_ip(ip, now)) {
                        if !shared.chat.try_take(ip_limit, now, 1.0) {
                            return Err(ErrorCode::RateLimited);
                        }
                        shared.recent_chat.push_back(now);
                        while shared.recent_chat.len() > per_ip.max(1) {
                            shared.recent_chat.pop_front();
                        }
                    }
                    let local = self.local(&intent)?;
                    local.last_chat = Some(now);
                }
                intent
            }
            ClientMessage::Like { count } => {
                if count == 0 || count > self.config.max_like_batch {
                    return Err(ErrorCode::BadMessage);
                }
                self.check_interactive(now, &author)?;
                let limit = self.config.like_rate;
                let local = self.local_of(&author.viewer_id)?;
                if !local.likes.try_take(limit, now, f64::from(count)) {
                    return Err(ErrorCode::RateLimited);
                }
                if let (Some(ip), None) = (author.ip, author.role) {
                    let limit = self.config.like_rate_per_ip;
                    if !self
                        .local_ip(ip, now)
                        .likes
                        .try_take(limit, now, f64::from(count))
                    {
                        return Err(ErrorCode::RateLimited);
                    }
                }
                self.pending_likes += u64::from(count);
                return Ok(None);
            }
            ClientMessage::QuestionAsk { text } => {
                let text = clean_message(&text, self.config.max_text_chars)?;
                let text = self.config.sensitive.apply(text)?;
                let intent = Intent::Ask { author, text };
                self.check(now, &intent)?;
                self.take_question_token(now, &intent)?;
                intent
            }
            ClientMessage::QuestionUpvote { question_id } => {
                let intent = Intent::Upvote {
                    question_id,
                    voter: author,
                };
                self.check(now, &intent)?;
                self.take_question_token(now, &intent)?;
                intent
            }
            ClientMessage::ChatDelete { message_id } => {
                need(Permission::Moderate)?;
                Intent::Delete {
                    message_id,
                    by: author,
                }
            }
            ClientMessage::ViewerBan {
                message_id,
                question_id,
                viewer_id,
                by_ip,
                duration_secs,
                reason,
            } => {
                need(Permission::Moderate)?;
                let target = match (message_id, question_id, viewer_id) {
                    (Some(id), None, None) => BanTarget::Message(id),
                    (None, Some(id), None) => BanTarget::Question(id),
                    (None, None, Some(id)) => BanTarget::Viewer(ViewerId(id)),
                    _ => return Err(ErrorCode::BadMessage),
                };
                let duration = Duration::from_secs(duration_secs);
                if duration_secs == 0 || duration > self.config.max_ban {
                    return Err(ErrorCode::BadMessage);
                }
                let reason = reason
                    .map(|r| clean(&r).chars().take(200).collect::<String>())
                    .filter(|r| !r.is_empty());
                let ip = if by_ip {
                    self.ban_subject(&target).ok().and_then(|(_, ip)| ip)
                } else {
                    None
                };
                Intent::Ban {
                    target,
                    by_ip,
                    ip,
                    duration_ms: duration_secs.saturating_mul(1000),
                    reason,
                    by: author,
                }
            }
            ClientMessage::ViewerUnban { viewer_id } => {
                need(Permission::Moderate)?;
                Intent::Unban {
                    viewer_id: ViewerId(viewer_id),
                    by: author,
                }
            }
            ClientMessage::ChatSlowMode { seconds } => {
                need(Permission::Moderate)?;
                if seconds > self.config.max_slow_mode_secs {
                    return Err(ErrorCode::BadMessage);
                }
                Intent::Settings {
                    open: None,
                    slow_mode_secs: Some(seconds),
                    by: author,
                }
            }
            ClientMessage::ChatClose {} | ClientMessage::ChatOpen {} => {
                need(Permission::Moderate)?;
                Intent::Settings {
                    open: Some(matches!(message, ClientMessage::ChatOpen {})),
                    slow_mode_secs: None,
                    by: author,
                }
            }
            ClientMessage::QuestionAnswer {
                question_id,
                answer,
            } => {
                need(Permission::Answer)?;
                let answer = match answer {
                    Some(text) => {
                        let text = clean(&text);
                        if text.chars().count() > self.config.max_answer_chars {
                            return Err(ErrorCode::TooLong);
                        }
                        Some(text).filter(|t| !t.is_empty())
                    }
                    None => None,
                };
                Intent::Answer {
                    question_id,
                    answer,
                    by: author,
                }
            }
        };
        self.check(now, &intent)?;
        Ok(Some(intent))
    }

    fn take_question_token(&mut self, now: Millis, intent: &Intent) -> Result<(), ErrorCode> {
        let limit = self.config.question_rate;
        let local = self.local(intent)?;
        if !local.questions.try_take(limit, now, 1.0) {
            return Err(ErrorCode::RateLimited);
        }
        if let Some(ip) = author_ip(intent) {
            let limit = self.config.question_rate_per_ip;
            if !self.local_ip(ip, now).questions.try_take(limit, now, 1.0) {
                return Err(ErrorCode::RateLimited);
            }
        }
        Ok(())
    }

    /// The per-address limiter (created on first use).
    fn local_ip(&mut self, ip: IpAddr, now: Millis) -> &mut LocalIp {
        let config = &self.config;
        let shared = self.ips.entry(ip).or_insert_with(|| LocalIp {
            chat: TokenBucket::new(config.chat_rate_per_ip, now),
            questions: TokenBucket::new(config.question_rate_per_ip, now),
            likes: TokenBucket::new(config.like_rate_per_ip, now),
            recent_chat: VecDeque::new(),
            last_used: now,
        });
        shared.last_used = shared.last_used.max(now);
        shared
    }

    fn local(&mut self, intent: &Intent) -> Result<&mut LocalViewer, ErrorCode> {
        let id = match intent {
            Intent::Chat { author, .. } | Intent::Ask { author, .. } => &author.viewer_id,
            Intent::Upvote { voter, .. } => &voter.viewer_id,
            _ => return Err(ErrorCode::Internal),
        };
        let id = id.clone();
        self.local_of(&id)
    }

    fn local_of(&mut self, id: &ViewerId) -> Result<&mut LocalViewer, ErrorCode> {
        // Invariant: a connection's identity has a `locals` entry while it is connected.
        self.locals.get_mut(id).ok_or(ErrorCode::Internal)
    }

    fn snapshot_for(&self, author: &Author, now: Millis) -> ServerMessage {
        let you = You {
            nickname: author.nickname.clone(),
            role: author.role,
            banned_until: banned_until(&self.state.bans, &author.viewer_id, author.ip, now),
        };
        ServerMessage::Snapshot(Box::new(self.state.snapshot(
            you,
            self.config.snapshot_messages,
            self.config.snapshot_answered,
        )))
    }

    fn send(&mut self, conn: ConnId, message: &ServerMessage) {
        self.effects.push(Effect::Send {
            conn,
            frame: Frame::new(message),
        });
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, reference: Option<String>) {
        self.send(conn, &ServerMessage::error(code, reference));
    }

    fn viewers_message(&self) -> ServerMessage {
        ServerMessage::Viewers {
            seq: self.state.seq(),
            counts: self.state.viewers,
        }
    }
}

// Validation and sequencing.
impl Room {
    fn check_interactive(&self, now: Millis, author: &Author) -> Result<(), ErrorCode> {
        if !self.state.event.status.interactive() {
            return Err(ErrorCode::EventEnded);
        }
        if author.role.is_none()
            && banned_until(&self.state.bans, &author.viewer_id, author.ip, now).is_some()
        {
            return Err(ErrorCode::Banned);
        }
        Ok(())
    }

    /// State checks, run on the origin node and again by the sequencer.
    fn check(&self, now: Millis, intent: &Intent) -> Result<(), ErrorCode> {
        match intent {
            Intent::Chat { author, .. } => {
                self.check_interactive(now, author)?;
                if !self.state.chat.open && author.role.is_none() {
                    return Err(ErrorCode::ChatClosed);
                }
            }
            Intent::Ask { author, .. } => self.check_interactive(now, author)?,
            Intent::Upvote { question_id, voter } => {
                self.check_interactive(now, voter)?;
                let q = self
                    .state
                    .questions
                    .get(question_id)
                    .filter(|q| q.answer.is_none())
                    .ok_or(ErrorCode::NotFound)?;
                if q.voters.contains(&voter.viewer_id) {
                    return Err(ErrorCode::AlreadyVoted);
                }
                // Fresh cookies from one address do not stuff the vote: the address's
                // votes on this question are capped too (counted by the sequencer).
                let from_ip = voter
                    .ip
                    .filter(|_| voter.role.is_none())
                    .and_then(|ip| q.voter_ips.get(&ip))
                    .copied()
                    .unwrap_or(0);
                if from_ip >= self.config.votes_per_question_per_ip {
                    return Err(ErrorCode::AlreadyVoted);
                }
            }
            Intent::Delete { message_id, .. } => {
                // Older than the window: may exist in the record; the delete is stored
                // and broadcast (clients ignore unknown ids).
                let known = self.state.message(*message_id).is_some()
                    || *message_id < self.state.messages_floor;
                if !known {
                    return Err(ErrorCode::NotFound);
                }
            }
            Intent::Ban { target, .. } => {
                self.ban_subject(target)?;
            }
            Intent::Answer { question_id, .. } => {
                if !self.state.questions.contains_key(question_id) {
                    return Err(ErrorCode::NotFound);
                }
            }
            Intent::Likes { .. }
            | Intent::Unban { .. }
            | Intent::Settings { .. }
            | Intent::Status { .. }
            | Intent::Edit { .. }
            | Intent::Media { .. }
            | Intent::Draw { .. } => {}
        }
        Ok(())
    }

    /// The identity (and last known IP) a ban target names.
    fn ban_subject(&self, target: &BanTarget) -> Result<(ViewerId, Option<IpAddr>), ErrorCode> {
        let (id, ip) = match target {
            BanTarget::Message(id) => self
                .state
                .message(*id)
                .map(|m| (m.author.viewer_id.clone(), m.author.ip))
                .ok_or(ErrorCode::NotFound)?,
            BanTarget::Question(id) => self
                .state
                .questions
                .get(id)
                .map(|q| (q.author.viewer_id.clone(), q.author.ip))
                .ok_or(ErrorCode::NotFound)?,
            BanTarget::Viewer(id) => (id.clone(), None),
        };
        // Else the IP from a local connection, a recent message or a question, if any
        // (rows loaded from the database after a restart carry none).
        let ip = ip.or_else(|| {
            self.conns
                .values()
                .map(|c| &c.author)
                .chain(self.state.messages.iter().rev().map(|m| &m.author))
                .chain(self.state.questions.values().rev().map(|q| &q.author))
                .filter(|a| a.viewer_id == id)
                .find_map(|a| a.ip)
        });
        Ok((id, ip))
    }

    /// Routes an intent: sequence it here, forward it to the sequencer, or park it.
    fn submit(&mut self, now: Millis, origin: Option<Origin>, intent: Intent) {
        match self.role {
            Role::Sequencer => self.sequence(now, origin, intent),
            // The sequencer cannot be reached: a viewer hears so rather than lose the
            // message silently. The shell's own intents are still sent (the bus client
            // queues them until it reconnects).
            Role::Replica if !self.bus_up && origin.is_some() => {
                if let Some(origin) = origin {
                    self.reply_error(origin, ErrorCode::Unavailable);
                }
            }
            Role::Replica => match self.leader() {
                Some(to) => self.effects.push(Effect::Publish(BusMessage::Forward {
                    from: self.node.clone(),
                    to,
                    origin,
                    intent,
                })),
                // Unreachable after `update_role` (a replica with no leader takes over);
                // refusing is the safe answer if it ever happens.
                None => {
                    if let Some(origin) = origin {
                        self.reply_error(origin, ErrorCode::Unavailable);
                    }
                }
            },
            Role::Joining { .. } => {
                if self.parked.len() < self.config.max_parked {
                    self.parked.push_back((origin, intent));
                } else if let Some(origin) = origin {
                    self.reply_error(origin, ErrorCode::Unavailable);
                }
            }
        }
    }

    /// Sequencer: validate against the authoritative state and append to the log.
    fn sequence(&mut self, now: Millis, origin: Option<Origin>, intent: Intent) {
        if let Err(code) = self.check(now, &intent) {
            if let Some(origin) = origin {
                self.reply_error(origin, code);
            }
            return;
        }
        let next = self.state.seq() + 1;
        let op = match intent {
            Intent::Chat { author, text } => {
                tracing::debug!(id = next, %text, "chat");
                Op::ChatPosted {
                    id: next,
                    author,
                    text,
                }
            }
            Intent::Likes { count } => {
                self.pending_likes += count;
                return;
            }
            Intent::Ask { author, text } => Op::QuestionAsked {
                id: next,
                author,
                text,
            },
            Intent::Upvote { question_id, voter } => {
                let votes = self
                    .state
                    .questions
                    .get(&question_id)
                    .map_or(1, |q| q.votes + 1);
                Op::QuestionUpvoted {
                    id: question_id,
                    ip: voter.ip.filter(|_| voter.role.is_none()),
                    voter: voter.viewer_id,
                    votes,
                }
            }
            Intent::Delete { message_id, by } => {
                tracing::info!(message_id, "chat message deleted by moderator");
                Op::ChatDeleted { id: message_id, by }
            }
            Intent::Ban {
                target,
                by_ip,
                ip: known,
                duration_ms,
                reason,
                by,
            } => {
                let Ok((viewer_id, ip)) = self.ban_subject(&target) else {
                    return;
                };
                let ip = if by_ip { known.or(ip) } else { None };
                tracing::info!(duration_ms, by_ip, ip_known = ip.is_some(), "viewer banned");
                Op::ViewerBanned {
                    ban: Ban {
                        viewer_id,
                        ip,
                        until: Millis(now.0.saturating_add(duration_ms)),
                    },
                    reason,
                    by,
                    by_ip: by_ip && ip.is_none(),
                }
            }
            Intent::Unban { viewer_id, by } => Op::ViewerUnbanned { viewer_id, by },
            Intent::Settings {
                open,
                slow_mode_secs,
                by,
            } => Op::ChatSettingsChanged {
                open: open.unwrap_or(self.state.chat.open),
                slow_mode_secs: slow_mode_secs.unwrap_or(self.state.chat.slow_mode_secs),
                by,
            },
            Intent::Answer {
                question_id,
                answer,
                by,
            } => Op::QuestionAnswered {
                id: question_id,
                answer,
                by,
            },
            Intent::Status { status } => {
                // Going live and ending are the chart's end points: sample them now
                // rather than at the next minute boundary, so even a short event has a
                // curve.
                self.effects.push(Effect::SampleViewers(ViewerSample {
                    at: now,
                    counts: self.state.viewers,
                }));
                Op::StatusChanged { status }
            }
            Intent::Edit { event } => Op::EventEdited { event },
            Intent::Media { publishing } => Op::MediaChanged { publishing },
            Intent::Draw { update, step } => Op::Draw { update, step },
        };
        self.append(now, origin, op);
    }

    fn append(&mut self, now: Millis, origin: Option<Origin>, op: Op) {
        let entry = Entry {
            index: self.state.index + 1,
            term: self.state.term,
            seq: op.is_broadcast().then(|| self.state.seq() + 1),
            at: now,
            origin,
            op,
        };
        self.apply(now, &entry);
        if !matches!(entry.op, Op::TermStarted { .. }) {
            self.effects.push(Effect::Persist(entry.clone()));
        }
        self.unpublished.push(entry);
    }

    /// Applies an entry on any node: state, outbox, and the reply to a local origin.
    fn apply(&mut self, now: Millis, entry: &Entry) {
        if let Some(frame) = self.state.apply(entry) {
            self.outbox.push(frame);
        }
        if let Op::ViewerBanned {
            ban,
            reason,
            by,
            by_ip: true,
        } = &entry.op
        {
            self.bind_ban_to_ip(now, ban, reason, by);
        }
        let local_origin = entry
            .origin
            .as_ref()
            .filter(|o| o.node == self.node && self.conns.contains_key(&o.conn));
        if let (Some(origin), Some(action)) = (local_origin, entry.op.staff_action()) {
            let ack = ServerMessage::Ack {
                action: action.to_owned(),
                reference: origin.reference.clone(),
            };
            self.send(origin.conn, &ack);
        }
    }

    /// A ban meant to bind the viewer's address, which the sequencer did not know: if
    /// the viewer is connected here, send its address in a second ban (same expiry).
    fn bind_ban_to_ip(&mut self, now: Millis, ban: &Ban, reason: &Option<String>, by: &Author) {
        if ban.ip.is_some() || ban.until <= now {
            return;
        }
        let Some(ip) = self
            .conns
            .values()
            .filter(|c| c.author.viewer_id == ban.viewer_id)
            .find_map(|c| c.author.ip)
        else {
            return;
        };
        let intent = Intent::Ban {
            target: BanTarget::Viewer(ban.viewer_id.clone()),
            by_ip: true,
            ip: Some(ip),
            duration_ms: ban.until.0 - now.0,
            reason: reason.clone(),
            by: by.clone(),
        };
        self.submit(now, None, intent);
    }

    fn reply_error(&mut self, origin: Origin, code: ErrorCode) {
        if origin.node == self.node {
            if self.conns.contains_key(&origin.conn) {
                self.error(origin.conn, code, origin.reference);
            }
        } else {
            self.effects.push(Effect::Publish(BusMessage::Reject {
                from: self.node.clone(),
                to: origin.node,
                conn: origin.conn,
                code,
                reference: origin.reference,
            }));
        }
    }
}

// The bus.
impl Room {
    fn bus(&mut self, now: Millis, message: BusMessage) {
        let from = message.sender().clone();
        if from == self.node {
            return; // our own echo
        }
        match message {
            BusMessage::Heartbeat(hb) => self.heartbeat(now, hb),
            BusMessage::Forward {
                to, origin, intent, ..
            } => {
                if to != self.node {
                    return;
                }
                if self.role == Role::Sequencer {
                    self.sequence(now, origin, intent);
                } else if let Some(origin) = origin {
                    self.reply_error(origin, ErrorCode::Unavailable);
                }
            }
            BusMessage::Entries { entries, .. } => self.entries(now, from, entries),
            BusMessage::Reject {
                to,
                conn,
                code,
                reference,
                ..
            } => {
                if to == self.node && self.conns.contains_key(&conn) {
                    self.error(conn, code, reference);
                }
            }
            BusMessage::SyncRequest { to, .. } => {
                let for_me = to.as_ref().is_none_or(|to| *to == self.node);
                if for_me && self.role == Role::Sequencer {
                    self.flush(now);
                    self.effects.push(Effect::Publish(BusMessage::Sync {
                        from: self.node.clone(),
                        to: from,
                        state: Box::new(self.state.clone()),
                    }));
                }
            }
            BusMessage::Sync { to, state, .. } => {
                if to == self.node {
                    self.adopt(now, from, *state);
                }
            }
            BusMessage::Viewers { counts, term, .. } => {
                if self.role != Role::Sequencer && term >= self.state.term {
                    self.state.viewers = counts;
                    let message = self.viewers_message();
                    self.outbox.push(Frame::new(&message));
                    self.flush_now = true;
                }
            }
            BusMessage::Leave { .. } => {
                self.peers.remove(&from);
            }
        }
    }

    fn heartbeat(&mut self, now: Millis, hb: Heartbeat) {
        if self.role == Role::Sequencer {
            self.distinct.extend(hb.new_viewers.iter().cloned());
        }
        let from_leader = hb.sequencer && Some(&hb.node) == self.leader().as_ref();
        if from_leader && self.role == Role::Replica && hb.term >= self.state.term {
            // Being behind proves nothing yet (the entries may be in flight, or not even
            // published before this heartbeat): note the index; `drive` asks for a sync
            // only if we have not reached it within `lag_timeout`. A mark above what the
            // leader now reports came from a previous leader and will never be reached.
            while self
                .announced
                .back()
                .is_some_and(|&(index, _)| index > hb.index)
            {
                self.announced.pop_back();
            }
            let new_mark = self
                .announced
                .back()
                .is_none_or(|&(index, _)| index < hb.index);
            if hb.index > self.state.index && new_mark {
                self.announced.push_back((hb.index, now));
            }
        }
        self.peers.insert(
            hb.node,
            Peer {
                last_heard: now,
                viewers: hb.viewers,
                term: hb.term,
                seq: hb.seq,
                sequencer: hb.sequencer,
            },
        );
    }

    fn entries(&mut self, now: Millis, from: NodeId, entries: Vec<Entry>) {
        let Some(term) = entries.iter().map(|e| e.term).max() else {
            return;
        };
        if term < self.state.term {
            return; // a deposed sequencer that has not noticed yet
        }
        if self.role == Role::Sequencer {
            if !outranks((term, &from), (self.state.term, &self.node)) {
                return; // it will step down when it hears us
            }
            tracing::info!(term, "another node sequences this room; stepping down");
            self.role = Role::Replica;
        }
        self.touch_peer(now, &from, Some(term));
        if matches!(self.role, Role::Joining { .. }) {
            return; // a sync is on its way
        }
        for entry in entries {
            if entry.index <= self.state.index {
                if entry.term > self.state.term {
                    // Same index, newer term: our tail diverged from the new sequencer's.
                    self.request_sync(now, Some(from));
                    return;
                }
                continue; // a duplicate
            }
            if entry.index != self.state.index + 1 || entry.term < self.state.term {
                self.request_sync(now, Some(from));
                return;
            }
            self.apply(now, &entry);
        }
        // The sequencer already coalesced these; holding them again would add latency.
        self.flush_now = true;
    }

    fn bus_connection(&mut self, now: Millis, up: bool) {
        if up == self.bus_up {
            return;
        }
        self.bus_up = up;
        if !up {
            tracing::warn!(
                event = %self.state.event.id,
                "bus connection lost: no failover until it is back"
            );
            return;
        }
        tracing::info!(event = %self.state.event.id, "bus connection back; catching up");
        // Nobody could be heard meanwhile: every peer gets a full timeout again.
        for peer in self.peers.values_mut() {
            peer.last_heard = now;
        }
        self.next_heartbeat = now;
        self.last_sync_request = None;
        self.resync_until = Some(now.plus(self.config.peer_timeout * 3));
    }

    fn adopt(&mut self, now: Millis, from: NodeId, state: RoomState) {
        if self.role == Role::Sequencer
            && !outranks((state.term, &from), (self.state.term, &self.node))
        {
            return;
        }
        let term = state.term;
        tracing::info!(
            seq = state.seq(),
            term = state.term,
            "room state synced from sequencer"
        );
        // The same log further on (same term, and the same broadcast at our last seq):
        // our sockets need only the broadcasts they missed, in order, not a snapshot.
        let seq = self.state.seq();
        let same_log = self.role == Role::Replica
            && state.term == self.state.term
            && state.index >= self.state.index
            && match (self.state.replay.get(seq), state.replay.get(seq)) {
                (Some(ours), Some(theirs)) => ours == theirs,
                _ => true,
            };
        let missed = match state.replay.since(seq) {
            Replay::Frames(frames) if same_log => Some(frames),
            _ => None,
        };
        self.state = state;
        self.role = Role::Replica;
        self.touch_peer(now, &from, Some(term));
        self.announced.clear();
        self.resync_until = None;
        self.unpublished.clear();
        if let Some(frames) = missed {
            if !frames.is_empty() {
                tracing::info!(
                    missed = frames.len(),
                    "broadcasts missed on the bus filled in"
                );
            }
            self.outbox.extend(frames);
            self.flush_now = true;
            self.unpark(now);
            return;
        }
        // Frames of a log we no longer follow must not go out.
        self.outbox.clear();
        // Whatever our sockets saw may not match the adopted log: resend everything.
        let conns: Vec<(ConnId, Author)> = self
            .conns
            .iter()
            .map(|(id, c)| (*id, c.author.clone()))
            .collect();
        for (conn, author) in conns {
            let snapshot = self.snapshot_for(&author, now);
            self.send(conn, &snapshot);
        }
        self.unpark(now);
    }

    /// Notes that `node` is alive and, with `Some(term)`, sequencing in that term.
    fn touch_peer(&mut self, now: Millis, node: &NodeId, sequencing: Option<u64>) {
        let peer = self.peers.entry(node.clone()).or_insert(Peer {
            last_heard: now,
            viewers: 0,
            term: 0,
            seq: 0,
            sequencer: false,
        });
        peer.last_heard = now;
        if let Some(term) = sequencing {
            peer.sequencer = true;
            peer.term = peer.term.max(term);
        }
    }

    fn request_sync(&mut self, now: Millis, to: Option<NodeId>) {
        if !self.bus_up {
            return;
        }
        let recent = self
            .last_sync_request
            .is_some_and(|t| now < t.plus(self.config.heartbeat_interval));
        if recent {
            return;
        }
        self.last_sync_request = Some(now);
        self.effects.push(Effect::Publish(BusMessage::SyncRequest {
            from: self.node.clone(),
            to,
        }));
    }

    /// The node that sequences (`None`: this one). A live sequencer keeps its place
    /// (the claim with the highest term wins, ties to the smaller id), so a node joining
    /// never takes over; with no live claim, the smallest live id takes over.
    fn leader(&self) -> Option<NodeId> {
        let mine = (self.role == Role::Sequencer).then_some((self.state.term, &self.node));
        let claim = self
            .peers
            .iter()
            .filter(|(_, p)| p.sequencer)
            .map(|(id, p)| (p.term, id))
            .chain(mine)
            .reduce(|best, next| if outranks(next, best) { next } else { best });
        let chosen = match claim {
            Some((_, id)) => id,
            None => self
                .peers
                .keys()
                .next()
                .filter(|first| **first < self.node)
                .unwrap_or(&self.node),
        };
        (*chosen != self.node).then(|| chosen.clone())
    }

    fn unpark(&mut self, now: Millis) {
        for (origin, intent) in std::mem::take(&mut self.parked) {
            self.submit(now, origin, intent);
        }
    }
}

// Timers: roles, flushing, likes, presence.
impl Room {
    fn drive(&mut self, now: Millis) {
        self.update_role(now);
        if let Some(until) = self.resync_until {
            if now >= until {
                self.resync_until = None;
            } else if self.role == Role::Replica {
                self.request_sync(now, self.leader());
            }
        }
        // Without a bus nobody would hear a heartbeat (the client would only queue it).
        if now >= self.next_heartbeat {
            self.next_heartbeat = now.plus(self.config.heartbeat_interval);
            if self.bus_up {
                let heartbeat = Heartbeat {
                    node: self.node.clone(),
                    term: self.state.term,
                    index: self.state.index,
                    seq: self.state.seq(),
                    viewers: self.conns.len() as u64,
                    new_viewers: std::mem::take(&mut self.new_viewers),
                    sequencer: self.role == Role::Sequencer,
                };
                self.effects
                    .push(Effect::Publish(BusMessage::Heartbeat(heartbeat)));
            }
        }
        self.check_lag(now);
        if now >= self.next_prune {
            self.next_prune = now.plus(PRUNE_INTERVAL);
            self.prune_locals(now);
        }
        if self.pending_likes > 0 && now >= self.likes_due() {
            self.flush_likes(now);
        }
        if self.role == Role::Sequencer {
            if now >= self.next_viewers {
                self.next_viewers = now.plus(self.config.viewers_interval);
                self.publish_viewers();
            }
            if now >= self.next_sample {
                self.next_sample = next_boundary(now, self.config.sample_interval);
                self.effects.push(Effect::SampleViewers(ViewerSample {
                    at: now,
                    counts: self.state.viewers,
                }));
            }
        }
        if (!self.outbox.is_empty() || !self.unpublished.is_empty())
            && (self.flush_now || now >= self.flush_due())
        {
            self.flush(now);
        }
    }

    /// Replica: entries a heartbeat announced that are still missing after
    /// `lag_timeout` were lost on the bus, so ask for the whole state.
    fn check_lag(&mut self, now: Millis) {
        if self.role != Role::Replica {
            self.announced.clear();
            return;
        }
        let index = self.state.index;
        while self
            .announced
            .front()
            .is_some_and(|&(mark, _)| mark <= index)
        {
            self.announced.pop_front();
        }
        if self.lag_due().is_some_and(|due| now >= due) {
            tracing::info!(
                index,
                "entries announced by the sequencer did not arrive; syncing"
            );
            self.announced.clear();
            self.request_sync(now, self.leader());
        }
    }

    fn lag_due(&self) -> Option<Millis> {
        let &(_, since) = self.announced.front()?;
        Some(since.plus(self.config.lag_timeout))
    }

    fn update_role(&mut self, now: Millis) {
        if !self.bus_up {
            // Without a bus, silence proves nothing: keep peers and roles as they are.
            return;
        }
        let timeout = self.config.peer_timeout;
        self.peers.retain(|_, p| now < p.last_heard.plus(timeout));
        if let Role::Joining { until } = self.role {
            if now < until {
                return;
            }
            self.role = Role::Replica;
            if self.leader().is_some() {
                // Someone smaller is around but its sync has not come yet: keep asking.
                self.request_sync(now, self.leader());
            }
        }
        match (self.leader(), self.role) {
            (None, Role::Replica) => self.take_over(now),
            (Some(_), Role::Sequencer) => {
                self.flush(now);
                self.role = Role::Replica;
            }
            _ => {}
        }
        if !self.parked.is_empty() {
            self.unpark(now);
        }
    }

    fn take_over(&mut self, now: Millis) {
        let first_term = self.state.term == 0 && self.peers.is_empty();
        let known = self
            .peers
            .values()
            .map(|p| p.seq)
            .chain([self.state.seq()])
            .max()
            .unwrap_or_default();
        // A fresh room continues its seeded log; a takeover jumps past anything the
        // previous sequencer may have broadcast that never reached us.
        let seq = if first_term {
            known
        } else {
            known + self.config.takeover_seq_jump
        };
        let term = self
            .peers
            .values()
            .map(|p| p.term)
            .chain([self.state.term])
            .max()
            .unwrap_or_default()
            + 1;
        tracing::info!(term, seq, "room sequencer takes over");
        self.role = Role::Sequencer;
        self.state.term = term;
        self.cumulative_base = self.state.viewers.cumulative;
        self.distinct = self.seen.clone();
        self.cumulative_base = self
            .cumulative_base
            .saturating_sub(self.distinct.len() as u64);
        self.new_viewers.clear();
        self.viewers_sent = None;
        self.append(now, None, Op::TermStarted { seq });
    }

    fn flush_due(&self) -> Millis {
        self.last_flush
            .map_or(Millis(0), |t| t.plus(self.config.coalesce))
    }

    fn likes_due(&self) -> Millis {
        self.last_likes
            .map_or(Millis(0), |t| t.plus(self.config.coalesce))
    }

    fn flush_likes(&mut self, now: Millis) {
        let added = std::mem::take(&mut self.pending_likes);
        self.last_likes = Some(now);
        match self.role {
            Role::Sequencer => {
                let total = self.state.likes + added;
                self.append(now, None, Op::Likes { added, total });
            }
            Role::Replica => self.submit(now, None, Intent::Likes { count: added }),
            Role::Joining { .. } => self.pending_likes = added, // counted once synced
        }
    }

    fn publish_viewers(&mut self) {
        let current = self.conns.len() as u64 + self.peers.values().map(|p| p.viewers).sum::<u64>();
        let counts = ViewerCounts {
            current,
            peak: self.state.viewers.peak.max(current),
            cumulative: self
                .state
                .viewers
                .cumulative
                .max(self.cumulative_base + self.distinct.len() as u64),
        };
        self.state.viewers = counts;
        if self.viewers_sent == Some(counts) {
            return;
        }
        self.viewers_sent = Some(counts);
        let message = self.viewers_message();
        self.outbox.push(Frame::new(&message));
        self.effects.push(Effect::Publish(BusMessage::Viewers {
            from: self.node.clone(),
            term: self.state.term,
            counts,
        }));
    }

    /// Sends pending broadcasts to local sockets (one frame) and entries to the bus.
    fn flush(&mut self, now: Millis) {
        self.flush_now = false;
        if !self.unpublished.is_empty() {
            let entries = std::mem::take(&mut self.unpublished);
            self.effects.push(Effect::Publish(BusMessage::Entries {
                from: self.node.clone(),
                entries,
            }));
        }
        if let Some(frame) = Frame::batch(&self.outbox) {
            self.outbox.clear();
            self.last_flush = Some(now);
            self.effects.push(Effect::Broadcast { frame });
        }
    }

    fn prune_locals(&mut self, now: Millis) {
        // Long enough that slow mode and rate limits cannot be dodged by reconnecting.
        let keep = Duration::from_secs(u64::from(self.state.chat.slow_mode_secs).max(60));
        self.locals
            .retain(|_, l| l.conns > 0 || now < l.idle_since.plus(keep));
        self.ips.retain(|_, l| now < l.last_used.plus(keep));
    }
}

const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// Whether sequencer claim `a` beats `b`: higher term, then smaller node id.
fn outranks(a: (u64, &NodeId), b: (u64, &NodeId)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

/// The address a viewer's intent is limited by: none for staff (exempt) or when the
/// shell did not know it.
fn author_ip(intent: &Intent) -> Option<IpAddr> {
    let author = match intent {
        Intent::Chat { author, .. } | Intent::Ask { author, .. } => author,
        Intent::Upvote { voter, .. } => voter,
        _ => return None,
    };
    author.ip.filter(|_| author.role.is_none())
}

fn next_boundary(now: Millis, interval: Duration) -> Millis {
    let step = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Millis((now.0 / step).saturating_add(1).saturating_mul(step))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::EventStatus;

    fn event() -> EventInfo {
        EventInfo {
            id: "e1".into(),
            title: "区长在线访谈".into(),
            status: EventStatus::Live,
            details: Default::default(),
        }
    }

    fn config() -> RoomConfig {
        RoomConfig {
            join_grace: Duration::ZERO,
            ..RoomConfig::default()
        }
    }

    fn viewer(id: &str) -> Viewer {
        Viewer {
            id: ViewerId::from(id),
            nickname: id.to_uppercase(),
            ip: None,
        }
    }

    fn frames(effects: &[Effect]) -> Vec<String> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { frame, .. } | Effect::Broadcast { frame } => {
                    Some(frame.as_str().to_owned())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn single_node_sequences_at_once() {
        let (room, effects) = Room::new(
            NodeId::from("a"),
            event(),
            RoomSeed::default(),
            config(),
            Millis(0),
        );
        assert!(room.is_sequencer());
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::Publish(BusMessage::Heartbeat(_))))
        );
        assert!(!effects.iter().any(|e| matches!(e, Effect::Persist(_))));
    }

    #[test]
    fn chat_is_broadcast_with_seq_and_persisted() {
        let (mut room, _) = Room::new(
            NodeId::from("a"),
            event(),
            RoomSeed::default(),
            config(),
            Millis(0),
        );
        room.handle(
            Millis(10),
            Input::Join {
                conn: ConnId(1),
                viewer: viewer("v1"),
                role: None,
                since: None,
            },
        );
        let effects = room.handle(
            Millis(500),
            Input::Text {
                conn: ConnId(1),
                text: r#"{"type":"chat.send","text":" 你好\u0007 "}"#.into(),
            },
        );
        let out = frames(&effects);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0].contains(r#""type":"chat.message","seq":1,"id":1"#),
            "{}",
            out[0]
        );
        assert!(out[0].contains(r#""text":"你好""#));
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::Persist(Entry { seq: Some(1), .. })))
        );
    }

    #[test]
    fn bad_input_gets_error_and_changes_nothing() {
        let (mut room, _) = Room::new(
            NodeId::from("a"),
            event(),
            RoomSeed::default(),
            config(),
            Millis(0),
        );
        room.handle(
            Millis(0),
            Input::Join {
                conn: ConnId(1),
                viewer: viewer("v1"),
                role: None,
                since: None,
            },
        );
        for (text, code) in [
            ("not json", "bad_json"),
            (r#"{"type":"dance"}"#, "unknown_type"),
            (r#"{"type":"chat.delete","message_id":1}"#, "forbidden"),
            (r#"{"type":"chat.send","text":"   "}"#, "empty"),
        ] {
            let effects = room.handle(
                Millis(5),
                Input::Text {
                    conn: ConnId(1),
                    text: text.into(),
                },
            );
            assert_eq!(effects.len(), 1, "{effects:?}");
            let out = frames(&effects);
            assert!(
                out[0].contains(&format!(r#""code":"{code}""#)),
                "{text}: {}",
                out[0]
            );
        }
        assert_eq!(room.seq(), 0);
    }

    #[test]
    fn next_boundary_rounds_up() {
        assert_eq!(
            next_boundary(Millis(0), Duration::from_secs(60)),
            Millis(60_000)
        );
        assert_eq!(
            next_boundary(Millis(59_999), Duration::from_secs(60)),
            Millis(60_000)
        );
        assert_eq!(
            next_boundary(Millis(60_000), Duration::from_secs(60)),
            Millis(120_000)
        );
    }
}
