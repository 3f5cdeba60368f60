//! The wire format of `GET /ws/events/{event_id}`: JSON text frames `{"type": ...}`.
//!
//! `docs/protocol.md` is the reference for clients; this module is its source of truth.
//! Client frames are parsed in two steps (generic JSON object, then the typed message) so
//! that malformed JSON, an unknown `type` and bad fields get distinct error codes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{EventInfo, Millis, StaffRole};

/// One serialized server frame, shared by every connection it is delivered to.
///
/// Cloning is a reference-count increment: a broadcast is serialized once and the same
/// allocation is handed to every socket (see `Frame::to_bytes` for the zero-copy hand-off
/// to a WebSocket library).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame(Arc<str>);

impl Frame {
    /// Serializes a server message. Every `ServerMessage` serializes (string keys only, no
    /// non-finite floats), so the fallback is unreachable; it still yields valid JSON.
    pub fn new(message: &ServerMessage) -> Frame {
        match serde_json::to_string(message) {
            Ok(text) => Frame(text.into()),
            Err(error) => {
                tracing::error!(%error, "server message failed to serialize");
                Frame(r#"{"type":"error","code":"internal","message":"internal error"}"#.into())
            }
        }
    }

    /// Wraps already-serialized JSON (used when restoring a replay buffer from a peer).
    pub fn from_json(text: impl Into<Arc<str>>) -> Frame {
        Frame(text.into())
    }

    /// Joins frames into one `{"type":"batch","messages":[...]}` frame by concatenation:
    /// the members were serialized once already and are not parsed again.
    /// A single frame is returned unchanged (clients see a batch only when it saves frames).
    pub fn batch(frames: &[Frame]) -> Option<Frame> {
        match frames {
            [] => None,
            [one] => Some(one.clone()),
            many => {
                let len = many.iter().map(|f| f.0.len() + 1).sum::<usize>() + 32;
                let mut text = String::with_capacity(len);
                text.push_str(r#"{"type":"batch","messages":["#);
                for (i, frame) in many.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    text.push_str(&frame.0);
                }
                text.push_str("]}");
                Some(Frame(text.into()))
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Machine-readable reason in an `error` frame. Stable strings: clients switch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is larger than the limit; nothing was parsed.
    FrameTooLarge,
    /// The frame is not a JSON object or has no string `type`.
    BadJson,
    /// `type` names no client message.
    UnknownType,
    /// A known `type` with missing or ill-typed fields, or values out of range.
    BadMessage,
    /// Text is empty after removing control characters and surrounding whitespace.
    Empty,
    /// Text is longer than 500 characters (Unicode scalar values, not bytes).
    TooLong,
    /// Too many frames or messages from this viewer; retry later.
    RateLimited,
    /// Slow mode: this viewer must wait before sending another chat message.
    SlowMode,
    /// A moderator closed the chat.
    ChatClosed,
    /// The event has ended; no more chat, questions or likes.
    EventEnded,
    /// This viewer is banned from chat, questions and likes for now.
    Banned,
    /// The text contains a word on the sensitive list (reject mode).
    SensitiveWord,
    /// The action needs a staff role this connection does not have.
    Forbidden,
    /// No such message or question (or it was deleted).
    NotFound,
    /// This viewer already upvoted this question.
    AlreadyVoted,
    /// The room is reorganising across nodes; retry in a second.
    Unavailable,
    /// A server bug; logged.
    Internal,
}

impl ErrorCode {
    /// A short English description for the `message` field (pages show their own text).
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::FrameTooLarge => "frame too large",
            ErrorCode::BadJson => "frame is not a JSON object with a string \"type\"",
            ErrorCode::UnknownType => "unknown message type",
            ErrorCode::BadMessage => "missing or invalid fields",
            ErrorCode::Empty => "text is empty",
            ErrorCode::TooLong => "text is longer than 500 characters",
            ErrorCode::RateLimited => "too many messages, slow down",
            ErrorCode::SlowMode => "slow mode is on, wait before sending again",
            ErrorCode::ChatClosed => "chat is closed",
            ErrorCode::EventEnded => "the event has ended",
            ErrorCode::Banned => "you are banned from interacting in this event",
            ErrorCode::SensitiveWord => "the text contains a forbidden word",
            ErrorCode::Forbidden => "not permitted",
            ErrorCode::NotFound => "not found",
            ErrorCode::AlreadyVoted => "already upvoted",
            ErrorCode::Unavailable => "temporarily unavailable, retry",
            ErrorCode::Internal => "internal error",
        }
    }
}

/// A parsed client frame: the typed message plus the optional client `ref`
/// (echoed in `error` and `ack` replies so the client can match them to its request).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub reference: Option<String>,
    pub message: ClientMessage,
}

impl ClientFrame {
    pub fn new(message: ClientMessage) -> ClientFrame {
        ClientFrame {
            reference: None,
            message,
        }
    }
}

/// A rejected client frame: the code and the `ref` if one could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub code: ErrorCode,
    pub reference: Option<String>,
}

