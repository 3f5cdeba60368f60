//! What the controller and its workers say to each other (one JSON object per line:
//! commands on the worker's stdin, reports on its stdout), and the chat payload format
//! both sides of the measurement agree on.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memmem;
use serde::{Deserialize, Serialize};

use crate::histogram::SparseHistogram;

/// Controller -> worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// First line: what to open.
    Start(WorkerPlan),
    /// Start counting deliveries; senders send until `send_until_us`.
    Measure { send_until_us: u64 },
    /// Report and exit.
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    pub worker: usize,
    /// Every client socket of this worker binds to this loopback address.
    pub local_ip: IpAddr,
    pub targets: Vec<Target>,
    pub event: String,
    /// Read-only viewers (no cookie).
    pub viewers: usize,
    /// Viewer `k` of this worker connects to `targets[(target_offset + k) % len]`.
    pub target_offset: usize,
    pub senders: Vec<SenderPlan>,
    /// Each sender sends one message every this many microseconds.
    pub send_interval_us: u64,
    /// Total number of senders over all workers (for staggering).
    pub senders_total: usize,
    pub connects_per_sec: f64,
    pub text_len: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SenderPlan {
    /// Position among all senders (staggers the send times).
    pub index: usize,
    pub target: usize,
    /// Value of the `gongkai_viewer` cookie.
    pub cookie: String,
}

/// Worker -> controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    Progress(Progress),
    Final(Box<FinalReport>),
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Progress {
    pub assigned: u64,
    /// Handshakes that succeeded.
    pub connected: u64,
    /// Connected and not closed since.
    pub open: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FinalReport {
    pub progress: Progress,
    /// Our chat messages received during the measurement.
    pub deliveries: u64,
    /// Our chat messages received during the measurement but sent before it (snapshots).
    pub stale: u64,
    pub frames: u64,
    pub bytes: u64,
    pub sent: u64,
    pub send_failed: u64,
    /// `error` frames by `code`.
    pub error_codes: BTreeMap<String, u64>,
    /// Connect failures and disconnects by reason (close code, I/O error).
    pub failures: BTreeMap<String, u64>,
    pub disconnects: BTreeMap<String, u64>,
    /// Open sockets per target (index into the plan's targets) at the end.
    pub open_by_target: Vec<u64>,
    pub latency_us: SparseHistogram,
}

/// Microseconds since the UNIX epoch: the clock every process on the machine shares.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// Our chat text starts with this, then the send time in µs since the epoch.
const STAMP_PREFIX: &str = "hl";
/// How the server serializes a message's text (compact JSON).
const STAMP_MARKER: &str = "\"text\":\"hl";

/// The `chat.send` frame carrying `sent_us`, padded with `x` to about `text_len` chars.
pub fn chat_frame(sent_us: u64, text_len: usize) -> String {
    let stamp = format!("{STAMP_PREFIX}{sent_us} ");
    let padding = "x".repeat(text_len.saturating_sub(stamp.len()));
    // Digits, a space and `x`: nothing to escape in JSON.
    format!(r#"{{"type":"chat.send","text":"{stamp}{padding}"}}"#)
}

/// Calls `found` with the send time of every chat message of ours in a server frame
/// (a single `chat.message`, a `batch`, or a `snapshot`).
pub fn for_each_stamp(frame: &str, mut found: impl FnMut(u64)) {
    static MARKER: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(STAMP_MARKER));
    let mut rest = frame.as_bytes();
    while let Some(at) = MARKER.find(rest) {
        rest = &rest[at + STAMP_MARKER.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if (1..=19).contains(&digits) {
            found(
                rest[..digits]
                    .iter()
                    .fold(0, |n, d| n * 10 + u64::from(d - b'0')),
            );
        }
        rest = &rest[digits..];
    }
}

/// The `code` of an `error` frame, if this is one.
pub fn error_code(frame: &str) -> Option<&str> {
    if !frame.contains(r#""type":"error""#) {
        return None;
    }
    let at = frame.find(r#""code":""#)? + r#""code":""#.len();
    let rest = &frame[at..];
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamps(frame: &str) -> Vec<u64> {
        let mut found = Vec::new();
        for_each_stamp(frame, |stamp| found.push(stamp));
        found
    }

    #[test]
    fn finds_stamps_alone_and_in_batches() {
        let text = chat_frame(1_700_000_000_123_456, 40);
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let chat_text = value["text"].as_str().expect("text");
        assert_eq!(chat_text.len(), 40);
        let message = serde_json::json!({"type":"chat.message","seq":7,"id":7,
            "author":{"nickname":"a"},"text":chat_text,"time":1})
        .to_string();
        assert_eq!(stamps(&message), [1_700_000_000_123_456]);
        let batch = format!(r#"{{"type":"batch","messages":[{message},{message}]}}"#);
        assert_eq!(stamps(&batch), [1_700_000_000_123_456; 2]);
        let foreign = r#"{"type":"chat.message","text":"hello","seq":1}"#;
        assert!(stamps(foreign).is_empty());
        assert!(stamps(r#"{"text":"hlx"}"#).is_empty());
    }

    #[test]
    fn reads_error_codes() {
        let error = r#"{"code":"rate_limited","message":"slow down","type":"error"}"#;
        assert_eq!(error_code(error), Some("rate_limited"));
        assert_eq!(error_code(r#"{"type":"pong"}"#), None);
    }
}
