//! `mediaload publish`: one WHIP publisher sending a real VP8 clip (an IVF file) in a loop,
//! paced at the clip's frame rate, plus (unless `--no-audio`) 20 ms Opus silence frames.
//!
//! The clip is packetized here (rtc's VP8 payloader, 1200-byte packets) and written to a
//! `TrackLocalStaticRTP`, so the tool knows exactly what it sent. RTP timestamps and
//! sequence numbers run on across loops. The SFU asks for keyframes with PLI (when viewers
//! join, and every 10 s as a safety net): the publisher answers by jumping back to the
//! clip's first frame, a keyframe, at most once per `--keyframe-min-interval-ms` (a request
//! inside that interval is kept and served when it ends, as an encoder would). A request
//! that arrives when the next frame is a keyframe anyway needs no jump.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use rtc::rtp;
use rtc::rtp::packetizer::Packetizer;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{Notify, watch};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, SettingEngineBuilder, register_default_interceptors,
};

use crate::clip::Clip;
use crate::feedback;
use crate::procstat;

/// rtc's outbound MTU for `TrackLocalStaticSample`: RTP header + payload.
const MTU: usize = 1200;
/// A fixed RTP header: no CSRCs, no extensions (none are enabled on the packetizers).
const RTP_HEADER: usize = 12;
const VIDEO_PT: u8 = 96;
const AUDIO_PT: u8 = 111;
/// An Opus packet holding 20 ms of CELT silence (RFC 6716 TOC 0xf8: fullband, 20 ms, one
/// frame), what browsers send while muted.
const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];
const OPUS_FRAME: Duration = Duration::from_millis(20);

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// e.g. http://127.0.0.1:8080
    #[arg(long)]
    server: String,
    #[arg(long)]
    event: String,
    /// The event's publish token (`POST /api/v1/events/{id}/publish-token`).
    #[arg(long, env = "MEDIALOAD_PUBLISH_TOKEN")]
    token: String,
    /// A VP8 IVF file starting with a keyframe (bench.sh makes one with ffmpeg).
    #[arg(long)]
    clip: PathBuf,
    /// Video only: no Opus silence track.
    #[arg(long)]
    no_audio: bool,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
    /// Least time between keyframes sent in answer to PLI.
    #[arg(long, default_value_t = 500)]
    keyframe_min_interval_ms: u64,
    /// Seconds between progress lines on stdout.
    #[arg(long, default_value_t = 5)]
    report: u64,
}

/// Running totals, shared by the sending tasks and the progress lines.
#[derive(Default)]
struct Sent {
    video_packets: AtomicU64,
    video_bytes: AtomicU64,
    frames: AtomicU64,
    keyframes: AtomicU64,
    audio_packets: AtomicU64,
    keyframe_requests: AtomicU64,
    restarts: AtomicU64,
    /// Times the sender fell more than a second behind its schedule and skipped ahead.
    behind: AtomicU64,
}

struct Handler {
    gathered: Arc<Notify>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }
}

fn codec(mime: &str, clock_rate: u32, channels: u16, fmtp: &str) -> RTCRtpCodec {
    let feedback = if mime.starts_with("video/") {
        [("nack", ""), ("nack", "pli"), ("ccm", "fir")]
            .into_iter()
            .map(|(typ, parameter)| RTCPFeedback {
                typ: typ.into(),
                parameter: parameter.into(),
            })
            .collect()
    } else {
        vec![]
    };
    RTCRtpCodec {
        mime_type: mime.into(),
        clock_rate,
        channels,
        sdp_fmtp_line: fmtp.into(),
        rtcp_feedback: feedback,
    }
}

fn local_track(kind: RtpCodecKind, codec: &RTCRtpCodec, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    let name = if kind == RtpCodecKind::Video {
        "video"
    } else {
        "audio"
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "mediaload".to_owned(),
        format!("mediaload-{name}"),
        name.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec.clone(),
            ..Default::default()
        }],
    )))
}

