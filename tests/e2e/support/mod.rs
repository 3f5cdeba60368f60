//! Test harness: start the real `gongkai` binary, talk to it over HTTP, drive a
//! real browser against it.
//!
//! # Layout
//! - `app`: [`TestApp`] spawns `gongkai serve` on a free port with a fresh data
//!   directory and database, and kills it on drop.
//! - `binary`: where the `gongkai` binary is and how to run its CLI.
//! - `postgres`: [`TestDatabase`], a fresh PostgreSQL database per test.
//! - `nats`: [`nats::NatsServer`], a NATS server of the test's own that it may kill.
//! - `browser`: [`Browser`], Debian's Chromium driven through chromedriver.
//! - `http`: raw HTTP helpers for what reqwest cannot express (oversized bodies).
//!
//! Everything is silent unless `TEST_LOG=1`; the server's stderr is printed when
//! the test owning it fails.

#![allow(dead_code)] // reason: not every test module uses every helper

pub mod app;
pub mod binary;
pub mod browser;
pub mod http;
pub mod nats;
pub mod peer;
pub mod postgres;

pub use app::{AppOptions, TestApp};
pub use binary::{gongkai_command, run_with_timeout};
pub use browser::Browser;
pub use http::send_oversized_body;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether the developer asked to see logs (`TEST_LOG=1`).
pub fn test_log() -> bool {
    std::env::var("TEST_LOG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A name that is unique across processes and tests running in parallel:
/// lowercase letters and digits only, so it is valid as a SQL identifier.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}x{:x}x{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A strong enough password for test users (not a secret).
pub const PASSWORD: &str = "correct horse battery staple 42";
