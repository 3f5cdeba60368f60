//! `mediaload`: the SFU load tool. One synthetic WHIP publisher and many WHEP viewers
//! (webrtc-rs peers) on one event, on loopback against `gongkai serve`.
//!
//! `mediaload publish` sends a real VP8 clip (an IVF file, e.g. 1280x720 at ~2 Mb/s, about
//! 230 packets/s) in a loop at its frame rate, plus Opus silence, and answers the SFU's
//! keyframe requests (PLI) by jumping back to the clip's first frame, a keyframe
//! (`publisher.rs`).
//!
//! `mediaload view` opens N viewers, each offering recvonly audio + video to
//! `POST /whep/{event}`, and reports:
//! - time to first frame: from creating the viewer's peer connection (a page does that,
//!   gathers its offer, then sends the WHEP request) to the first packet that starts a VP8
//!   keyframe (or, for H.264, an IDR/SPS NAL unit), what a decoder needs to show a picture;
//!   p50/p95/p99/max, and split into phases: offer gathered, WHEP answer, connected (ICE +
//!   DTLS), first keyframe;
//! - per viewer, over a steady window after every viewer joined: packets received and lost
//!   (sequence-number gaps per SSRC, wrap-around, reordering and duplicates handled; a
//!   packet recovered by NACK counts as received) and frames (video packets with the
//!   marker bit); total loss, viewers at >= 1% loss, the worst viewer, frames/s p50 and min
//!   (`stats.rs`); `--csv` writes one row per viewer;
//! - the server's cost: CPU time from `/proc/PID/stat` over the window per packet
//!   forwarded (`/metrics` counter `gongkai_media_packets_forwarded_total`), viewers per
//!   core, and memory per viewer (RSS growth from before the first viewer joined to the
//!   end of the window, over the viewers);
//! - the load tool's own CPU (it shares the machine with the server: SRTP decryption for
//!   every packet of every viewer);
//! - a one-line `summary` (key=value) that `bench.sh` collects, ending `result=ok` when
//!   every viewer connected and received media and total loss was under 1%.

mod clip;
/// The SFU's PLI/FIR interceptor, shared so the publisher sees keyframe requests too.
/// (Its NACK list is the SFU's; the publisher leaves NACKs to the crate's responder.)
#[path = "../../../streaming/src/sfu/feedback.rs"]
#[allow(dead_code)]
mod feedback;
/// The SFU's keyframe test (pure), so "first frame" means what the SFU's cache means.
#[path = "../../../streaming/src/sfu/keyframe.rs"]
#[allow(
    dead_code,
    reason = "only the keyframe test is used here, not the cache"
)]
mod keyframe;
#[path = "../../hubload/src/procstat.rs"]
mod procstat;
mod publisher;
mod stats;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rtc::interceptor::Registry;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{Notify, OnceCell};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    SettingEngineBuilder, register_default_interceptors,
};

use stats::{Counts, Tally, percentile};

#[derive(Debug, Parser)]
#[command(
    about = "SFU load: one WHIP publisher of a VP8 clip, many WHEP viewers; loss, frames, first-frame times, server cost"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish a VP8 clip (IVF) to an event over WHIP until stopped.
    Publish(publisher::PublishArgs),
    /// Open WHEP viewers on an event's publisher and report what they received.
    View(ViewArgs),
}

#[derive(Debug, Args)]
struct ViewArgs {
    /// e.g. http://127.0.0.1:8080
    #[arg(long)]
    server: String,
    #[arg(long)]
    event: String,
    #[arg(long, default_value_t = 100)]
    viewers: usize,
    /// New viewers per second.
    #[arg(long, default_value_t = 50)]
    ramp: u32,
    /// Seconds of steady state measured after the last viewer joined.
    #[arg(long, default_value_t = 10)]
    measure: u64,
    /// The server's process id (for its CPU time and memory); omit to skip cost figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write one CSV row per viewer (window figures) to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
}

/// What one viewer saw.
#[derive(Default)]
struct Viewer {
    /// Phases of the join, each from the start (peer creation): the offer gathered, the
    /// WHEP answer received, the peer connected (ICE + DTLS), the first keyframe.
    offer_ready: OnceCell<Duration>,
    answered: OnceCell<Duration>,
    connected: OnceCell<Duration>,
    first_frame: OnceCell<Duration>,
    counts: Mutex<Counts>,
}

