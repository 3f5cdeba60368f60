//! The `gongkai` service: HTTP server, configuration, staff auth, persistence and pages.
//! This is the only crate that knows HTTP and SQL; `lottery` and `streaming` stay pure of
//! both.
//!
//! # Layout
//! - `cli`: the command line (`serve`, `admin`, `draw`, `keys`)
//! - `config`: layered `Settings` (file < env < flags)
//! - `server`: bind, serve (header and body timeouts), graceful shutdown
//! - `limits`: per-client-IP caps on sockets, WHEP sessions and viewer identities
//! - `routes`: the HTTP router (API, pages, probes)
//! - `auth`: roles, passwords, sessions, CSRF, API tokens, rate limits
//! - `store`: SQLite/PostgreSQL persistence
//! - `hub_shell`: live-event rooms over WebSockets, their persistence and the bus
//! - `on_air`: the event's status as the switch for its media, on every node
//! - `pages`: templates, locales, assets
//! - `error`: `ApiError`, the JSON error contract
//! - `csv_out`: CSV the server writes, formula cells neutralised
//! - `telemetry`, `telemetry_metrics`: logs and Prometheus metrics

pub mod auth;
pub mod ceremony;
pub mod cli;
pub mod config;
pub mod csv_out;
pub mod domain;
pub mod error;
pub mod hub_shell;
pub mod limits;
pub mod on_air;
pub mod pages;
pub mod routes;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod telemetry_metrics;
pub mod viewer;
