//! The event interaction hub: one [`Room`] per live event (chat, Q&A, likes, presence,
//! moderation), as a pure state machine.
//!
//! # Shape
//!
//! [`Room::handle`]`(now, input) -> Vec<Effect>` is the whole interface. The room does no
//! IO, reads no clock and spawns nothing: the WebSocket shell in `web` feeds it joins,
//! leaves, client text frames, staff actions, bus messages and ticks, and carries out the
//! returned [`Effect`]s in order (send/broadcast/close sockets, persist, publish on the
//! bus, record a viewer sample). [`Room::poll_timeout`] says when the next tick is due.
//!
//! # Log, seq and replay
//!
//! Everything that changes what a viewer sees (chat, deletions, likes, questions, votes,
//! answers, chat settings, event status) is an [`Entry`] in the room's log and its
//! broadcast carries the next per-event `seq`, contiguous from 1 within a room lifetime.
//! Recent broadcasts stay in a [`ReplayBuffer`]; a client reconnecting with `since=SEQ`
//! gets exactly the frames after `SEQ`, or a fresh `snapshot` when `SEQ` is older than the
//! buffer or unknown. `viewers` is presence, not log: it carries the current seq without
//! taking a new one, and the next one supersedes it.
//!
//! # Several nodes, one room
//!
//! One event's viewers may be spread over several `gongkai serve` processes joined by a
//! bus (NATS, or in-process). The design is a single **sequencer** per event plus
//! replicas, chosen with no coordinator: every node's room sends a [`BusMessage::Heartbeat`]
//! each second (with its local viewer count), and the live node with the smallest
//! [`NodeId`] sequences. Alternatives considered:
//!
//! - *per-node seq plus dedup*: each node numbers its own messages, so a client's single
//!   `since` would be meaningless on another node (reconnects land anywhere) and the
//!   order of chat would differ per node;
//! - *every node applies everything in bus order*: needs a total order across publishers,
//!   which core NATS does not promise;
//! - *the database assigns seq*: a round trip per chat message and a reorder buffer.
//!
//! With a sequencer, a viewer's message is validated on its own node (rate limit, slow
//! mode, length, sensitive words, ban, closed chat) and then forwarded as an [`Intent`];
//! the sequencer re-checks state (ban, closed, vote), assigns index and seq, persists, and
//! publishes [`Entry`]s (batched per coalescing window). Replicas apply entries in index
//! order, so all nodes hold the same state and the same replay buffer, and every node
//! broadcasts only to its own sockets: no duplicates, one seq space, `since` works on any
//! node. Only the sequencer persists and samples viewer counts, so the database gets each
//! row once. Viewer counts: each heartbeat carries the node's local count; the sequencer
//! sums them (plus distinct identities reported by the nodes) and publishes `viewers`.
//!
//! Failover: when the sequencer's heartbeats stop, the next smallest node takes over with
//! a new `term`. Its log restarts at a seq above anything any node reported, and every
//! node's replay buffer restarts there and its sockets get a fresh snapshot, so no seq is
//! ever reused with different content. A replica that sees a hole or a conflicting term
//! asks the sequencer for a [`BusMessage::Sync`] (the full replicated state) and re-sends
//! snapshots to its sockets. So does a replica still short of an index a sequencer
//! heartbeat announced after `lag_timeout` (3 s): entries lost with nothing after them.
//! Merely being behind at a heartbeat is no reason: under load entries arrive late, and
//! a needless sync (a state transfer plus a snapshot per socket) only adds to the load. Intents in flight during a failover may be lost (the sender
//! sees no `chat.message` and can resend); state never diverges silently.
//!
//! # Coalescing
//!
//! Broadcast frames are serialized once ([`Frame`] is an `Arc<str>`) and queued; a flush
//! sends one frame (a `batch` when there are several) to all local sockets. The first
//! frame after a quiet period goes out at once; later ones wait until `coalesce` has
//! passed since the previous flush. Likes are additionally aggregated: taps within the
//! window become one `likes` entry.

mod cluster;
mod moderation;
mod protocol;
mod queue;
mod replay;
mod room;
mod state;
mod text;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use cluster::{Author, BusMessage, Entry, Heartbeat, Intent, Op, Origin};
pub use moderation::{Ban, RateLimit, TokenBucket};
pub use protocol::{
    AuthorView, ChatMessageView, ChatSettings, ClientFrame, ClientMessage, DrawAdmittedInfo,
    DrawSeedInfo, DrawUpdate, ErrorCode, Frame, MAX_REFERENCE_CHARS, MediaInfo, QuestionView,
    Rejected, ServerMessage, Snapshot, ViewerCounts, You, parse_client_frame,
};
pub use queue::{
    CLOSE_GOING_AWAY, CLOSE_LAGGING, CLOSE_POLICY, OutboundQueue, Overflow, QueueItem,
};
pub use replay::{Replay, ReplayBuffer};
pub use room::{Effect, Input, Room, RoomConfig, RoomSeed, ViewerSample};
pub use state::{AnswerRecord, ChatRecord, QuestionRecord};
pub use text::{SensitiveMode, SensitiveWords, clean, clean_message, clean_nickname, fold};

/// Milliseconds since the UNIX epoch. The room's only notion of time; the shell passes it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub fn plus(self, duration: std::time::Duration) -> Millis {
        Millis(
            self.0
                .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    pub fn since(self, earlier: Millis) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// A connection, numbered by the shell; unique within one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnId(pub u64);

/// A viewer's identity: the id in their signed cookie (or the staff user id, prefixed
/// by the shell so the two spaces cannot collide). Never shown to other viewers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ViewerId(pub String);

impl From<&str> for ViewerId {
    fn from(id: &str) -> ViewerId {
        ViewerId(id.to_owned())
    }
}

/// A `gongkai serve` process, as named on the bus. Unique per process start (e.g. host,
/// pid and a random suffix). The smallest live id sequences each room.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl From<&str> for NodeId {
    fn from(id: &str) -> NodeId {
        NodeId(id.to_owned())
    }
}

/// Who is connecting, as the shell authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub id: ViewerId,
    pub nickname: String,
    /// For IP bans; never logged above debug.
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Moderator,
    Admin,
    Broadcaster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Scheduled,
    Live,
    Ended,
    Cancelled,
}

impl EventStatus {
    /// Whether viewers may still chat, ask, upvote and like. Questions are welcome before
    /// the event (people send them in from the announcement page).
    pub fn interactive(self) -> bool {
        matches!(self, EventStatus::Scheduled | EventStatus::Live)
    }
}

/// The event as the snapshot shows it. The room reads `status` only; `details` (guests,
/// summary, schedule, ...) is whatever the shell wants pages to get, passed through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInfo {
    pub id: String,
    pub title: String,
    pub status: EventStatus,
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// Errors at the hub's boundary with the shell (bad configuration, undecodable bus data).
/// Client mistakes are not errors here: they become `error` frames via [`Effect::Send`].
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("sensitive word list: {0}")]
    SensitiveWords(String),
    #[error("bus message does not decode: {0}")]
    BusDecode(#[from] serde_json::Error),
}