/// Longest accepted `ref`; longer ones are dropped (not echoed) rather than rejected.
pub const MAX_REFERENCE_CHARS: usize = 64;

/// Every message a client may send. Viewer messages first, then staff (moderation) ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientMessage {
    #[serde(rename = "chat.send")]
    ChatSend { text: String },
    /// `count` lets a client send a burst of taps at once (1..=50, default 1).
    #[serde(rename = "like")]
    Like {
        #[serde(default = "one")]
        count: u32,
    },
    #[serde(rename = "question.ask")]
    QuestionAsk { text: String },
    #[serde(rename = "question.upvote")]
    QuestionUpvote { question_id: u64 },
    /// Keep-alive and latency probe; `t` is echoed in the `pong`.
    #[serde(rename = "ping")]
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        t: Option<serde_json::Number>,
    },
    /// Moderator/admin: remove a chat message everywhere, including the record.
    #[serde(rename = "chat.delete")]
    ChatDelete { message_id: u64 },
    /// Moderator/admin: ban a viewer, named by one of their messages or questions or by id.
    #[serde(rename = "viewer.ban")]
    ViewerBan {
        #[serde(default)]
        message_id: Option<u64>,
        #[serde(default)]
        question_id: Option<u64>,
        #[serde(default)]
        viewer_id: Option<String>,
        /// Also ban the IP address the viewer used, for the same duration, in this
        /// event (the default: a fresh cookie from the same address is still banned).
        /// `false` bans the identity only (an address many people share).
        #[serde(default = "yes")]
        by_ip: bool,
        duration_secs: u64,
        #[serde(default)]
        reason: Option<String>,
    },
    #[serde(rename = "viewer.unban")]
    ViewerUnban { viewer_id: String },
    /// Moderator/admin: minimum seconds between chat messages per viewer (0 turns it off).
    #[serde(rename = "chat.slow_mode")]
    ChatSlowMode { seconds: u32 },
    #[serde(rename = "chat.close")]
    ChatClose {},
    #[serde(rename = "chat.open")]
    ChatOpen {},
    /// Staff: mark a question answered, live (no text) or with a text answer.
    #[serde(rename = "question.answer")]
    QuestionAnswer {
        question_id: u64,
        #[serde(default)]
        answer: Option<String>,
    },
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

/// The `type` strings of `ClientMessage`, to tell an unknown type from bad fields.
const CLIENT_TYPES: &[&str] = &[
    "chat.send",
    "like",
    "question.ask",
    "question.upvote",
    "ping",
    "chat.delete",
    "viewer.ban",
    "viewer.unban",
    "chat.slow_mode",
    "chat.close",
    "chat.open",
    "question.answer",
];

