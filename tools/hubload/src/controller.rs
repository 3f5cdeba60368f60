//! The controller (`hubload run`): plans the load, gets sender identities, starts the
//! workers (this same executable with `worker`), steps them through connect, idle and
//! measure, reads the servers' `/proc` figures around each phase, and prints the report.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::histogram::Histogram;
use crate::procstat::{self, Sample};
use crate::wire::{Command, FinalReport, Progress, Report, SenderPlan, Target, WorkerPlan, now_us};

/// Most sockets one worker may hold (the machine allows ~20k open files per process).
const MAX_PER_WORKER: usize = 18_000;
const MAX_CONNECTIONS: usize = 250_000;
const MAX_DURATION_SECS: u64 = 600;
/// A viewer identity may chat 1/s (burst 5): each sender stays below that.
const SENDER_MAX_RATE: f64 = 0.8;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Server base URL(s), loopback only; viewers are spread round-robin.
    #[arg(long = "url", required = true, value_delimiter = ',')]
    urls: Vec<String>,
    /// The event id (the event should be live).
    #[arg(long)]
    event: String,
    /// Read-only viewers (no cookie) in total.
    #[arg(long, default_value_t = 1000)]
    viewers: usize,
    /// Total chat rate, messages per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Sender sockets (each its own viewer identity); default: enough to stay under
    /// the per-viewer chat limit.
    #[arg(long)]
    senders: Option<usize>,
    /// Seconds of sending.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds to keep counting after the last send.
    #[arg(long, default_value_t = 3)]
    drain: u64,
    /// Idle seconds after connecting, before the memory reading.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// Most sockets per worker process.
    #[arg(long, default_value_t = 16_000)]
    per_worker: usize,
    /// Worker processes (default: the fewest under --per-worker).
    #[arg(long)]
    workers: Option<usize>,
    /// Worker `i` binds its sockets to this IPv4 loopback address plus `i`.
    #[arg(long, default_value = "127.0.0.2")]
    local_base: Ipv4Addr,
    /// New connections per second over all workers.
    #[arg(long, default_value_t = 2000.0)]
    connect_rate: f64,
    /// Seconds allowed for connecting everyone.
    #[arg(long, default_value_t = 300)]
    connect_timeout: u64,
    /// Server process id(s) whose CPU and memory are measured, one per --url, same order.
    #[arg(long = "server-pid", value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// Other process ids (e.g. NATS) whose CPU is reported but not counted per delivery.
    #[arg(long = "extra-pid", value_delimiter = ',')]
    extra_pids: Vec<u32>,
    /// Characters of chat text per message.
    #[arg(long, default_value_t = 40)]
    text_len: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(drive(args))
}

