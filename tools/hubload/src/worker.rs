//! One worker process: opens its share of the viewer and sender sockets from its own
//! loopback address on a single-threaded runtime, counts what arrives, and reports to
//! the controller as JSON lines on stdout. It exits on `stop` or when its stdin closes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::COOKIE;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::histogram::Histogram;
use crate::wire::{
    Command, FinalReport, Progress, Report, SenderPlan, WorkerPlan, chat_frame, error_code,
    for_each_stamp, now_us,
};

/// Handshakes in flight at once per worker.
const HANDSHAKES_IN_FLIGHT: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Small read buffers: a worker holds up to ~18k sockets, and tungstenite zero-fills
/// the free part of this buffer before every read (7 % of a worker's CPU at 8 KiB).
/// A batch of ten chat messages is ~2.5 KB; a larger frame takes another read.
const READ_BUFFER: usize = 4 * 1024;

pub fn run() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve())
}

async fn serve() -> anyhow::Result<()> {
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    let first = commands
        .next_line()
        .await?
        .context("stdin closed before the plan")?;
    let Command::Start(plan) = serde_json::from_str(&first).context("parsing the plan")? else {
        anyhow::bail!("the first command must be start");
    };
    let plan = Rc::new(plan);
    let stats = Rc::new(RefCell::new(Stats::default()));
    {
        let mut stats = stats.borrow_mut();
        stats.progress.assigned = (plan.viewers + plan.senders.len()) as u64;
        stats.open_by_target = vec![0; plan.targets.len()];
    }
    let (go, measuring) = watch::channel(None::<u64>);

    tokio::task::spawn_local(open_all(Rc::clone(&plan), Rc::clone(&stats), measuring));
    tokio::task::spawn_local(report_progress(Rc::clone(&stats)));

    while let Some(line) = commands.next_line().await? {
        match serde_json::from_str(&line).context("parsing a command")? {
            Command::Start(_) => anyhow::bail!("start sent twice"),
            Command::Measure { send_until_us } => {
                {
                    let mut stats = stats.borrow_mut();
                    stats.measure_from_us = Some(now_us());
                }
                let _ = go.send(Some(send_until_us));
            }
            Command::Stop => break,
        }
    }
    let report = stats.borrow().final_report();
    emit(&Report::Final(Box::new(report)))?;
    // Sockets close with the process; the server sees them go.
    std::process::exit(0);
}

#[derive(Default)]
struct Stats {
    progress: Progress,
    measure_from_us: Option<u64>,
    latency: Histogram,
    deliveries: u64,
    stale: u64,
    frames: u64,
    bytes: u64,
    sent: u64,
    send_failed: u64,
    error_codes: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
    disconnects: BTreeMap<String, u64>,
    open_by_target: Vec<u64>,
}

impl Stats {
    fn on_text(&mut self, frame: &str) {
        self.frames += 1;
        self.bytes += frame.len() as u64;
        if let Some(code) = error_code(frame) {
            *self.error_codes.entry(code.to_owned()).or_default() += 1;
        }
        let Some(from) = self.measure_from_us else {
            return;
        };
        let now = now_us();
        for_each_stamp(frame, |sent| {
            if sent >= from {
                self.deliveries += 1;
                self.latency.record(now.saturating_sub(sent));
            } else {
                self.stale += 1;
            }
        });
    }

    fn final_report(&self) -> FinalReport {
        FinalReport {
            progress: self.progress,
            deliveries: self.deliveries,
            stale: self.stale,
            frames: self.frames,
            bytes: self.bytes,
            sent: self.sent,
            send_failed: self.send_failed,
            error_codes: self.error_codes.clone(),
            failures: self.failures.clone(),
            disconnects: self.disconnects.clone(),
            open_by_target: self.open_by_target.clone(),
            latency_us: self.latency.to_sparse(),
        }
    }
}

fn emit(report: &Report) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, report)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

async fn report_progress(stats: Rc<RefCell<Stats>>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let progress = stats.borrow().progress;
        if emit(&Report::Progress(progress)).is_err() {
            // The controller is gone: nothing left to report to.
            std::process::exit(1);
        }
    }
}

/// Opens every socket of the plan, paced at `connects_per_sec`, senders first; stops
/// early when the measurement starts.
async fn open_all(
    plan: Rc<WorkerPlan>,
    stats: Rc<RefCell<Stats>>,
    measuring: watch::Receiver<Option<u64>>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    let period = Duration::from_secs_f64(1.0 / plan.connects_per_sec.max(1.0));
    let mut pace = tokio::time::interval(period);
    pace.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let senders = plan.senders.iter().cloned().map(Some);
    let viewers = (0..plan.viewers).map(|_| None);
    for (k, sender) in senders.chain(viewers).enumerate() {
        pace.tick().await;
        if measuring.borrow().is_some() {
            // The controller stopped waiting: measure what is connected, open no more.
            return;
        }
        let target = match &sender {
            Some(sender) => sender.target,
            None => (plan.target_offset + k) % plan.targets.len(),
        };
        let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
            return;
        };
        let connection = Connection {
            plan: Rc::clone(&plan),
            stats: Rc::clone(&stats),
            addr: plan.targets[target].addr,
            target,
            sender,
        };
        tokio::task::spawn_local(connection.run(permit, measuring.clone()));
    }
}