/// Parses one client text frame. The size check comes first so an oversized frame costs
/// nothing to reject; the shell should also cap the WebSocket message size near this.
pub fn parse_client_frame(text: &str, max_bytes: usize) -> Result<ClientFrame, Rejected> {
    let reject = |code, reference| Err(Rejected { code, reference });
    if text.len() > max_bytes {
        return reject(ErrorCode::FrameTooLarge, None);
    }
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str(text) else {
        return reject(ErrorCode::BadJson, None);
    };
    let reference = match object.remove("ref") {
        Some(serde_json::Value::String(r)) if r.chars().count() <= MAX_REFERENCE_CHARS => Some(r),
        _ => None,
    };
    let Some(serde_json::Value::String(kind)) = object.get("type") else {
        return reject(ErrorCode::BadJson, reference);
    };
    if !CLIENT_TYPES.contains(&kind.as_str()) {
        return reject(ErrorCode::UnknownType, reference);
    }
    match serde_json::from_value(serde_json::Value::Object(object)) {
        Ok(message) => Ok(ClientFrame { reference, message }),
        Err(_) => reject(ErrorCode::BadMessage, reference),
    }
}

/// Author of a chat message or question as viewers see it: no identity, no IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorView {
    pub nickname: String,
    /// Present for staff, so pages can badge official answers and hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<StaffRole>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessageView {
    /// The seq of the broadcast that carried the message; also its `id`.
    pub seq: u64,
    pub id: u64,
    pub author: AuthorView,
    pub text: String,
    pub time: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionView {
    pub id: u64,
    pub author: AuthorView,
    pub text: String,
    pub votes: u64,
    pub time: Millis,
    pub answered: bool,
    /// The text answer; `null` when answered live (or not yet answered).
    #[serde(default)]
    pub answer: Option<String>,
    #[serde(default)]
    pub answered_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ViewerCounts {
    /// Open connections across all nodes now.
    pub current: u64,
    /// Highest `current` seen during the event.
    pub peak: u64,
    /// Distinct viewer identities that have joined during the event.
    pub cumulative: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSettings {
    pub open: bool,
    /// Minimum seconds between two chat messages of one viewer; 0 = off.
    pub slow_mode_secs: u32,
}

/// The event's video as pages need it: whether a publisher is connected (whatever the
/// event's status: staff preview a rehearsal; the public plays it once `live`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaInfo {
    pub publishing: bool,
}

/// Who the connection is, so pages can show staff tools and a ban notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct You {
    pub nickname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<StaffRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banned_until: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last seq included; resume later with `since` = the highest seq received.
    pub seq: u64,
    pub event: EventInfo,
    pub viewers: ViewerCounts,
    pub likes: u64,
    pub chat: ChatSettings,
    pub media: MediaInfo,
    /// The last 50 chat messages, oldest first.
    pub messages: Vec<ChatMessageView>,
    /// Unanswered questions, most votes first (ties: oldest first).
    pub questions: Vec<QuestionView>,
    /// The most recently answered questions (up to 50), newest last.
    pub answered: Vec<QuestionView>,
    pub you: You,
}

/// `draw.seed`: what the seed was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawSeedInfo {
    pub draw_id: String,
    pub seed: String,
    /// The witnesses' secrets (hex), in announcement order.
    pub reveals: Vec<String>,
    pub beacon_text: Option<String>,
    /// How many `draw.number` messages follow.
    pub units: u64,
}

/// `draw.admitted`: one kindergarten's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawAdmittedInfo {
    pub draw_id: String,
    pub kg: String,
    pub name: String,
    pub seats: u64,
    pub units: Vec<String>,
    /// Children admitted (units of multiples count each child).
    pub children: u64,
}

/// A step of a draw's live play-out, as the shell hands it to the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum DrawUpdate {
    Seed(DrawSeedInfo),
    Number {
        draw_id: String,
        number: u64,
        unit: String,
        size: u64,
    },
    Admitted(DrawAdmittedInfo),
    Published {
        draw_id: String,
        transcript_hash: String,
    },
}

