//! What crosses the bus between nodes serving the same event, and the room's log entries.
//!
//! See the module docs of `hub` for the sequencer design. In short: replicas send
//! [`Intent`]s to the sequencer; the sequencer turns accepted intents into [`Entry`]s
//! (an [`Op`] plus log index, term and, for viewer-visible ops, the broadcast seq) and
//! publishes them; every node applies entries in index order.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    AuthorView, ConnId, ErrorCode, EventInfo, EventStatus, HubError, Millis, NodeId, StaffRole,
    ViewerCounts, ViewerId, moderation::Ban, state::RoomState,
};

/// The full author of a message or action. Crosses the bus and goes to the database,
/// never to viewers (they get [`AuthorView`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub viewer_id: ViewerId,
    pub nickname: String,
    #[serde(default)]
    pub role: Option<StaffRole>,
    #[serde(default)]
    pub ip: Option<IpAddr>,
}

impl Author {
    pub fn view(&self) -> AuthorView {
        AuthorView {
            nickname: self.nickname.clone(),
            role: self.role,
        }
    }
}

/// Where an intent came from, so replies (`ack`, `error`) reach the right socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub node: NodeId,
    pub conn: ConnId,
    #[serde(default)]
    pub reference: Option<String>,
}

/// Whom a moderator bans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BanTarget {
    Message(u64),
    Question(u64),
    Viewer(ViewerId),
}

/// A request to change the room, validated on the origin node and (again, against the
/// authoritative state) by the sequencer. Text is already cleaned and filtered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "intent", rename_all = "snake_case")]
pub enum Intent {
    Chat {
        author: Author,
        text: String,
    },
    /// Likes aggregated on the origin node over one coalescing window.
    Likes {
        count: u64,
    },
    Ask {
        author: Author,
        text: String,
    },
    Upvote {
        question_id: u64,
        voter: Author,
    },
    Delete {
        message_id: u64,
        by: Author,
    },
    Ban {
        target: BanTarget,
        by_ip: bool,
        /// The banned viewer's address as the sending node knows it (a local connection
        /// or a recent message), for a sequencer that does not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<IpAddr>,
        duration_ms: u64,
        reason: Option<String>,
        by: Author,
    },
    Unban {
        viewer_id: ViewerId,
        by: Author,
    },
    Settings {
        open: Option<bool>,
        slow_mode_secs: Option<u32>,
        by: Author,
    },
    Answer {
        question_id: u64,
        answer: Option<String>,
        by: Author,
    },
    Status {
        status: EventStatus,
    },
    Edit {
        event: EventInfo,
    },
    Media {
        publishing: bool,
    },
    Draw {
        update: super::DrawUpdate,
        /// The step's index in the play-out (absent: not a numbered step).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<u64>,
    },
}

/// One change to the room, as applied by every node and persisted by the sequencer.
/// Ids of chat messages and questions are the seq of the broadcast that announced them:
/// unique per event and increasing, with no separate counter to keep in sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A sequencer took over: the log continues after `seq` (above any seq used before).
    TermStarted {
        seq: u64,
    },
    ChatPosted {
        id: u64,
        author: Author,
        text: String,
    },
    ChatDeleted {
        id: u64,
        by: Author,
    },
    Likes {
        added: u64,
        total: u64,
    },
    QuestionAsked {
        id: u64,
        author: Author,
        text: String,
    },
    QuestionUpvoted {
        id: u64,
        voter: ViewerId,
        votes: u64,
        /// The voter's address: votes per question are also counted per address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<IpAddr>,
    },
    QuestionAnswered {
        id: u64,
        answer: Option<String>,
        by: Author,
    },
    ChatSettingsChanged {
        open: bool,
        slow_mode_secs: u32,
        by: Author,
    },
    /// Not broadcast (a ban is not viewers' business); the banned viewer learns of it
    /// from the `banned` error when they next try to interact.
    ViewerBanned {
        ban: Ban,
        reason: Option<String>,
        by: Author,
        /// The ban was meant to bind the viewer's address too, which the sequencer did
        /// not know (`ban.ip` is `None`): a node with a connection of that viewer sends
        /// the address in a second ban.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_ip: bool,
    },
    ViewerUnbanned {
        viewer_id: ViewerId,
        by: Author,
    },
    StatusChanged {
        status: EventStatus,
    },
    EventEdited {
        event: EventInfo,
    },
    /// The event's publisher connected (`true`) or went away (`false`).
    MediaChanged {
        publishing: bool,
    },
    /// A step of a draw's live play-out (`draw.*` broadcasts). `step`: its index in the
    /// play-out, stored with the entry so a restarted play-out resumes after it.
    Draw {
        update: super::DrawUpdate,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<u64>,
    },
}

