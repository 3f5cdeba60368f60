//! gongkai's live side: the event hub (chat, Q&A, likes, presence, moderation) and,
//! later, the SFU.
//!
//! This crate does no IO. The hub is a synchronous state machine driven by the `web`
//! crate's WebSocket shell: time, sockets, the database and the bus all stay outside.
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

pub mod hub;