impl Viewer {
    fn tally(&self) -> Tally {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .tally()
    }
}

struct Handler {
    gathered: Arc<Notify>,
    viewer: Arc<Viewer>,
    started: Instant,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.viewer.connected.set(self.started.elapsed());
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let viewer = Arc::clone(&self.viewer);
        let started = self.started;
        tokio::spawn(async move {
            let video = track.kind().await == RtpCodecKind::Video;
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(packet) => {
                        viewer
                            .counts
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .record(
                                packet.header.ssrc,
                                packet.header.sequence_number,
                                packet.header.marker,
                                video,
                            );
                        if video
                            && viewer.first_frame.get().is_none()
                            && starts_keyframe(&packet.payload)
                        {
                            let _ = viewer.first_frame.set(started.elapsed());
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// Whether a video RTP payload begins a keyframe, by the SFU's own test (VP8 or H.264:
/// the viewer only offers those). Only video packets are tested: an Opus TOC byte can
/// look like a NAL header.
fn starts_keyframe(payload: &[u8]) -> bool {
    keyframe::starts_keyframe("video/VP8", payload)
        || keyframe::starts_keyframe("video/H264", payload)
}

async fn viewer(
    client: reqwest::Client,
    url: String,
    viewer: Arc<Viewer>,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    let mut engine = MediaEngine::default();
    engine.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?;
    let gathered = Arc::new(Notify::new());
    let started = Instant::now();
    let peer = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_include_loopback_candidate(true)
                .build(),
        )
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler {
            gathered: Arc::clone(&gathered),
            viewer: Arc::clone(&viewer),
            started,
        }) as Arc<dyn PeerConnectionEventHandler>)
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await?;
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        peer.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .await?;
    }
    let offer = peer.create_offer(None).await?;
    peer.set_local_description(offer).await?;
    tokio::time::timeout(Duration::from_secs(5), gathered.notified())
        .await
        .context("ICE gathering did not complete")?;
    let local = peer
        .local_description()
        .await
        .context("no local description")?;
    let _ = viewer.offer_ready.set(started.elapsed());
    let response = client
        .post(&url)
        .header("content-type", "application/sdp")
        .body(local.sdp)
        .send()
        .await?;
    let status = response.status();
    let answer = response.text().await?;
    anyhow::ensure!(status.as_u16() == 201, "WHEP answered {status}: {answer}");
    let _ = viewer.answered.set(started.elapsed());
    peer.set_remote_description(RTCSessionDescription::answer(answer)?)
        .await?;
    Ok(Arc::new(peer))
}

/// The sum of a `/metrics` counter over its labels (events).
async fn metric(client: &reqwest::Client, server: &str, name: &str) -> anyhow::Result<f64> {
    let text = client
        .get(format!("{server}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

const FORWARDED: &str = "gongkai_media_packets_forwarded_total";
const INGEST_BYTES: &str = "gongkai_media_ingest_bytes_total";

/// Server and load-tool readings at one moment.
struct Reading {
    at: Instant,
    server: Option<procstat::Sample>,
    tool: procstat::Sample,
    forwarded: f64,
    ingest_bytes: f64,
    tallies: Vec<Tally>,
}

async fn read_all(
    client: &reqwest::Client,
    args: &ViewArgs,
    viewers: &[Arc<Viewer>],
) -> anyhow::Result<Reading> {
    Ok(Reading {
        at: Instant::now(),
        server: args.server_pid.map(procstat::sample).transpose()?,
        tool: procstat::sample(std::process::id())?,
        forwarded: metric(client, &args.server, FORWARDED).await?,
        ingest_bytes: metric(client, &args.server, INGEST_BYTES).await?,
        tallies: viewers.iter().map(|v| v.tally()).collect(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Publish(args) => publisher::run(args).await,
        Command::View(args) => view(args).await,
    }
}

async fn view(args: ViewArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("{}/whep/{}", args.server, args.event);
    let rss_before = args
        .server_pid
        .map(procstat::sample)
        .transpose()?
        .map(|s| s.rss_kb);
    let mut viewers = Vec::with_capacity(args.viewers);
    let mut joins = Vec::with_capacity(args.viewers);
    let gap = Duration::from_secs_f64(1.0 / f64::from(args.ramp.max(1)));
    let ramp_started = Instant::now();
    for _ in 0..args.viewers {
        let v = Arc::new(Viewer::default());
        viewers.push(Arc::clone(&v));
        joins.push(tokio::spawn(viewer(client.clone(), url.clone(), v)));
        tokio::time::sleep(gap).await;
    }
    let mut peers = Vec::new();
    let mut connected = Vec::with_capacity(args.viewers);
    let mut failed = 0;
    for join in joins {
        match join.await? {
            Ok(peer) => {
                peers.push(peer);
                connected.push(true);
            }
            Err(error) => {
                connected.push(false);
                failed += 1;
                if failed <= 3 {
                    eprintln!("viewer failed: {error:#}");
                }
            }
        }
    }
    // Let the last viewers get their first keyframe before the steady window.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(5)
        && viewers.iter().any(|v| v.first_frame.get().is_none())
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp_secs = ramp_started.elapsed().as_secs_f64();

    let before = read_all(&client, &args, &viewers).await?;
    tokio::time::sleep(Duration::from_secs(args.measure)).await;
    let after = read_all(&client, &args, &viewers).await?;
    let secs = after.at.duration_since(before.at).as_secs_f64();

    // Per viewer, over the window; only viewers whose WHEP exchange succeeded.
    let windows: Vec<(usize, Tally)> = after
        .tallies
        .iter()
        .zip(&before.tallies)
        .enumerate()
        .filter(|(i, _)| connected[*i])
        .map(|(i, (a, b))| (i, a.since(b)))
        .collect();
    let mut total = Tally::default();
    for (_, w) in &windows {
        total.expected += w.expected;
        total.received += w.received;
        total.lost += w.lost;
        total.duplicates += w.duplicates;
        total.frames += w.frames;
        total.video_received += w.video_received;
    }
    let silent = windows.iter().filter(|(_, w)| w.expected == 0).count();
    let lossy = windows
        .iter()
        .filter(|(_, w)| w.expected > 0 && w.loss_pct() >= 1.0)
        .count();
    let worst = windows
        .iter()
        .map(|(_, w)| w.loss_pct())
        .fold(0.0, f64::max);
    let mut fps: Vec<f64> = windows
        .iter()
        .map(|(_, w)| w.frames as f64 / secs)
        .collect();
    fps.sort_by(f64::total_cmp);
    let per_viewer = |n: u64| n as f64 / secs / windows.len().max(1) as f64;

    let mut firsts: Vec<Duration> = viewers
        .iter()
        .filter_map(|v| v.first_frame.get().copied())
        .collect();
    firsts.sort();
    let fwd_rate = (after.forwarded - before.forwarded) / secs;
    let rx_rate = (total.received + total.duplicates) as f64 / secs;
    let ingest = (after.ingest_bytes - before.ingest_bytes) * 8.0 / secs / 1e6;
    println!(
        "viewers            {} requested, {} connected, {failed} failed (ramp {ramp_secs:.1} s)",
        args.viewers,
        peers.len()
    );
    let ttff = |p: f64| percentile(&firsts, p).as_secs_f64() * 1e3;
    println!(
        "first frame        {} of {} viewers; p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        firsts.len(),
        peers.len(),
        ttff(50.0),
        ttff(95.0),
        ttff(99.0),
        firsts.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    // Each phase's own duration, per viewer that reached its end.
    let phase = |end: fn(&Viewer) -> Option<Duration>, begin: fn(&Viewer) -> Option<Duration>| {
        let mut spans: Vec<Duration> = viewers
            .iter()
            .filter_map(|v| Some(end(v)?.saturating_sub(begin(v).unwrap_or_default())))
            .collect();
        spans.sort();
        let ms = |p: f64| percentile(&spans, p).as_secs_f64() * 1e3;
        format!("{:.0} / {:.0}", ms(50.0), ms(95.0))
    };
    println!(
        "join phases        p50 / p95 ms: offer gathered {}, WHEP request to answer {}, answer to connected {}, connected to first keyframe {}",
        phase(|v| v.offer_ready.get().copied(), |_| None),
        phase(
            |v| v.answered.get().copied(),
            |v| v.offer_ready.get().copied()
        ),
        phase(
            |v| v.connected.get().copied(),
            |v| v.answered.get().copied()
        ),
        phase(
            |v| v.first_frame.get().copied(),
            |v| v.connected.get().copied()
        ),
    );
    println!(
        "packets            forwarded {fwd_rate:.0}/s by the server, received {rx_rate:.0}/s by the viewers ({secs:.1} s window); publisher ingest {ingest:.2} Mb/s"
    );
    println!(
        "loss               {} of {} packets ({:.3}%); {lossy} of {} viewers at >= 1%, {silent} received nothing; worst viewer {worst:.2}%; {} duplicates",
        total.lost,
        total.expected,
        total.loss_pct(),
        windows.len(),
        total.duplicates,
    );
    println!(
        "per viewer         received {:.0} packets/s ({:.0} video), lost {:.1}/s; frames p50 {:.1}/s, min {:.1}/s",
        per_viewer(total.received),
        per_viewer(total.video_received),
        per_viewer(total.lost),
        percentile(&fps, 50.0),
        fps.first().copied().unwrap_or_default(),
    );
    let mut server_cpu = None;
    let mut kb_per_viewer = None;
    if let (Some(b), Some(a)) = (before.server, after.server) {
        let cpu_us = a.cpu_us.saturating_sub(b.cpu_us) as f64;
        let cores = cpu_us / 1e6 / secs;
        let per_packet = if fwd_rate > 0.0 {
            cpu_us / (fwd_rate * secs)
        } else {
            0.0
        };
        let per_core = if cores > 0.0 {
            peers.len() as f64 / cores
        } else {
            0.0
        };
        println!(
            "server cost        {:.1}% of a core, {per_packet:.2} us CPU per forwarded packet, {per_core:.0} viewers per core at this bitrate, RSS {} MB",
            cores * 100.0,
            a.rss_kb / 1024
        );
        server_cpu = Some((cores * 100.0, per_packet));
        if let Some(rss_before) = rss_before {
            let per = a.rss_kb.saturating_sub(rss_before) as f64 / peers.len().max(1) as f64;
            println!(
                "server memory      RSS {} MB before the viewers, {} MB with them: {per:.0} KB per viewer",
                rss_before / 1024,
                a.rss_kb / 1024
            );
            kb_per_viewer = Some(per);
        }
    }
    let tool_cpu = after.tool.cpu_us.saturating_sub(before.tool.cpu_us) as f64 / 1e4 / secs;
    println!(
        "load tool          {tool_cpu:.1}% of a core (this process: {} viewers' SRTP, RTP and stats), RSS {} MB",
        peers.len(),
        after.tool.rss_kb / 1024
    );
    let ok = peers.len() == args.viewers && silent == 0 && total.loss_pct() < 1.0;
    let (cpu, us) = server_cpu.unwrap_or_default();
    println!(
        "summary            viewers={} connected={} loss={:.3}% lossy={lossy} silent={silent} worst={worst:.2}% fps_p50={:.1} fps_min={:.1} ttff_p50={:.0}ms ttff_p95={:.0}ms pkts_per_viewer={:.0} server_cpu={cpu:.1}% us_per_pkt={us:.2} kb_per_viewer={:.0} tool_cpu={tool_cpu:.1}% result={}",
        args.viewers,
        peers.len(),
        total.loss_pct(),
        percentile(&fps, 50.0),
        fps.first().copied().unwrap_or_default(),
        ttff(50.0),
        ttff(95.0),
        per_viewer(total.received),
        kb_per_viewer.unwrap_or_default(),
        if ok { "ok" } else { "FAIL" },
    );
    if let Some(path) = &args.csv {
        write_csv(path, &viewers, &connected, &windows, secs)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for peer in peers {
        let _ = peer.close().await;
    }
    Ok(())
}

fn write_csv(
    path: &std::path::Path,
    viewers: &[Arc<Viewer>],
    connected: &[bool],
    windows: &[(usize, Tally)],
    secs: f64,
) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "viewer,connected,first_frame_ms,expected,received,lost,loss_pct,duplicates,frames,fps"
    )?;
    let mut windows = windows.iter().peekable();
    for (i, v) in viewers.iter().enumerate() {
        let first = v
            .first_frame
            .get()
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
            .unwrap_or_default();
        let w = match windows.peek() {
            Some((j, w)) if *j == i => {
                windows.next();
                *w
            }
            _ => Tally::default(),
        };
        writeln!(
            out,
            "{i},{},{first},{},{},{},{:.3},{},{},{:.2}",
            connected[i],
            w.expected,
            w.received,
            w.lost,
            w.loss_pct(),
            w.duplicates,
            w.frames,
            w.frames as f64 / secs
        )?;
    }
    out.flush()?;
    Ok(())
}