#[derive(Debug, Serialize)]
struct FinalSummary {
    servers: Vec<ServerFigures>,
    extra: Vec<ServerFigures>,
    workers: usize,
    viewers_planned: usize,
    senders: usize,
    connected: u64,
    open_at_end: u64,
    connect_failed: u64,
    connect_secs: f64,
    rate_planned: f64,
    send_secs: f64,
    window_secs: f64,
    sent: u64,
    send_failed: u64,
    deliveries: u64,
    expected_deliveries: u64,
    deliveries_per_sec: f64,
    frames: u64,
    messages_per_frame: f64,
    latency_samples: u64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    server_cpu_us_per_delivery: Option<f64>,
    server_cpu_percent_measure: Option<f64>,
    server_cpu_percent_idle: Option<f64>,
    idle_kb_per_connection: Option<f64>,
    error_codes: BTreeMap<String, u64>,
    connect_failures: BTreeMap<String, u64>,
    disconnects: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
struct ServerFigures {
    pid: u32,
    connections: usize,
    rss_before_kb: u64,
    rss_idle_kb: u64,
    cpu_idle_us: u64,
    cpu_measure_us: u64,
}

async fn drive(args: RunArgs) -> anyhow::Result<()> {
    let plan = Plan::new(&args)?;
    let overall =
        Duration::from_secs(args.connect_timeout + args.settle + args.duration + args.drain + 60);
    eprintln!(
        "hubload: {} viewers + {} senders on {} worker(s), {} server(s), {:.1} msg/s for {} s",
        args.viewers,
        plan.senders,
        plan.workers,
        plan.targets.len(),
        args.rate,
        args.duration
    );
    let before = sample_all(&args.server_pids)?;
    let cookies = sender_cookies(&args, &plan).await?;
    let mut fleet = Fleet::start(&args, &plan, cookies).await?;
    let outcome = tokio::time::timeout(overall, phases(&args, &plan, &mut fleet, &before)).await;
    fleet.kill();
    let summary = match outcome {
        Ok(summary) => summary?,
        Err(_) => bail!("the run took longer than its {} s bound", overall.as_secs()),
    };
    print_summary(&summary);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn phases(
    args: &RunArgs,
    plan: &Plan,
    fleet: &mut Fleet,
    before: &[Sample],
) -> anyhow::Result<FinalSummary> {
    // Connect.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.connect_timeout);
    let mut last_print = Instant::now();
    loop {
        let total = fleet.progress_total();
        if total.connected + total.failed >= total.assigned && fleet.all_reported() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "hubload: connect timeout, going on with {} open",
                total.open
            );
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "hubload: connected {}/{} (failed {})",
                total.connected, total.assigned, total.failed
            );
            last_print = Instant::now();
        }
        fleet.receive(Duration::from_millis(200)).await?;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let connected = fleet.progress_total();
    eprintln!(
        "hubload: {} connected in {connect_secs:.1} s ({} failed); idle {} s",
        connected.connected, connected.failed, args.settle
    );

    // Idle.
    let idle_from = sample_all(&args.server_pids)?;
    fleet.wait(Duration::from_secs(args.settle)).await?;
    let idle = sample_all(&args.server_pids)?;

    // Measure.
    let extra_from = sample_all(&args.extra_pids)?;
    let measure_from = sample_all(&args.server_pids)?;
    let measure_started = Instant::now();
    let send_until_us = now_us() + args.duration * 1_000_000;
    fleet.broadcast(&Command::Measure { send_until_us }).await?;
    eprintln!("hubload: sending for {} s", args.duration);
    fleet
        .wait(Duration::from_secs(args.duration + args.drain))
        .await?;
    let measure_to = sample_all(&args.server_pids)?;
    let extra_to = sample_all(&args.extra_pids)?;
    let window_secs = measure_started.elapsed().as_secs_f64();
    fleet.broadcast(&Command::Stop).await?;
    let finals = fleet.finals().await?;

    Ok(summarize(
        args,
        plan,
        Phases {
            before,
            idle_from: &idle_from,
            idle: &idle,
            measure_from: &measure_from,
            measure_to: &measure_to,
            extra_from: &extra_from,
            extra_to: &extra_to,
        },
        connect_secs,
        window_secs,
        &finals,
    ))
}

struct Phases<'a> {
    before: &'a [Sample],
    idle_from: &'a [Sample],
    idle: &'a [Sample],
    measure_from: &'a [Sample],
    measure_to: &'a [Sample],
    extra_from: &'a [Sample],
    extra_to: &'a [Sample],
}

