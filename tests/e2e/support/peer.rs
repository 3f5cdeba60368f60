//! The Python WebRTC test peers (`tests/peers/`: aiortc WHIP publisher and WHEP viewers),
//! run as child processes whose stdout is JSON lines.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

/// Bound on waiting for a line that should come soon, and on a peer's whole run in
/// [`Peer::finish`] (python start-up, aiortc's ICE and DTLS on a busy 2-core machine).
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// A peer process; every line read is kept for the failure report.
pub struct Peer {
    pub name: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every line read so far.
    pub seen: Vec<Value>,
}

impl Peer {
    /// Runs `tests/peers/<script>` with `args`, named after the script in reports.
    pub fn start(script: &str, args: &[&str]) -> Peer {
        Peer::named(script, script, args)
    }

    /// As [`Peer::start`], named `name` in reports (several peers of one script).
    pub fn named(name: &str, script: &str, args: &[&str]) -> Peer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("peers")
            .join(script);
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(if super::test_log() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiortc (tests/requirements.txt)");
        let stdout = child.stdout.take().expect("piped stdout");
        Peer {
            name: name.to_owned(),
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// The next line (a line that is not JSON as `{"unparsed": line}`), or `None` at exit
    /// or at `deadline`.
    pub async fn next_before(&mut self, deadline: Instant) -> Option<Value> {
        let line = tokio::time::timeout_at(deadline, self.lines.next_line())
            .await
            .ok()?
            .ok()??;
        let value = serde_json::from_str(&line).unwrap_or_else(|_| json!({ "unparsed": line }));
        self.seen.push(value.clone());
        Some(value)
    }

    /// The next line, or `None` at exit or after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        self.next_before(Instant::now() + timeout).await
    }

    /// Reads lines until one satisfies `done`; that line, or `None` at exit or after
    /// `timeout`.
    pub async fn until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while let Some(line) = self.next_before(deadline).await {
            if done(&line) {
                return Some(line);
            }
        }
        None
    }

    /// As [`Peer::until`] within the peer timeout, panicking with everything the peer
    /// said when nothing matches.
    pub async fn expect(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        match self.until(PEER_TIMEOUT, done).await {
            Some(line) => line,
            None => panic!("{}: no {what}; it said {:?}", self.name, self.seen),
        }
    }

    /// Every line until the peer exits; the last one holds its final counts.
    pub async fn finish(mut self) -> Vec<Value> {
        let mut lines = Vec::new();
        let deadline = Instant::now() + PEER_TIMEOUT;
        while let Some(line) = self.next_before(deadline).await {
            lines.push(line);
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        lines
    }

    /// Kills the process (the server must cope with peers that vanish).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