/// A sending track: its packetizer and the payload type the answer settled on.
struct Outbound {
    track: Arc<TrackLocalStaticRTP>,
    packetizer: Box<dyn Packetizer>,
    clock_rate: u32,
}

impl Outbound {
    /// Packetizes one frame and writes its packets; returns (packets, RTP bytes before
    /// SRTP).
    async fn send(&mut self, data: &Bytes, duration: Duration) -> anyhow::Result<(u64, u64)> {
        let samples = (duration.as_secs_f64() * f64::from(self.clock_rate)).round() as u32;
        let packets = self.packetizer.packetize(Instant::now(), data, samples)?;
        let (mut count, mut bytes) = (0, 0);
        for packet in packets {
            bytes += (RTP_HEADER + packet.payload.len()) as u64;
            count += 1;
            self.track.write_rtp(packet).await?;
        }
        Ok((count, bytes))
    }
}

async fn negotiated_payload_type(
    transceiver: &Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>,
    fallback: u8,
) -> anyhow::Result<u8> {
    let sender = transceiver
        .sender()
        .await?
        .context("transceiver has no sender")?;
    Ok(sender
        .get_parameters()
        .await?
        .rtp_parameters
        .codecs
        .first()
        .map_or(fallback, |c| c.payload_type))
}

pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let clip = Clip::open(&args.clip)?;
    let keyframes = clip.frames.iter().filter(|f| f.keyframe).count();
    let packets_per_loop: usize = clip
        .frames
        .iter()
        .map(|f| f.data.len().div_ceil(MTU - RTP_HEADER - 4))
        .sum();
    println!(
        "clip               {}x{}, {} frames at {:.1} fps ({:.1} s), {:.2} Mb/s, {keyframes} keyframes, ~{:.0} video packets/s",
        clip.width,
        clip.height,
        clip.frames.len(),
        clip.fps(),
        clip.duration().as_secs_f64(),
        clip.bitrate() / 1e6,
        packets_per_loop as f64 / clip.duration().as_secs_f64(),
    );

    let video_codec = codec("video/VP8", 90_000, 0, "");
    let audio_codec = codec("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1");
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: video_codec.clone(),
            payload_type: VIDEO_PT,
        },
        RtpCodecKind::Video,
    )?;
    if !args.no_audio {
        engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: audio_codec.clone(),
                payload_type: AUDIO_PT,
            },
            RtpCodecKind::Audio,
        )?;
    }
    // PLI and FIR reach the video track's `poll()` only through this interceptor (the
    // SFU's own, see streaming/src/sfu/feedback.rs).
    let registry = register_default_interceptors(Registry::new(), &mut engine)?.with(
        rtc::interceptor::Slot::from(feedback::SLOT),
        feedback::KeyframeRequests::default(),
    );
    let gathered = Arc::new(Notify::new());
    let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
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
            state: state_tx,
        }) as Arc<dyn PeerConnectionEventHandler>)
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await?;
    let peer: Arc<dyn PeerConnection> = Arc::new(peer);

    let sendonly = || {
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            ..Default::default()
        })
    };
    let video_ssrc: u32 = rand::random();
    let video_track = local_track(RtpCodecKind::Video, &video_codec, video_ssrc);
    let video_transceiver = peer
        .add_transceiver_from_track(Arc::clone(&video_track) as Arc<dyn TrackLocal>, sendonly())
        .await?;
    let audio = if args.no_audio {
        None
    } else {
        let ssrc: u32 = rand::random();
        let track = local_track(RtpCodecKind::Audio, &audio_codec, ssrc);
        let transceiver = peer
            .add_transceiver_from_track(Arc::clone(&track) as Arc<dyn TrackLocal>, sendonly())
            .await?;
        Some((track, transceiver, ssrc))
    };

    let offer = peer.create_offer(None).await?;
    peer.set_local_description(offer).await?;
    tokio::time::timeout(Duration::from_secs(5), gathered.notified())
        .await
        .context("ICE gathering did not complete")?;
    let local = peer
        .local_description()
        .await
        .context("no local description")?;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/whip/{}", args.server, args.event))
        .bearer_auth(&args.token)
        .header("content-type", "application/sdp")
        .body(local.sdp)
        .send()
        .await
        .context("WHIP request")?;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(|l| {
            if l.starts_with("http") {
                l.to_owned()
            } else {
                format!("{}{l}", args.server)
            }
        });
    let answer = response.text().await?;
    anyhow::ensure!(status.as_u16() == 201, "WHIP answered {status}: {answer}");
    peer.set_remote_description(RTCSessionDescription::answer(answer)?)
        .await?;
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed
            )
        }),
    )
    .await
    .context("publisher did not connect within 10 s")??;
    anyhow::ensure!(
        *state.borrow() == RTCPeerConnectionState::Connected,
        "publisher connection failed"
    );
    println!(
        "published          {} (session {})",
        args.event,
        location.as_deref().unwrap_or("?")
    );

    let sent = Arc::new(Sent::default());
    let wanted = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    {
        let track = Arc::clone(&video_track);
        let (sent, wanted) = (Arc::clone(&sent), Arc::clone(&wanted));
        tasks.spawn(async move {
            loop {
                match track.poll().await {
                    Some(TrackLocalEvent::OnRtcpPacket(packets))
                        if feedback::asks_for_keyframe(&packets) =>
                    {
                        sent.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                        wanted.store(true, Ordering::Relaxed);
                    }
                    Some(_) => {}
                    // Not bound (yet, or any more): look again shortly.
                    None => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    let video = Outbound {
        track: video_track,
        packetizer: Box::new(rtp::packetizer::new_packetizer(
            Instant::now(),
            MTU,
            negotiated_payload_type(&video_transceiver, VIDEO_PT).await?,
            video_ssrc,
            video_codec.payloader()?,
            Box::new(rtp::sequence::new_random_sequencer()),
            90_000,
        )),
        clock_rate: 90_000,
    };
    tasks.spawn(send_video(
        video,
        clip,
        Arc::clone(&sent),
        wanted,
        Duration::from_millis(args.keyframe_min_interval_ms),
    ));
    if let Some((track, transceiver, ssrc)) = audio {
        let outbound = Outbound {
            track,
            packetizer: Box::new(rtp::packetizer::new_packetizer(
                Instant::now(),
                MTU,
                negotiated_payload_type(&transceiver, AUDIO_PT).await?,
                ssrc,
                audio_codec.payloader()?,
                Box::new(rtp::sequence::new_random_sequencer()),
                48_000,
            )),
            clock_rate: 48_000,
        };
        tasks.spawn(send_audio(outbound, Arc::clone(&sent)));
    }
    tasks.spawn(report(
        Arc::clone(&sent),
        Duration::from_secs(args.report.max(1)),
    ));

    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        match args.seconds {
            Some(s) => tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(s)) => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
            None => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
        }
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        stopped = stop => stopped,
        Some(ended) = tasks.join_next() => match ended {
            Ok(Ok(())) => Err(anyhow::anyhow!("a sending task ended")),
            Ok(Err(error)) => Err(error),
            Err(error) => Err(error.into()),
        },
        failed = state.wait_for(|s| matches!(
            s,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        )) => Err(anyhow::anyhow!(
            "publisher connection {}",
            failed.map(|s| s.to_string()).unwrap_or_default()
        )),
    };
    tasks.abort_all();
    print_totals(&sent);
    if let Some(location) = location {
        let _ = client
            .delete(location)
            .bearer_auth(&args.token)
            .send()
            .await;
    }
    let _ = peer.close().await;
    outcome
}

/// Sends the clip frame by frame at its own pace, jumping back to the first frame when a
/// keyframe is wanted (see the module docs).
async fn send_video(
    mut out: Outbound,
    clip: Clip,
    sent: Arc<Sent>,
    wanted: Arc<AtomicBool>,
    min_interval: Duration,
) -> anyhow::Result<()> {
    let mut next = tokio::time::Instant::now();
    let mut last_keyframe: Option<Instant> = None;
    let mut i = 0;
    loop {
        if wanted.load(Ordering::Relaxed)
            && !clip.frames[i].keyframe
            && last_keyframe.is_none_or(|t| t.elapsed() >= min_interval)
        {
            i = 0;
            sent.restarts.fetch_add(1, Ordering::Relaxed);
        }
        let frame = &clip.frames[i];
        if frame.keyframe {
            wanted.store(false, Ordering::Relaxed);
            last_keyframe = Some(Instant::now());
            sent.keyframes.fetch_add(1, Ordering::Relaxed);
        }
        let (packets, bytes) = out.send(&frame.data, frame.duration).await?;
        sent.video_packets.fetch_add(packets, Ordering::Relaxed);
        sent.video_bytes.fetch_add(bytes, Ordering::Relaxed);
        sent.frames.fetch_add(1, Ordering::Relaxed);
        i = (i + 1) % clip.frames.len();
        next += frame.duration;
        let now = tokio::time::Instant::now();
        if now > next + Duration::from_secs(1) {
            sent.behind.fetch_add(1, Ordering::Relaxed);
            next = now;
        }
        tokio::time::sleep_until(next).await;
    }
}

async fn send_audio(mut out: Outbound, sent: Arc<Sent>) -> anyhow::Result<()> {
    let silence = Bytes::from_static(&OPUS_SILENCE);
    let mut ticks = tokio::time::interval(OPUS_FRAME);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let (packets, _) = out.send(&silence, OPUS_FRAME).await?;
        sent.audio_packets.fetch_add(packets, Ordering::Relaxed);
    }
}

/// A progress line every `every`: rates over the last interval, and this process's CPU.
async fn report(sent: Arc<Sent>, every: Duration) -> anyhow::Result<()> {
    let me = std::process::id();
    let mut last = (
        Instant::now(),
        snapshot(&sent),
        procstat::sample(me)?.cpu_us,
    );
    loop {
        tokio::time::sleep(every).await;
        let now = (
            Instant::now(),
            snapshot(&sent),
            procstat::sample(me)?.cpu_us,
        );
        let secs = now.0.duration_since(last.0).as_secs_f64();
        let rate = |i: usize| (now.1[i] - last.1[i]) as f64 / secs;
        println!(
            "sent               {:.0} video packets/s ({:.2} Mb/s, {:.1} fps), {:.0} audio packets/s; keyframe requests {}, restarts {}, behind {}; CPU {:.1}% of a core",
            rate(0),
            rate(1) * 8.0 / 1e6,
            rate(2),
            rate(3),
            now.1[4],
            now.1[5],
            now.1[6],
            now.2.saturating_sub(last.2) as f64 / 1e4 / secs,
        );
        last = now;
    }
}

fn snapshot(sent: &Sent) -> [u64; 7] {
    [
        &sent.video_packets,
        &sent.video_bytes,
        &sent.frames,
        &sent.audio_packets,
        &sent.keyframe_requests,
        &sent.restarts,
        &sent.behind,
    ]
    .map(|a| a.load(Ordering::Relaxed))
}

fn print_totals(sent: &Sent) {
    let [video, bytes, frames, audio, requests, restarts, behind] = snapshot(sent);
    println!(
        "publisher totals   {video} video packets ({:.1} MB), {frames} frames ({} keyframes), {audio} audio packets; {requests} keyframe requests, {restarts} restarts, behind {behind}",
        bytes as f64 / 1e6,
        sent.keyframes.load(Ordering::Relaxed),
    );
}