fn summarize(
    args: &RunArgs,
    plan: &Plan,
    phases: Phases<'_>,
    connect_secs: f64,
    window_secs: f64,
    finals: &[FinalReport],
) -> FinalSummary {
    let mut latency = Histogram::default();
    let mut total = FinalReport::default();
    for report in finals {
        latency.merge(&report.latency_us);
        total.progress.connected += report.progress.connected;
        total.progress.open += report.progress.open;
        total.progress.failed += report.progress.failed;
        total.deliveries += report.deliveries;
        total.frames += report.frames;
        total.sent += report.sent;
        total.send_failed += report.send_failed;
        for (into, from) in [
            (&mut total.error_codes, &report.error_codes),
            (&mut total.failures, &report.failures),
            (&mut total.disconnects, &report.disconnects),
        ] {
            for (key, count) in from {
                *into.entry(key.clone()).or_default() += count;
            }
        }
    }
    // Connections actually open per server (the plan's split when nobody reported).
    let mut open_by_target = vec![0u64; plan.targets.len()];
    for report in finals {
        for (into, open) in open_by_target.iter_mut().zip(&report.open_by_target) {
            *into += open;
        }
    }
    let servers: Vec<ServerFigures> = args
        .server_pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| ServerFigures {
            pid,
            connections: open_by_target.get(i).map_or_else(
                || plan.connections_per_target.get(i).copied().unwrap_or(0),
                |&open| open as usize,
            ),
            rss_before_kb: phases.before[i].rss_kb,
            rss_idle_kb: phases.idle[i].rss_kb,
            cpu_idle_us: phases.idle[i]
                .cpu_us
                .saturating_sub(phases.idle_from[i].cpu_us),
            cpu_measure_us: phases.measure_to[i]
                .cpu_us
                .saturating_sub(phases.measure_from[i].cpu_us),
        })
        .collect();
    let extra = args
        .extra_pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| ServerFigures {
            pid,
            connections: 0,
            rss_before_kb: phases.extra_from[i].rss_kb,
            rss_idle_kb: phases.extra_to[i].rss_kb,
            cpu_idle_us: 0,
            cpu_measure_us: phases.extra_to[i]
                .cpu_us
                .saturating_sub(phases.extra_from[i].cpu_us),
        })
        .collect();
    let measured = !servers.is_empty();
    let cpu_measure: u64 = servers.iter().map(|s| s.cpu_measure_us).sum();
    let cpu_idle: u64 = servers.iter().map(|s| s.cpu_idle_us).sum();
    let rss_delta: i64 = servers
        .iter()
        .map(|s| s.rss_idle_kb as i64 - s.rss_before_kb as i64)
        .sum();
    let server_connections: usize = servers.iter().map(|s| s.connections).sum();
    let ms = |us: u64| us as f64 / 1000.0;
    FinalSummary {
        workers: plan.workers,
        viewers_planned: args.viewers,
        senders: plan.senders,
        connected: total.progress.connected,
        open_at_end: total.progress.open,
        connect_failed: total.progress.failed,
        connect_secs,
        rate_planned: args.rate,
        send_secs: args.duration as f64,
        window_secs,
        sent: total.sent,
        send_failed: total.send_failed,
        deliveries: total.deliveries,
        expected_deliveries: total.sent * total.progress.open,
        deliveries_per_sec: total.deliveries as f64 / args.duration.max(1) as f64,
        frames: total.frames,
        messages_per_frame: total.deliveries as f64 / total.frames.max(1) as f64,
        latency_samples: latency.count(),
        latency_p50_ms: ms(latency.quantile(0.50)),
        latency_p99_ms: ms(latency.quantile(0.99)),
        latency_max_ms: ms(latency.max()),
        server_cpu_us_per_delivery: (measured && total.deliveries > 0)
            .then(|| cpu_measure as f64 / total.deliveries as f64),
        server_cpu_percent_measure: measured
            .then(|| cpu_measure as f64 / (window_secs * 1e6) * 100.0),
        server_cpu_percent_idle: measured
            .then(|| cpu_idle as f64 / (args.settle.max(1) as f64 * 1e6) * 100.0),
        idle_kb_per_connection: (measured && server_connections > 0)
            .then(|| rss_delta as f64 / server_connections as f64),
        servers,
        extra,
        error_codes: total.error_codes,
        connect_failures: total.failures,
        disconnects: total.disconnects,
    }
}