impl Op {
    /// Whether the op is broadcast to viewers (and so takes a seq).
    pub fn is_broadcast(&self) -> bool {
        !matches!(
            self,
            Op::TermStarted { .. } | Op::ViewerBanned { .. } | Op::ViewerUnbanned { .. }
        )
    }

    /// The staff action name acknowledged to its sender, if the op is one.
    pub fn staff_action(&self) -> Option<&'static str> {
        Some(match self {
            Op::ChatDeleted { .. } => "chat.delete",
            Op::QuestionAnswered { .. } => "question.answer",
            Op::ChatSettingsChanged { .. } => "chat.settings",
            Op::ViewerBanned { .. } => "viewer.ban",
            Op::ViewerUnbanned { .. } => "viewer.unban",
            _ => return None,
        })
    }
}

/// A log entry: `index` counts every op (gap detection between nodes), `seq` only the
/// broadcast ones (what clients see). `term` grows with each sequencer takeover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    #[serde(default)]
    pub seq: Option<u64>,
    pub at: Millis,
    #[serde(default)]
    pub origin: Option<Origin>,
    pub op: Op,
}

/// Sent by every node's room once per heartbeat interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: NodeId,
    pub term: u64,
    pub index: u64,
    pub seq: u64,
    /// Open connections on this node.
    pub viewers: u64,
    /// Identities that joined on this node since its previous heartbeat (for the
    /// sequencer's cumulative distinct count).
    #[serde(default)]
    pub new_viewers: Vec<ViewerId>,
    pub sequencer: bool,
}

/// Everything nodes say to each other about one event. The shell publishes these on one
/// subject per event (e.g. `gongkai.events.<id>`) and feeds every received one to the
/// room as [`Input::Bus`](super::Input::Bus); a node's own messages may echo back and are
/// ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusMessage {
    Heartbeat(Heartbeat),
    Forward {
        from: NodeId,
        to: NodeId,
        #[serde(default)]
        origin: Option<Origin>,
        intent: Intent,
    },
    Entries {
        from: NodeId,
        entries: Vec<Entry>,
    },
    Reject {
        from: NodeId,
        to: NodeId,
        conn: ConnId,
        code: ErrorCode,
        #[serde(default)]
        reference: Option<String>,
    },
    /// `to: None` asks whoever sequences.
    SyncRequest {
        from: NodeId,
        #[serde(default)]
        to: Option<NodeId>,
    },
    Sync {
        from: NodeId,
        to: NodeId,
        state: Box<RoomState>,
    },
    Viewers {
        from: NodeId,
        term: u64,
        counts: ViewerCounts,
    },
    /// The node's room is shutting down: fail over now rather than after the timeout.
    Leave {
        from: NodeId,
    },
}

impl BusMessage {
    pub fn sender(&self) -> &NodeId {
        match self {
            BusMessage::Heartbeat(h) => &h.node,
            BusMessage::Forward { from, .. }
            | BusMessage::Entries { from, .. }
            | BusMessage::Reject { from, .. }
            | BusMessage::SyncRequest { from, .. }
            | BusMessage::Sync { from, .. }
            | BusMessage::Viewers { from, .. }
            | BusMessage::Leave { from } => from,
        }
    }

    /// JSON bytes for the bus payload (debuggable with `nats sub`).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing these types cannot fail (string keys, no floats); an empty payload
        // would be rejected by `decode` on the receiver and logged there.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(payload: &[u8]) -> Result<BusMessage, HubError> {
        Ok(serde_json::from_slice(payload)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_bytes() {
        let author = Author {
            viewer_id: ViewerId::from("v1"),
            nickname: "甲".into(),
            role: None,
            ip: Some("127.0.0.2".parse().unwrap()),
        };
        let message = BusMessage::Entries {
            from: NodeId::from("a"),
            entries: vec![Entry {
                index: 3,
                term: 1,
                seq: Some(2),
                at: Millis(5),
                origin: None,
                op: Op::ChatPosted {
                    id: 2,
                    author,
                    text: "hi".into(),
                },
            }],
        };
        let back = BusMessage::decode(&message.encode()).unwrap();
        assert_eq!(back, message);
        assert!(BusMessage::decode(b"{}").is_err());
    }
}