impl DrawUpdate {
    /// The draw the step belongs to.
    pub fn draw_id(&self) -> &str {
        match self {
            DrawUpdate::Seed(seed) => &seed.draw_id,
            DrawUpdate::Number { draw_id, .. } | DrawUpdate::Published { draw_id, .. } => draw_id,
            DrawUpdate::Admitted(admitted) => &admitted.draw_id,
        }
    }

    /// The broadcast for this step with its `seq`.
    pub fn message(&self, seq: u64) -> ServerMessage {
        match self.clone() {
            DrawUpdate::Seed(seed) => ServerMessage::DrawSeed { seq, seed },
            DrawUpdate::Number {
                draw_id,
                number,
                unit,
                size,
            } => ServerMessage::DrawNumber {
                seq,
                draw_id,
                number,
                unit,
                size,
            },
            DrawUpdate::Admitted(admitted) => ServerMessage::DrawAdmitted { seq, admitted },
            DrawUpdate::Published {
                draw_id,
                transcript_hash,
            } => ServerMessage::DrawPublished {
                seq,
                draw_id,
                transcript_hash,
            },
        }
    }
}

/// Every message the server sends. Those with a `seq` are broadcasts in the room's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    #[serde(rename = "snapshot")]
    Snapshot(Box<Snapshot>),
    #[serde(rename = "chat.message")]
    ChatMessage(ChatMessageView),
    #[serde(rename = "chat.deleted")]
    ChatDeleted { seq: u64, id: u64 },
    #[serde(rename = "chat.settings")]
    ChatSettings {
        seq: u64,
        open: bool,
        slow_mode_secs: u32,
    },
    /// Likes aggregated over a window: `added` since the previous `likes`, `total` overall.
    #[serde(rename = "likes")]
    Likes { seq: u64, total: u64, added: u64 },
    #[serde(rename = "question.asked")]
    QuestionAsked { seq: u64, question: QuestionView },
    #[serde(rename = "question.upvoted")]
    QuestionUpvoted { seq: u64, id: u64, votes: u64 },
    #[serde(rename = "question.answered")]
    QuestionAnswered {
        seq: u64,
        id: u64,
        answer: Option<String>,
        answered_at: Millis,
    },
    /// Presence; not in the log: `seq` is the latest log seq, not a new one.
    #[serde(rename = "viewers")]
    Viewers {
        seq: u64,
        #[serde(flatten)]
        counts: ViewerCounts,
    },
    #[serde(rename = "event.status")]
    EventStatus {
        seq: u64,
        status: super::EventStatus,
    },
    #[serde(rename = "event.updated")]
    EventUpdated { seq: u64, event: EventInfo },
    /// The event's publisher connected or went away.
    #[serde(rename = "media.state")]
    MediaState { seq: u64, publishing: bool },
    /// A draw ceremony's seed, once computed (the start of the live play-out).
    #[serde(rename = "draw.seed")]
    DrawSeed {
        seq: u64,
        #[serde(flatten)]
        seed: DrawSeedInfo,
    },
    /// One lottery number, in order: `number` (1-based) went to `unit`.
    #[serde(rename = "draw.number")]
    DrawNumber {
        seq: u64,
        draw_id: String,
        number: u64,
        unit: String,
        size: u64,
    },
    /// One kindergarten's admitted units, in rank order.
    #[serde(rename = "draw.admitted")]
    DrawAdmitted {
        seq: u64,
        #[serde(flatten)]
        admitted: DrawAdmittedInfo,
    },
    /// The play-out is over; the signed transcript is public.
    #[serde(rename = "draw.published")]
    DrawPublished {
        seq: u64,
        draw_id: String,
        transcript_hash: String,
    },
    /// Sent after replaying missed broadcasts on a `since` reconnect.
    #[serde(rename = "resumed")]
    Resumed { seq: u64, replayed: u64 },
    /// A staff action was applied.
    #[serde(rename = "ack")]
    Ack {
        action: String,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    #[serde(rename = "error")]
    Error {
        code: ErrorCode,
        message: String,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    #[serde(rename = "pong")]
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        t: Option<serde_json::Number>,
    },
    /// Several broadcasts coalesced into one frame, in seq order. Only the server sends it;
    /// clients handle each member as if it had arrived alone.
    #[serde(rename = "batch")]
    Batch { messages: Vec<ServerMessage> },
}

