//! gongkai's live side: the event hub (chat, Q&A, likes, presence, moderation) and the
//! WebRTC SFU.
//!
//! The hub does no IO: it is a synchronous state machine driven by the `web` crate's
//! WebSocket shell; time, sockets, the database and the bus all stay outside. The SFU
//! owns peer connections (UDP sockets via the `webrtc` crate) but never sees HTTP: the
//! shell hands it SDP strings.
//!
//! # Layout
//!
//! - `hub`: one [`hub::Room`] per live event and node. `Room::handle(now, input)`
//!   returns effects (send, broadcast, close, persist, publish, sample).
//!   - `hub::protocol`: the JSON messages of `GET /ws/events/{id}` (see
//!     `docs/protocol.md`), [`hub::Frame`] (serialized once, shared), parsing.
//!   - `hub::room`: connections, validation, sequencing, coalescing, timers.
//!   - `hub::state`: the replicated room state and how a log entry changes it.
//!   - `hub::cluster`: log entries, intents and the bus messages between nodes.
//!   - `hub::moderation`: token buckets, bans, roles.
//!   - `hub::text`: control-character stripping, length, sensitive words.
//!   - `hub::replay`: the bounded buffer behind `?since=SEQ`.
//!   - `hub::queue`: the bounded per-connection outgoing queue for the shell.
//! - `sfu`: [`sfu::Sfu`], one WebRTC publisher per event forwarded to many viewers
//!   (WHIP/WHEP offers in, answers out); `sfu::rewrite` is its pure per-viewer RTP rewrite.

pub mod hub;
pub mod sfu;