fn print_summary(s: &FinalSummary) {
    let opt = |value: Option<f64>, digits: usize| {
        value.map_or_else(
            || "n/a (no --server-pid)".to_owned(),
            |v| format!("{v:.digits$}"),
        )
    };
    println!("== hubload report ==");
    println!(
        "connected viewers       {} of {} planned ({} senders incl.), {} failed, {} open at end, {:.1} s to connect, {} worker(s)",
        s.connected,
        s.viewers_planned + s.senders,
        s.senders,
        s.connect_failed,
        s.open_at_end,
        s.connect_secs,
        s.workers
    );
    println!(
        "chat sent               {} in {:.0} s ({:.1}/s planned {:.1}/s), {} send failures",
        s.sent,
        s.send_secs,
        s.sent as f64 / s.send_secs.max(1.0),
        s.rate_planned,
        s.send_failed
    );
    println!(
        "deliveries              {} of {} expected ({:.2} %), {:.0}/s, {:.1} messages per frame",
        s.deliveries,
        s.expected_deliveries,
        s.deliveries as f64 / s.expected_deliveries.max(1) as f64 * 100.0,
        s.deliveries_per_sec,
        s.messages_per_frame
    );
    println!(
        "latency                 p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        s.latency_p50_ms, s.latency_p99_ms, s.latency_max_ms
    );
    println!(
        "server CPU per delivery {} us (server CPU {} % of one core while sending, {} % idle)",
        opt(s.server_cpu_us_per_delivery, 3),
        opt(s.server_cpu_percent_measure, 0),
        opt(s.server_cpu_percent_idle, 1)
    );
    println!(
        "memory per idle conn    {} KB (RSS with connections minus before)",
        opt(s.idle_kb_per_connection, 2)
    );
    for server in &s.servers {
        println!(
            "  server pid {}: {} conns, RSS {} -> {} KB, CPU idle {} ms, sending {} ms",
            server.pid,
            server.connections,
            server.rss_before_kb,
            server.rss_idle_kb,
            server.cpu_idle_us / 1000,
            server.cpu_measure_us / 1000
        );
    }
    for extra in &s.extra {
        println!(
            "  other pid {}: CPU while sending {} ms, RSS {} KB",
            extra.pid,
            extra.cpu_measure_us / 1000,
            extra.rss_idle_kb
        );
    }
    println!("error frames            {:?}", s.error_codes);
    println!("connect failures        {:?}", s.connect_failures);
    println!("disconnects             {:?}", s.disconnects);
}

fn sample_all(pids: &[u32]) -> anyhow::Result<Vec<Sample>> {
    pids.iter().map(|&pid| procstat::sample(pid)).collect()
}

/// Who goes where.
struct Plan {
    targets: Vec<Target>,
    bases: Vec<String>,
    workers: usize,
    senders: usize,
    send_interval_us: u64,
    /// Per worker: (viewers, target offset).
    viewers: Vec<(usize, usize)>,
    connections_per_target: Vec<usize>,
}