struct Connection {
    plan: Rc<WorkerPlan>,
    stats: Rc<RefCell<Stats>>,
    addr: SocketAddr,
    target: usize,
    sender: Option<SenderPlan>,
}

impl Connection {
    async fn run(
        self,
        permit: tokio::sync::OwnedSemaphorePermit,
        mut measuring: watch::Receiver<Option<u64>>,
    ) {
        let connected = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connect()).await;
        drop(permit);
        let mut ws = match connected {
            Ok(Ok(ws)) => ws,
            Ok(Err(error)) => return self.failed(&error),
            Err(_) => return self.failed(&anyhow::anyhow!("handshake timeout")),
        };
        {
            let mut stats = self.stats.borrow_mut();
            stats.progress.connected += 1;
            stats.progress.open += 1;
            stats.open_by_target[self.target] += 1;
        }
        // Senders: `schedule` is set once the measurement starts.
        let mut schedule: Option<(tokio::time::Interval, u64)> = None;
        let reason = loop {
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => self.stats.borrow_mut().on_text(text.as_str()),
                    Some(Ok(Message::Close(frame))) => {
                        break frame.map_or_else(|| "close".to_owned(), |f| format!("close {}", u16::from(f.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => break format!("read: {}", short(&error)),
                    None => break "eof".to_owned(),
                },
                () = next_send(&mut schedule) => {
                    let Some((_, until)) = schedule else { continue };
                    let sent = now_us();
                    if sent >= until {
                        schedule = None;
                        continue;
                    }
                    let frame = chat_frame(sent, self.plan.text_len);
                    let result = ws.send(Message::text(frame)).await;
                    let mut stats = self.stats.borrow_mut();
                    match result {
                        Ok(()) => stats.sent += 1,
                        Err(_) => stats.send_failed += 1,
                    }
                },
                changed = measuring.changed(), if self.sender.is_some() && schedule.is_none() => {
                    if changed.is_err() {
                        continue;
                    }
                    let until = *measuring.borrow_and_update();
                    if let (Some(until), Some(sender)) = (until, &self.sender) {
                        schedule = Some((self.send_schedule(sender), until));
                    }
                }
            }
        };
        let mut stats = self.stats.borrow_mut();
        stats.progress.open -= 1;
        stats.open_by_target[self.target] -= 1;
        *stats.disconnects.entry(reason).or_default() += 1;
    }

    async fn connect(
        &self,
    ) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket
            .bind(SocketAddr::new(self.plan.local_ip, 0))
            .context("bind")?;
        let stream = socket.connect(self.addr).await.context("connect")?;
        stream.set_nodelay(true)?;
        let url = format!("ws://{}/ws/events/{}", self.addr, self.plan.event);
        let mut request = url.into_client_request()?;
        if let Some(sender) = &self.sender {
            let cookie = HeaderValue::from_str(&format!("gongkai_viewer={}", sender.cookie))?;
            request.headers_mut().insert(COOKIE, cookie);
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0);
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(|error| anyhow::anyhow!("handshake: {}", short(&error)))?;
        Ok(ws)
    }

    /// Sender `i` of `n` starts `i/n` of an interval after the signal, so the total
    /// rate is even.
    fn send_schedule(&self, sender: &SenderPlan) -> tokio::time::Interval {
        let period = Duration::from_micros(self.plan.send_interval_us.max(1));
        let offset = period.mul_f64(sender.index as f64 / self.plan.senders_total.max(1) as f64);
        let mut interval = tokio::time::interval_at(Instant::now() + offset, period);
        // Never catch up in a burst: the server's per-viewer chat limit would refuse it.
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    }

    fn failed(&self, error: &anyhow::Error) {
        let mut stats = self.stats.borrow_mut();
        stats.progress.failed += 1;
        *stats.failures.entry(format!("{error:#}")).or_default() += 1;
    }
}

async fn next_send(schedule: &mut Option<(tokio::time::Interval, u64)>) {
    match schedule {
        Some((interval, _)) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Error text without per-connection details, so reasons aggregate.
fn short(error: &WsError) -> String {
    match error {
        WsError::Http(response) => format!("http {}", response.status()),
        WsError::Io(io) => format!("io {:?}", io.kind()),
        WsError::Protocol(protocol) => format!("protocol {protocol}"),
        other => other.to_string(),
    }
}
