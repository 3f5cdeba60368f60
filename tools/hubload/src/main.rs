//! `hubload`: a load tool for the event WebSocket hub (`GET /ws/events/{id}`, see
//! `docs/protocol.md`). It opens many viewer sockets from several processes, sends chat
//! at a given total rate, and reports deliveries per second, publish-to-receive latency,
//! the servers' CPU time per delivery and memory per idle connection.
//!
//! `hubload run` is the controller; it re-executes itself as `hubload worker` processes,
//! each holding at most ~18k sockets (this machine allows ~20k open files per process)
//! bound to its own source address 127.0.0.x (~28k ephemeral ports per address). Only
//! loopback servers are accepted, and every run is bounded in connections and time.
//!
//! # Measurement
//! 1. Server RSS and CPU (`/proc/PID/{stat,status}`, `--server-pid`) before connecting.
//! 2. Connect: read-only viewers (no cookie) and sender sockets (each its own viewer
//!    identity from `POST /api/v1/viewer`, since chat is limited to 1/s per identity).
//! 3. Idle `--settle` seconds, then RSS again: memory per idle connection.
//! 4. Measure: senders send `chat.send` with text `hl<µs since the epoch> xxx...`; every
//!    socket finds those stamps in `chat.message` frames (alone or in a `batch`) and
//!    records `now - stamp`. Server CPU over the same window / deliveries = CPU per
//!    delivery.
//! 5. Stop: workers report, the controller merges and prints (and `--json` writes).
//!
//! # Layout
//! - `controller`: `hubload run`: plan, phases, `/proc` readings, the report.
//! - `worker`: `hubload worker`: one process's sockets on a single-threaded runtime.
//! - `wire`: controller/worker JSON lines, the chat stamp format and its scanner.
//! - `histogram`: log-linear latency histogram, mergeable across processes.
//! - `procstat`: CPU time and RSS of a process from `/proc`.

mod controller;
mod histogram;
mod procstat;
mod wire;
mod worker;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hubload",
    about = "Load tool for the gongkai event WebSocket hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Run a load test and print the report.
    Run(Box<controller::RunArgs>),
    /// Internal: one worker process, driven by `run` over stdin/stdout.
    #[command(hide = true)]
    Worker,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Mode::Run(args) => controller::run(*args),
        Mode::Worker => worker::run(),
    }
}