impl Plan {
    fn new(args: &RunArgs) -> anyhow::Result<Plan> {
        ensure!(
            args.rate > 0.0 && args.rate <= 10_000.0,
            "--rate must be in (0, 10000]"
        );
        ensure!(
            args.duration >= 1 && args.duration <= MAX_DURATION_SECS,
            "--duration must be 1..={MAX_DURATION_SECS} s"
        );
        ensure!(
            args.settle <= 120 && args.drain <= 60,
            "--settle <= 120, --drain <= 60"
        );
        ensure!(
            (1..=MAX_PER_WORKER).contains(&args.per_worker),
            "--per-worker must be 1..={MAX_PER_WORKER} (open-file limit)"
        );
        ensure!(args.text_len <= 450, "--text-len must be <= 450");
        ensure!(args.connect_rate >= 1.0, "--connect-rate must be >= 1");
        let mut targets = Vec::new();
        let mut bases = Vec::new();
        for url in &args.urls {
            let parsed = reqwest::Url::parse(url).with_context(|| format!("--url {url}"))?;
            ensure!(
                parsed.scheme() == "http",
                "--url {url}: only http:// is supported"
            );
            let host = parsed.host_str().context("--url without a host")?;
            let ip: IpAddr = host
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .with_context(|| format!("--url {url}: give a loopback IP address"))?;
            ensure!(
                ip.is_loopback(),
                "--url {url}: only loopback servers may be loaded"
            );
            let port = parsed
                .port_or_known_default()
                .context("--url without a port")?;
            targets.push(Target {
                addr: SocketAddr::new(ip, port),
            });
            bases.push(format!("http://{}", SocketAddr::new(ip, port)));
        }
        ensure!(
            args.server_pids.is_empty() || args.server_pids.len() == targets.len(),
            "give one --server-pid per --url, in the same order"
        );
        let needed = (args.rate / SENDER_MAX_RATE).ceil() as usize;
        let senders = args.senders.unwrap_or(needed).max(1);
        ensure!(
            senders as f64 * SENDER_MAX_RATE >= args.rate,
            "{senders} senders cannot send {} msg/s under the per-viewer chat limit; use at least {needed}",
            args.rate
        );
        let total = args.viewers + senders;
        ensure!(
            total <= MAX_CONNECTIONS,
            "at most {MAX_CONNECTIONS} connections"
        );
        let workers = args
            .workers
            .unwrap_or_else(|| total.div_ceil(args.per_worker))
            .max(1);
        ensure!(
            total.div_ceil(workers) <= args.per_worker,
            "{workers} worker(s) would hold more than --per-worker {} sockets each",
            args.per_worker
        );
        let last_octet = args.local_base.octets()[3] as usize + workers - 1;
        ensure!(
            args.local_base.is_loopback() && last_octet <= 254,
            "--local-base must be a 127.x.y.z address leaving room for {workers} workers"
        );
        let send_interval_us = (senders as f64 / args.rate * 1e6) as u64;
        let mut viewers = Vec::new();
        let mut offset = 0;
        let mut connections_per_target = vec![0; targets.len()];
        for worker in 0..workers {
            let count = args.viewers / workers + usize::from(worker < args.viewers % workers);
            viewers.push((count, offset % targets.len()));
            for k in 0..count {
                connections_per_target[(offset + k) % targets.len()] += 1;
            }
            offset += count;
        }
        for sender in 0..senders {
            connections_per_target[sender % targets.len()] += 1;
        }
        Ok(Plan {
            targets,
            bases,
            workers,
            senders,
            send_interval_us,
            viewers,
            connections_per_target,
        })
    }
}

/// One `gongkai_viewer` cookie per sender, from `POST /api/v1/viewer` on its server.
async fn sender_cookies(args: &RunArgs, plan: &Plan) -> anyhow::Result<Vec<String>> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut cookies = Vec::with_capacity(plan.senders);
    for sender in 0..plan.senders {
        let base = &plan.bases[sender % plan.bases.len()];
        let response = client
            .post(format!("{base}/api/v1/viewer"))
            .json(&serde_json::json!({ "nickname": format!("load{sender}") }))
            .send()
            .await
            .with_context(|| format!("POST {base}/api/v1/viewer"))?;
        ensure!(
            response.status().is_success(),
            "POST {base}/api/v1/viewer: {}",
            response.status()
        );
        let cookie = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|value| value.strip_prefix("gongkai_viewer="))
            .and_then(|rest| rest.split(';').next())
            .context("no gongkai_viewer cookie in the response")?;
        cookies.push(cookie.to_owned());
    }
    if args.event.is_empty() {
        bail!("--event is empty");
    }
    Ok(cookies)
}

/// The worker processes and what they last said.
struct Fleet {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    reports: mpsc::Receiver<(usize, Report)>,
    progress: Vec<Option<Progress>>,
    finals: Vec<Option<FinalReport>>,
}