impl ServerMessage {
    pub fn error(code: ErrorCode, reference: Option<String>) -> ServerMessage {
        ServerMessage::Error {
            code,
            message: code.message().to_owned(),
            reference,
        }
    }

    /// The log seq this message carries, if it is a logged broadcast.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ServerMessage::ChatMessage(m) => Some(m.seq),
            ServerMessage::ChatDeleted { seq, .. }
            | ServerMessage::ChatSettings { seq, .. }
            | ServerMessage::Likes { seq, .. }
            | ServerMessage::QuestionAsked { seq, .. }
            | ServerMessage::QuestionUpvoted { seq, .. }
            | ServerMessage::QuestionAnswered { seq, .. }
            | ServerMessage::EventStatus { seq, .. }
            | ServerMessage::EventUpdated { seq, .. }
            | ServerMessage::MediaState { seq, .. }
            | ServerMessage::DrawSeed { seq, .. }
            | ServerMessage::DrawNumber { seq, .. }
            | ServerMessage::DrawAdmitted { seq, .. }
            | ServerMessage::DrawPublished { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientFrame, Rejected> {
        parse_client_frame(text, 1024)
    }

    #[test]
    fn parses_known_messages_and_ref() {
        let frame = parse(r#"{"type":"chat.send","text":"你好","ref":"a1"}"#).unwrap();
        assert_eq!(frame.reference.as_deref(), Some("a1"));
        assert_eq!(
            frame.message,
            ClientMessage::ChatSend {
                text: "你好".into()
            }
        );
        assert_eq!(
            parse(r#"{"type":"like"}"#).unwrap().message,
            ClientMessage::Like { count: 1 }
        );
        assert!(matches!(
            parse(r#"{"type":"chat.close"}"#).unwrap().message,
            ClientMessage::ChatClose {}
        ));
    }

    #[test]
    fn rejections_have_distinct_codes() {
        let code = |t: &str| parse(t).unwrap_err().code;
        assert_eq!(code("{"), ErrorCode::BadJson);
        assert_eq!(code("[1]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"text":"x"}"#), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"chat.shout"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"chat.send"}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(r#"{"type":"question.upvote","question_id":-1}"#),
            ErrorCode::BadMessage
        );
        let big = format!(r#"{{"type":"chat.send","text":"{}"}}"#, "x".repeat(2000));
        assert_eq!(code(&big), ErrorCode::FrameTooLarge);
        let err = parse(r#"{"type":"nope","ref":"r9"}"#).unwrap_err();
        assert_eq!(err.reference.as_deref(), Some("r9"));
    }

    #[test]
    fn batch_concatenates_without_reparsing() {
        let a = Frame::new(&ServerMessage::ChatDeleted { seq: 1, id: 7 });
        let b = Frame::new(&ServerMessage::Likes {
            seq: 2,
            total: 10,
            added: 3,
        });
        assert_eq!(Frame::batch(&[]), None);
        assert_eq!(Frame::batch(std::slice::from_ref(&a)), Some(a.clone()));
        let batch = Frame::batch(&[a, b]).unwrap();
        let parsed: ServerMessage = serde_json::from_str(batch.as_str()).unwrap();
        let ServerMessage::Batch { messages } = parsed else {
            panic!("not a batch: {batch}")
        };
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].seq(), Some(2));
    }

    #[test]
    fn viewers_flattens_counts() {
        let frame = Frame::new(&ServerMessage::Viewers {
            seq: 4,
            counts: ViewerCounts {
                current: 2,
                peak: 3,
                cumulative: 5,
            },
        });
        assert_eq!(
            frame.as_str(),
            r#"{"type":"viewers","seq":4,"current":2,"peak":3,"cumulative":5}"#
        );
    }
}
