//! `mediaload`: many WHEP viewers (webrtc-rs peers) on one event's publisher.
//!
//! Each viewer offers recvonly audio + video to `POST /whep/{event}`, and counts the RTP
//! packets it receives. Time to first frame is measured from the WHEP request to the
//! first packet that starts a VP8 keyframe (or, for H.264, an IDR/SPS NAL unit): what a
//! decoder needs to show a picture. The server's cost comes from `/proc/PID/stat`
//! (CPU time) and `/metrics` (packets forwarded) over a steady window after every viewer
//! joined: CPU microseconds per forwarded packet, and viewers per core at that rate.
//!
//! The publisher is not this tool's job (`bench.sh` starts an aiortc one).

#[path = "../../hubload/src/procstat.rs"]
mod procstat;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rtc::interceptor::Registry;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{Notify, OnceCell};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCSessionDescription, SettingEngineBuilder,
    register_default_interceptors,
};

#[derive(Debug, Parser)]
#[command(about = "Many WHEP viewers on one publisher: first-frame times and server cost")]
struct Args {
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
    /// The server's process id (for its CPU time); omit to skip cost figures.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// What one viewer saw.
#[derive(Default)]
struct Viewer {
    first_frame: OnceCell<Duration>,
    packets: AtomicU64,
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

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let viewer = Arc::clone(&self.viewer);
        let started = self.started;
        tokio::spawn(async move {
            let video = track.kind().await == RtpCodecKind::Video;
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(packet) => {
                        viewer.packets.fetch_add(1, Ordering::Relaxed);
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

/// Whether an RTP payload begins a keyframe: VP8 (RFC 7741: start of partition 0 and
/// the inverse key-frame bit clear) or H.264 (an IDR or SPS NAL unit, alone or first in
/// a STAP-A or FU-A). Only video packets are tested: an Opus TOC byte can look like a
/// NAL header.
fn starts_keyframe(payload: &[u8]) -> bool {
    vp8_keyframe(payload) || h264_keyframe(payload)
}

fn vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let start = first & 0x10 != 0;
    let partition = first & 0x0f;
    if !start || partition != 0 {
        return false;
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        let Some(&ext) = payload.get(1) else {
            return false;
        };
        i = 2;
        if ext & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            i += if payload.get(i).is_some_and(|b| b & 0x80 != 0) {
                2
            } else {
                1
            };
        }
        if ext & 0x40 != 0 {
            i += 1;
        }
        if ext & 0x30 != 0 {
            i += 1;
        }
    }
    // Keyframes carry the start code 9d 01 2a after the 3-byte frame tag.
    payload.get(i).is_some_and(|tag| tag & 0x01 == 0)
        && payload.get(i + 3..i + 6) == Some(&[0x9d, 0x01, 0x2a][..])
}

fn h264_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let nal = match first & 0x1f {
        // STAP-A: the first aggregated unit's header follows a 2-byte size.
        24 => payload.get(3).map(|b| b & 0x1f),
        // FU-A: the start fragment names the unit type.
        28 => payload
            .get(1)
            .filter(|fu| **fu & 0x80 != 0)
            .map(|fu| fu & 0x1f),
        other => Some(other),
    };
    matches!(nal, Some(5 | 7))
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
            viewer,
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
    let response = client
        .post(&url)
        .header("content-type", "application/sdp")
        .body(local.sdp)
        .send()
        .await?;
    let status = response.status();
    let answer = response.text().await?;
    anyhow::ensure!(status.as_u16() == 201, "WHEP answered {status}: {answer}");
    peer.set_remote_description(RTCSessionDescription::answer(answer)?)
        .await?;
    Ok(Arc::new(peer))
}

async fn forwarded(client: &reqwest::Client, server: &str) -> anyhow::Result<f64> {
    let text = client
        .get(format!("{server}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("gongkai_media_packets_forwarded_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::new();
    let url = format!("{}/whep/{}", args.server, args.event);
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
    let mut failed = 0;
    for join in joins {
        match join.await? {
            Ok(peer) => peers.push(peer),
            Err(error) => {
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

    let before_cpu = args.server_pid.map(procstat::sample).transpose()?;
    let before_fwd = forwarded(&client, &args.server).await?;
    let before_rx: u64 = viewers
        .iter()
        .map(|v| v.packets.load(Ordering::Relaxed))
        .sum();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.measure)).await;
    let secs = window.elapsed().as_secs_f64();
    let after_cpu = args.server_pid.map(procstat::sample).transpose()?;
    let after_fwd = forwarded(&client, &args.server).await?;
    let after_rx: u64 = viewers
        .iter()
        .map(|v| v.packets.load(Ordering::Relaxed))
        .sum();

    let mut firsts: Vec<Duration> = viewers
        .iter()
        .filter_map(|v| v.first_frame.get().copied())
        .collect();
    firsts.sort();
    let fwd_rate = (after_fwd - before_fwd) / secs;
    let rx_rate = (after_rx - before_rx) as f64 / secs;
    println!(
        "viewers            {} requested, {} connected, {failed} failed (ramp {ramp_secs:.1} s)",
        args.viewers,
        peers.len()
    );
    println!(
        "first frame        {} of {} viewers; p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        firsts.len(),
        peers.len(),
        percentile(&firsts, 50.0).as_secs_f64() * 1e3,
        percentile(&firsts, 95.0).as_secs_f64() * 1e3,
        percentile(&firsts, 99.0).as_secs_f64() * 1e3,
        firsts.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!(
        "packets            forwarded {fwd_rate:.0}/s by the server, received {rx_rate:.0}/s by the viewers ({secs:.1} s window)"
    );
    if let (Some(before), Some(after)) = (before_cpu, after_cpu) {
        let cpu_us = after.cpu_us.saturating_sub(before.cpu_us) as f64;
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
            after.rss_kb / 1024
        );
    }
    for peer in peers {
        let _ = peer.close().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_vp8_keyframes_only() {
        // S=1, PID=0, no extensions; frame tag with key bit 0; start code.
        let key = [0x10, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40];
        assert!(vp8_keyframe(&key));
        let inter = [0x10, 0x51, 0x02, 0x00, 0x00, 0x00, 0x00];
        assert!(!vp8_keyframe(&inter));
        // X=1 with a 15-bit picture id.
        let extended = [0x90, 0x80, 0x81, 0x23, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        assert!(vp8_keyframe(&extended));
        let continuation = [0x00, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        assert!(!vp8_keyframe(&continuation));
    }

    #[test]
    fn recognises_h264_idr_sps_and_fragments() {
        assert!(h264_keyframe(&[0x65, 0x88]));
        assert!(h264_keyframe(&[0x67, 0x42]));
        assert!(!h264_keyframe(&[0x41, 0x9a]));
        assert!(h264_keyframe(&[0x78, 0x00, 0x10, 0x67]));
        assert!(h264_keyframe(&[0x7c, 0x85, 0x88]));
        assert!(!h264_keyframe(&[0x7c, 0x05, 0x88]));
    }

    #[test]
    fn percentiles_of_sorted_durations() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 50.0), Duration::from_millis(51));
        assert_eq!(percentile(&d, 95.0), Duration::from_millis(95));
        assert_eq!(percentile(&[], 95.0), Duration::ZERO);
    }
}