impl Fleet {
    async fn start(args: &RunArgs, plan: &Plan, cookies: Vec<String>) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let (report_tx, reports) = mpsc::channel(1024);
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        let mut senders_by_worker = vec![Vec::new(); plan.workers];
        for (index, cookie) in cookies.into_iter().enumerate() {
            senders_by_worker[index % plan.workers].push(SenderPlan {
                index,
                target: index % plan.targets.len(),
                cookie,
            });
        }
        let [a, b, c, d] = args.local_base.octets();
        for (worker, senders) in senders_by_worker.into_iter().enumerate() {
            let (viewers, target_offset) = plan.viewers[worker];
            // Plan::new checked that d + workers - 1 <= 254.
            let local_ip = IpAddr::V4(Ipv4Addr::new(a, b, c, d + worker as u8));
            let worker_plan = WorkerPlan {
                worker,
                local_ip,
                targets: plan.targets.clone(),
                event: args.event.clone(),
                viewers,
                target_offset,
                senders,
                send_interval_us: plan.send_interval_us,
                senders_total: plan.senders,
                connects_per_sec: args.connect_rate / plan.workers as f64,
                text_len: args.text_len,
            };
            let mut child = tokio::process::Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker")?;
            let mut stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            send(&mut stdin, &Command::Start(worker_plan)).await?;
            let tx = report_tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str(&line) {
                        Ok(report) => {
                            if tx.send((worker, report)).await.is_err() {
                                return;
                            }
                        }
                        Err(error) => eprintln!("hubload: worker {worker} said {line:?}: {error}"),
                    }
                }
            });
            children.push(child);
            stdins.push(stdin);
        }
        Ok(Fleet {
            progress: vec![None; children.len()],
            finals: vec![None; children.len()],
            children,
            stdins,
            reports,
        })
    }

    fn all_reported(&self) -> bool {
        self.progress.iter().all(Option::is_some)
    }

    fn progress_total(&self) -> Progress {
        let mut total = Progress::default();
        for progress in self.progress.iter().flatten() {
            total.assigned += progress.assigned;
            total.connected += progress.connected;
            total.open += progress.open;
            total.failed += progress.failed;
        }
        total
    }

    /// Takes reports for up to `wait`; fails if a worker went away.
    async fn receive(&mut self, wait: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + wait;
        while let Ok(received) = tokio::time::timeout_at(until, self.reports.recv()).await {
            let Some((worker, report)) = received else {
                if self.finals.iter().all(Option::is_some) {
                    return Ok(());
                }
                let mut statuses = Vec::new();
                for child in &mut self.children {
                    statuses.push(child.wait().await?.to_string());
                }
                bail!("every worker exited early: {statuses:?}");
            };
            match report {
                Report::Progress(progress) => self.progress[worker] = Some(progress),
                Report::Final(report) => self.finals[worker] = Some(*report),
            }
        }
        for (worker, child) in self.children.iter_mut().enumerate() {
            if self.finals[worker].is_none()
                && let Some(status) = child.try_wait()?
            {
                bail!("worker {worker} exited early: {status}");
            }
        }
        Ok(())
    }

    async fn wait(&mut self, total: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + total;
        while Instant::now() < until {
            self.receive(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_secs(1)),
            )
            .await?;
        }
        Ok(())
    }

    async fn broadcast(&mut self, command: &Command) -> anyhow::Result<()> {
        for stdin in &mut self.stdins {
            send(stdin, command).await?;
        }
        Ok(())
    }

    async fn finals(&mut self) -> anyhow::Result<Vec<FinalReport>> {
        let until = Instant::now() + Duration::from_secs(30);
        while self.finals.iter().any(Option::is_none) {
            if Instant::now() >= until {
                bail!("workers did not report within 30 s");
            }
            self.receive(Duration::from_millis(200)).await?;
        }
        Ok(self.finals.iter().flatten().cloned().collect())
    }

    fn kill(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
    }
}

async fn send(stdin: &mut ChildStdin, command: &Command) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(command)?;
    line.push(b'\n');
    stdin.write_all(&line).await?;
    stdin.flush().await?;
    Ok(())
}
