//! The SFU: one WebRTC publisher per event forwarded to many viewers.
//!
//! The HTTP shell (`web::routes::media`) only hands SDP offers in and answers out
//! ([`Sfu::publish`], [`Sfu::view`], [`Sfu::end`]); everything that owns peers lives here.
//! Unlike the hub, this part does IO: the `webrtc` crate binds UDP sockets and runs its
//! own tasks on the caller's tokio runtime.
//!
//! # Layout
//!
//! - [`Sfu`]: rooms by event id, the peer factory (codecs, ports, ICE servers).
//! - [`air`]: whether the event is on air (rehearsal, live, ended), the pure rule for who
//!   may watch and what is recorded; [`Sfu::set_air`] carries it out.
//! - `room` (private, in this file): one publisher slot, the packet broadcast, viewers.
//! - [`rewrite`]: the pure per-viewer RTP rewrite (SSRC, payload type, extension ids,
//!   sequence/timestamp continuity across publisher sessions).
//! - `sdp`: the little SDP reading the SFU needs before the crate parses the offer.
//! - `feedback`: the interceptor that hands viewers' PLI/FIR/NACK to the application.
//! - `direct`: the direct send path (own SRTP context, GSO sends) for connected viewers.
//! - `mux`: one UDP port shared by every peer (`SfuConfig::udp_port`).
//! - [`keyframe`]: the publisher's current group of pictures, replayed to joining viewers.
//! - [`frames`]: video packets grouped into frames, the unit that is fanned out.
//! - [`turn`]: short-lived TURN credentials (coturn's REST-API scheme).
//! - [`record`]: each publisher session recorded to a WebM file (fed through a bounded
//!   channel to its own writer thread, so recording never slows forwarding).
//!
//! # Forwarding
//!
//! Each publisher track's packets go into the room's `broadcast` channel once, as an
//! `Arc`: audio packet by packet, video a frame at a time ([`frames`]: one wake-up per
//! frame per viewer, and the frame's packets leave in one burst). Each viewer task
//! subscribes only after its peer connection is `Connected` (packets before DTLS produce
//! warnings and are lost anyway), first sends the video since the publisher's last
//! keyframe (the room's [`keyframe::GopCache`], taken under the same lock as the
//! subscription, so nothing is doubled or missed), and then writes rewritten live
//! packets to its own tracks. Without a usable cached run it asks the publisher for a
//! keyframe (PLI, coalesced so many joining viewers cause one request per
//! `KEYFRAME_MIN_INTERVAL`).
//!
//! A connected viewer's packets bypass the crate's per-peer pipeline: [`direct`] encrypts
//! them with the viewer's own SRTP context and sends each frame in one UDP GSO send from
//! the viewer's socket, and answers the viewer's NACKs from its own short history. A
//! viewer the direct path cannot take (see [`direct`]) writes to its crate tracks, whose
//! NACK responder answers NACKs.
//! A viewer that falls behind the channel loses packets (counted) and asks for a keyframe;
//! until one comes it skips video it could not decode anyway ([`keyframe::ResyncGate`]),
//! and resumes with no sequence gap, so an overloaded server sheds work instead of
//! spending it on frames nobody can show.
//! Viewers' own PLI/FIR (a decoder that lost a frame) reach the publisher the same way:
//! through the room's coalescing keyframe request, never one PLI per viewer packet.

pub mod air;
mod direct;
mod feedback;
pub mod frames;
pub mod keyframe;
mod mux;
pub mod record;
pub mod rewrite;
mod sdp;
pub mod turn;

/// The SFU's parsers of untrusted input, public for the fuzz targets (`fuzz/`); the SFU
/// itself calls them through its own paths.
pub mod untrusted {
    /// Whether a WHIP/WHEP offer passes the checks made before the crate parses it.
    pub fn check_offer(sdp: &str) -> bool {
        super::sdp::check_offer(sdp).is_ok()
    }

    /// The codecs (`video/VP8`, ...) an offer says it can receive.
    pub fn offered_mime_types(sdp: &str) -> Vec<String> {
        super::sdp::offered_mime_types(sdp)
    }

    /// Whether an offer sends audio and video: `(audio, video)`.
    pub fn sent_kinds(sdp: &str) -> (bool, bool) {
        let expected = super::sdp::sent_kinds(sdp);
        (expected.audio, expected.video)
    }

    /// The local ICE ufrag a datagram on the shared media port is routed by (STUN).
    pub fn stun_route(datagram: &[u8]) -> Option<String> {
        super::mux::local_ufrag(datagram)
    }

    /// An answer's host candidates moved to the shared media port.
    pub fn rewrite_candidate_ports(sdp: &str, bound: &[u16], port: u16) -> String {
        super::mux::rewrite_candidate_ports(sdp, bound, port)
    }
}

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rand::Rng;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpParameters, RtpCodecKind,
};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateType, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
    register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

use air::{AirState, Audience, Refusal, Transition};
use direct::socket::SocketCapture;
use keyframe::Admit;
pub use rewrite::{Negotiated, Rewriter};

/// How long shutdown waits for recordings to be finished.
const RECORDING_FINISH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the answer may wait for ICE candidate gathering (host candidates and, with
/// STUN configured, a server-reflexive one). WHIP/WHEP answers carry all candidates.
const GATHERING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a viewer may take from answer to `Connected` before it is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pace of our ICE connectivity checks while connecting: RFC 8445's Ta of 50 ms. At the
/// crate's 200 ms a viewer waited most of a tick for our first check (the controlled
/// side's own check is what makes the pair valid), which was nearly all of its time to
/// first frame.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// Checks per candidate pair before it fails: the crate's 1.4 s (7 x 200 ms) at our pace.
const ICE_CHECKS_PER_PAIR: u16 = 28;
/// How long after a publisher's first track viewers wait for the rest of the tracks it
/// offered: one who joined in between got audio without video (a black player).
const TRACKS_WAIT: Duration = Duration::from_secs(3);
/// Keyframe requests from many viewers within this interval become one PLI.
const KEYFRAME_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// A PLI this often even without requests: a lost keyframe otherwise freezes viewers
/// until the next natural one, which some encoders send rarely.
const KEYFRAME_SAFETY_INTERVAL: Duration = Duration::from_secs(10);
/// Items (audio packets, video frames) buffered per room for slow viewer tasks: about
/// 3 s of 30 fps video with 50 audio packets/s.
const ROOM_CHANNEL_CAPACITY: usize = 256;
/// How often a viewer on the direct path gets RTCP sender reports (the crate's default).
const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// NACK reports a viewer task may have waiting; more than this and it is behind anyway.
const NACK_QUEUE: usize = 32;
/// A cached run longer than this still goes to a joining viewer, but a fresh keyframe
/// is requested too, so the next joiners get a shorter burst. In 90 kHz video ticks.
const GOP_STALE_TICKS: u32 = 90_000;
/// A longer run is not replayed at all: seconds of backlog in one burst would make the
/// viewer's player lag behind live; it waits for the requested keyframe instead.
const GOP_MAX_REPLAY_TICKS: u32 = 5 * 90_000;

/// Errors of the SFU boundary. The HTTP shell maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("the SDP offer is not usable: {0}")]
    BadOffer(String),
    #[error("a publisher is already live for this event")]
    AlreadyPublishing,
    #[error("nobody is publishing to this event")]
    NotPublishing,
    #[error("the event has not started: only its staff may watch")]
    NotLive,
    #[error("the event has ended")]
    Ended,
    #[error("the viewer supports none of the stream's codecs ({0})")]
    NoCommonCodec(String),
    #[error("no such media session")]
    UnknownSession,
    #[error("no free UDP port in the configured media port range")]
    NoFreePort,
    #[error("cannot bind the media UDP port {0}: {1}")]
    MediaPort(SocketAddr, std::io::Error),
    #[error("ICE candidate gathering did not finish in time")]
    GatheringTimeout,
    #[error("WebRTC failure: {0}")]
    WebRtc(String),
}

impl From<Refusal> for SfuError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotLive => SfuError::NotLive,
            Refusal::Ended => SfuError::Ended,
        }
    }
}

fn webrtc_error(error: impl fmt::Display) -> SfuError {
    SfuError::WebRtc(error.to_string())
}

/// A STUN or TURN server handed to peers (ours and, via `Link` headers, the clients').
#[derive(Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &"[redacted]")
            .finish()
    }
}

/// Where and how peers bind and what they advertise.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Address the UDP sockets bind. The crate expands a wildcard to every non-loopback
    /// interface; tests on loopback pass `127.0.0.1`.
    pub bind_ip: IpAddr,
    /// One UDP port for every peer connection (`mux`); takes precedence over
    /// `udp_ports`.
    pub udp_port: Option<u16>,
    /// Inclusive UDP port range, one port per peer connection; `None` for ephemeral
    /// ports.
    pub udp_ports: Option<(u16, u16)>,
    /// The address advertised instead of the bound one (1:1 NAT deployments).
    pub public_ip: Option<IpAddr>,
    pub ice_servers: Vec<IceServer>,
    /// With a shared TURN secret, `turn:`/`turns:` servers get fresh short-lived
    /// credentials each time they are handed out (see [`Sfu::ice_servers`]) instead of
    /// their static username and credential.
    pub turn_rest: Option<turn::TurnRest>,
    /// Where each publisher session is recorded (`<dir>/<event id>/<segment>.webm`);
    /// `None`: no recording.
    pub recordings_dir: Option<PathBuf>,
    /// Send viewers' media on the direct path ([`direct`]) instead of through the crate's
    /// per-peer pipeline. On by default; off is the escape hatch (and the benchmark's
    /// baseline).
    pub direct_send: bool,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            udp_port: None,
            udp_ports: None,
            public_ip: None,
            ice_servers: Vec::new(),
            turn_rest: None,
            recordings_dir: None,
            direct_send: true,
        }
    }
}

/// The result of a successful WHIP/WHEP offer.
#[derive(Debug, Clone)]
pub struct Session {
    /// Opaque id of the session resource (the last URL segment of `Location`).
    pub id: String,
    pub answer_sdp: String,
}

/// What the shell and the pages want to know about an event's media.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStatus {
    /// A publisher session exists and its connection has not failed.
    pub publishing: bool,
    /// Viewers exist but the publisher is gone: the player shows "paused".
    pub paused: bool,
    pub viewers: usize,
    pub ingest_bytes: u64,
    pub packets_forwarded: u64,
    /// Viewers whose media goes on the direct send path.
    pub direct_viewers: u64,
    /// Packets sent again for viewers' NACKs (direct path; the crate's NACK responder
    /// does not count its own).
    pub packets_retransmitted: u64,
    /// Packets not delivered to a viewer (its sender refused them or its codec did not
    /// match), plus frames and audio packets a lagging viewer task missed.
    pub packets_dropped: u64,
    /// PLI/FIR packets received from viewers (each relayed through the coalescing path).
    pub viewer_keyframe_requests: u64,
    /// PLIs sent to the publisher (joins, viewers' requests, lag, the safety interval).
    pub keyframe_requests_sent: u64,
}

/// Publisher changes the shell may act on (event status, hub pushes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    /// A publisher's connection came up for the event.
    PublisherConnected { event_id: String },
    /// The event's publisher went away (DELETE, failure or timeout).
    PublisherGone { event_id: String },
    /// A segment's file was created (at the session's first keyframe).
    RecordingStarted(record::RecordingSegment),
    /// A segment's file was finished (publisher gone or shutdown).
    RecordingFinished(record::RecordingSegment),
}

/// The SFU: rooms by event id.
pub struct Sfu {
    config: SfuConfig,
    mux: Option<Arc<mux::UdpMux>>,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    /// Each event's on-air state as this node last heard it. Taken before a room's state
    /// lock when both are needed, never the other way round.
    air: Mutex<HashMap<String, AirState>>,
    next_port: AtomicU16,
    events: broadcast::Sender<SfuEvent>,
}

impl fmt::Debug for Sfu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sfu").field("config", &self.config).finish()
    }
}

impl Sfu {
    /// The SFU; with [`SfuConfig::udp_port`], binds that port now (on the current tokio
    /// runtime), so a port in use fails at start rather than at the first publisher.
    pub fn new(config: SfuConfig) -> Result<Arc<Self>, SfuError> {
        let first_port = config.udp_ports.map_or(0, |(min, _)| min);
        let mux = match config.udp_port {
            Some(port) => {
                let addr = SocketAddr::new(config.bind_ip, port);
                let mux = mux::UdpMux::bind(addr).map_err(|e| SfuError::MediaPort(addr, e))?;
                tracing::info!(addr = %mux.local_addr(), "media on one UDP port");
                Some(mux)
            }
            None => None,
        };
        Ok(Arc::new(Self {
            config,
            mux,
            rooms: Mutex::new(HashMap::new()),
            air: Mutex::new(HashMap::new()),
            next_port: AtomicU16::new(first_port),
            events: broadcast::channel(256).0,
        }))
    }

    pub fn config(&self) -> &SfuConfig {
        &self.config
    }

    /// The ICE servers to hand out now: with [`SfuConfig::turn_rest`], each TURN server
    /// carries a fresh `<expiry>:<random id>` username and its coturn credential.
    pub fn ice_servers(&self) -> Vec<IceServer> {
        let Some(rest) = &self.config.turn_rest else {
            return self.config.ice_servers.clone();
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = format!("{:016x}", rand::thread_rng().r#gen::<u64>());
        let (username, credential) = rest.credentials(now, &id);
        self.config
            .ice_servers
            .iter()
            .map(|server| {
                let turn = server
                    .urls
                    .iter()
                    .any(|u| u.starts_with("turn:") || u.starts_with("turns:"));
                if turn {
                    IceServer {
                        urls: server.urls.clone(),
                        username: username.clone(),
                        credential: credential.clone(),
                    }
                } else {
                    server.clone()
                }
            })
            .collect()
    }

    /// Publisher changes, for the shell.
    pub fn subscribe(&self) -> broadcast::Receiver<SfuEvent> {
        self.events.subscribe()
    }

    /// The event's on-air state changed (`next` as the database has it, from this node,
    /// another node or a request's read): takes it if it is newer than what this node
    /// knows, and carries it out: going live starts recording the running publisher,
    /// ending closes every session of the event and finishes its recording.
    pub async fn set_air(self: &Arc<Self>, event_id: &str, next: AirState) {
        let transition = {
            let mut air = lock(&self.air);
            let (state, transition) = air::take(air.get(event_id).copied(), next);
            air.insert(event_id.to_owned(), state);
            transition
        };
        match transition {
            Transition::None => {}
            Transition::StartRecording => self.start_recording(event_id),
            Transition::CloseAll => self.close_event(event_id).await,
        }
    }

    /// The event's on-air state as this node knows it.
    pub fn air(&self, event_id: &str) -> Option<AirState> {
        lock(&self.air).get(event_id).copied()
    }

    /// Accepts a WHIP offer for `event_id`, whose status the caller read as `air`. A live
    /// publisher makes this fail with [`SfuError::AlreadyPublishing`]; one whose
    /// connection failed or closed is replaced. An ended event refuses
    /// ([`SfuError::Ended`]); a rehearsal is not recorded.
    #[tracing::instrument(skip(self, offer_sdp, air), fields(event_id))]
    pub async fn publish(
        self: &Arc<Self>,
        event_id: &str,
        offer_sdp: String,
        air: AirState,
    ) -> Result<Session, SfuError> {
        sdp::check_offer(&offer_sdp)?;
        self.set_air(event_id, air).await;
        self.air(event_id).unwrap_or(air).admits_publisher()?;
        let expected = sdp::sent_kinds(&offer_sdp);
        let room = self.room(event_id);
        if room.publisher_live() {
            return Err(SfuError::AlreadyPublishing);
        }
        let (track_tx, mut track_rx) = mpsc::unbounded_channel();
        let (peer, signals, sockets) = self.new_peer(Some(track_tx), None).await?;
        let answer_sdp = match negotiate(&peer, &signals, offer_sdp).await {
            Ok(answer) => self.on_media_port(answer, &sockets),
            Err(error) => {
                let _ = peer.close().await;
                return Err(error);
            }
        };
        let id = session_id();
        let previous = {
            // The air lock first (see `Sfu::air`): an end that happened while we
            // negotiated either is seen here or finds this publisher to close.
            let air = self.air(event_id).unwrap_or(air);
            let mut state = lock(&room.state);
            if let Err(refusal) = air.admits_publisher() {
                Err(SfuError::from(refusal))
            } else if state
                .publisher
                .as_ref()
                .is_some_and(|p| is_live(*p.state.borrow()))
            {
                // Another publisher won the race while we negotiated.
                Err(SfuError::AlreadyPublishing)
            } else {
                let recorder = if air.records() {
                    self.recorder(event_id, &room, expected)
                } else {
                    None
                };
                state.recording = recorder.as_ref().map(|r| (id.clone(), r.tap()));
                room.recording_generation.fetch_add(1, Ordering::Release);
                state.session_kinds.clear();
                state.first_track_at = None;
                Ok(state.publisher.replace(Publisher {
                    session: id.clone(),
                    peer: PeerHandle {
                        peer: Arc::clone(&peer),
                        signals: Arc::clone(&signals),
                    },
                    state: signals.state.subscribe(),
                    expected,
                    recorder,
                }))
            }
        };
        let previous = match previous {
            Ok(previous) => previous,
            Err(error) => {
                let _ = peer.close().await;
                return Err(error);
            }
        };
        if let Some(previous) = previous {
            let _ = previous.peer.close().await;
            if let Some(recorder) = previous.recorder {
                tokio::spawn(recorder.finish(RECORDING_FINISH_TIMEOUT));
            }
        }
        tracing::info!(event_id, session = %id, "publisher accepted");

        // Tracks arrive from the handler; each gets a reader task.
        let weak_room = Arc::downgrade(&room);
        let reader_peer = Arc::clone(&peer);
        let reader_sfu = Arc::clone(self);
        let reader_session = id.clone();
        tokio::spawn(async move {
            while let Some(track) = track_rx.recv().await {
                let Some(room) = weak_room.upgrade() else {
                    break;
                };
                tokio::spawn(read_publisher_track(
                    Arc::clone(&reader_sfu),
                    room,
                    Arc::clone(&reader_peer),
                    track,
                    reader_session.clone(),
                ));
            }
        });
        tokio::spawn(watch_publisher(
            Arc::clone(self),
            room,
            id.clone(),
            signals.state.subscribe(),
        ));
        Ok(Session { id, answer_sdp })
    }

    /// Accepts a WHEP offer for `event_id`, whose status the caller read as `air`, from
    /// `audience`: [`SfuError::NotLive`] for the public before the start,
    /// [`SfuError::Ended`] after the end, [`SfuError::NotPublishing`] until a publisher
    /// has sent the tracks it offered, [`SfuError::NoCommonCodec`] when the viewer can
    /// decode none.
    #[tracing::instrument(skip(self, offer_sdp, air), fields(event_id))]
    pub async fn view(
        self: &Arc<Self>,
        event_id: &str,
        offer_sdp: String,
        audience: Audience,
        air: AirState,
    ) -> Result<Session, SfuError> {
        sdp::check_offer(&offer_sdp)?;
        self.set_air(event_id, air).await;
        self.air(event_id).unwrap_or(air).admits(audience)?;
        let room = lock(&self.rooms)
            .get(event_id)
            .cloned()
            .ok_or(SfuError::NotPublishing)?;
        let tracks = {
            let state = lock(&room.state);
            if !state.ready() {
                return Err(SfuError::NotPublishing);
            }
            state.tracks.clone()
        };
        let offered = sdp::offered_mime_types(&offer_sdp);
        let usable: Vec<PublishedTrack> = tracks
            .iter()
            .filter(|t| {
                offered
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&t.codec.mime_type))
            })
            .cloned()
            .collect();
        if usable.is_empty() {
            let published: Vec<&str> = tracks.iter().map(|t| t.codec.mime_type.as_str()).collect();
            return Err(SfuError::NoCommonCodec(published.join(", ")));
        }

        let keys = if self.config.direct_send {
            rtc::crypto::default_provider()
                .ok()
                .map(|provider| Arc::new(direct::keys::KeyCapture::new(provider)))
        } else {
            None
        };
        let (peer, signals, sockets) = self.new_peer(None, keys.as_ref()).await?;
        let capture = keys.map(|keys| {
            Arc::new(direct::Capture {
                keys,
                sockets: Arc::clone(&sockets),
            })
        });
        let mut outputs = Vec::new();
        for track in &usable {
            let ssrc: u32 = rand::thread_rng().r#gen();
            let local = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                format!("gongkai-{event_id}"),
                format!("{}-{ssrc:08x}", kind_name(track.kind)),
                kind_name(track.kind).to_owned(),
                track.kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: track.codec.clone(),
                    ..Default::default()
                }],
            )));
            let sender = match peer
                .add_track(Arc::clone(&local) as Arc<dyn TrackLocal>)
                .await
            {
                Ok(sender) => sender,
                Err(error) => {
                    let _ = peer.close().await;
                    return Err(webrtc_error(error));
                }
            };
            outputs.push(ViewerTrack {
                kind: track.kind,
                clock_rate: track.codec.clock_rate,
                ssrc,
                local,
                sender,
            });
        }
        let answer_sdp = match negotiate(&peer, &signals, offer_sdp).await {
            Ok(answer) => self.on_media_port(answer, &sockets),
            Err(error) => {
                let _ = peer.close().await;
                return Err(error);
            }
        };
        let id = session_id();
        let admitted = {
            let air = self.air(event_id).unwrap_or(air);
            let mut state = lock(&room.state);
            let admitted = air.admits(audience);
            if admitted.is_ok() {
                state.viewers.insert(
                    id.clone(),
                    PeerHandle {
                        peer: Arc::clone(&peer),
                        signals: Arc::clone(&signals),
                    },
                );
            }
            admitted
        };
        if let Err(refusal) = admitted {
            // The event ended while we negotiated.
            let _ = peer.close().await;
            return Err(refusal.into());
        }
        tracing::debug!(event_id, session = %id, "viewer accepted");
        tokio::spawn(forward_to_viewer(
            Arc::clone(self),
            room,
            id.clone(),
            peer,
            signals.state.subscribe(),
            outputs,
            capture,
        ));
        Ok(Session { id, answer_sdp })
    }

    /// Ends a publisher or viewer session of `event_id` (WHIP/WHEP `DELETE`).
    pub async fn end(&self, event_id: &str, session: &str) -> Result<(), SfuError> {
        let room = lock(&self.rooms)
            .get(event_id)
            .cloned()
            .ok_or(SfuError::UnknownSession)?;
        let mut recorder = None;
        let peer = {
            let mut state = lock(&room.state);
            if state
                .publisher
                .as_ref()
                .is_some_and(|p| p.session == session)
            {
                state.recording = None;
                state.publisher.take().map(|p| {
                    recorder = p.recorder;
                    p.peer
                })
            } else {
                state.viewers.remove(session)
            }
        };
        let peer = peer.ok_or(SfuError::UnknownSession)?;
        let _ = peer.close().await;
        if let Some(recorder) = recorder {
            tokio::spawn(recorder.finish(RECORDING_FINISH_TIMEOUT));
        }
        Ok(())
    }

    /// Starts recording the event's running publisher (it went live after a rehearsal).
    fn start_recording(&self, event_id: &str) {
        let Some(room) = lock(&self.rooms).get(event_id).cloned() else {
            return;
        };
        let mut state = lock(&room.state);
        let Some(publisher) = state.publisher.as_mut() else {
            return;
        };
        if publisher.recorder.is_some() || !is_live(*publisher.state.borrow()) {
            return;
        }
        let recorder = self.recorder(event_id, &room, publisher.expected);
        let tap = recorder
            .as_ref()
            .map(|r| (publisher.session.clone(), r.tap()));
        publisher.recorder = recorder;
        state.recording = tap;
        room.recording_generation.fetch_add(1, Ordering::Release);
        // The writer waits for a keyframe; ask now rather than at the safety interval.
        room.keyframe_wanted.notify_one();
        tracing::info!(event_id, "on air: recording the running publisher");
    }

    /// Closes the publisher and every viewer of an ended event and finishes its recording.
    /// The closes run together: an end must reach every viewer within a second.
    async fn close_event(&self, event_id: &str) {
        let Some(room) = lock(&self.rooms).get(event_id).cloned() else {
            return;
        };
        let (peers, recorder) = {
            let mut state = lock(&room.state);
            state.recording = None;
            let mut peers: Vec<_> = state.viewers.drain().map(|(_, p)| p).collect();
            let mut recorder = None;
            if let Some(publisher) = state.publisher.take() {
                peers.push(publisher.peer);
                recorder = publisher.recorder;
            }
            (peers, recorder)
        };
        room.recording_generation.fetch_add(1, Ordering::Release);
        tracing::info!(
            event_id,
            sessions = peers.len(),
            "event ended: closing its media"
        );
        let finishing = recorder.map(|r| r.finish(RECORDING_FINISH_TIMEOUT));
        let mut closing = tokio::task::JoinSet::new();
        for peer in peers {
            closing.spawn(async move {
                let _ = peer.close().await;
            });
        }
        while closing.join_next().await.is_some() {}
        if let Some(finishing) = finishing {
            tokio::spawn(finishing);
        }
    }

    fn recorder(
        &self,
        event_id: &str,
        room: &Arc<Room>,
        expected: record::Expected,
    ) -> Option<record::Recorder> {
        self.config.recordings_dir.as_deref().and_then(|dir| {
            record::Recorder::start(
                dir,
                event_id,
                expected,
                Arc::downgrade(room),
                self.events.clone(),
            )
        })
    }

    /// Whether `session` is a publisher session of `event_id`.
    pub fn is_publisher_session(&self, event_id: &str, session: &str) -> bool {
        lock(&self.rooms).get(event_id).is_some_and(|room| {
            lock(&room.state)
                .publisher
                .as_ref()
                .is_some_and(|p| p.session == session)
        })
    }

    /// Whether `session` is a viewer session of `event_id` that is still open.
    pub fn is_viewer_session(&self, event_id: &str, session: &str) -> bool {
        lock(&self.rooms)
            .get(event_id)
            .is_some_and(|room| lock(&room.state).viewers.contains_key(session))
    }

    pub fn status(&self, event_id: &str) -> MediaStatus {
        let Some(room) = lock(&self.rooms).get(event_id).cloned() else {
            return MediaStatus::default();
        };
        let state = lock(&room.state);
        let publishing = state
            .publisher
            .as_ref()
            .is_some_and(|p| is_live(*p.state.borrow()));
        MediaStatus {
            publishing,
            paused: !publishing && !state.viewers.is_empty(),
            viewers: state.viewers.len(),
            ingest_bytes: room.ingest_bytes.load(Ordering::Relaxed),
            packets_forwarded: room.forwarded.load(Ordering::Relaxed),
            direct_viewers: room.direct_viewers.load(Ordering::Relaxed),
            packets_retransmitted: room.retransmitted.load(Ordering::Relaxed),
            packets_dropped: room.dropped.load(Ordering::Relaxed),
            viewer_keyframe_requests: room.viewer_keyframe_requests.load(Ordering::Relaxed),
            keyframe_requests_sent: room.keyframe_requests_sent.load(Ordering::Relaxed),
        }
    }

    /// Status of every room, for `/metrics`.
    pub fn statuses(&self) -> Vec<(String, MediaStatus)> {
        let ids: Vec<String> = lock(&self.rooms).keys().cloned().collect();
        ids.into_iter()
            .map(|id| {
                let status = self.status(&id);
                (id, status)
            })
            .collect()
    }

    /// Closes every peer and finishes every recording (graceful shutdown); returns the
    /// segments finished.
    pub async fn close_all(&self) -> Vec<record::RecordingSegment> {
        let rooms: Vec<Arc<Room>> = lock(&self.rooms).drain().map(|(_, r)| r).collect();
        let mut recorders = Vec::new();
        for room in rooms {
            let peers: Vec<PeerHandle> = {
                let mut state = lock(&room.state);
                let mut peers: Vec<_> = state.viewers.drain().map(|(_, p)| p).collect();
                state.recording = None;
                if let Some(publisher) = state.publisher.take() {
                    peers.push(publisher.peer);
                    recorders.extend(publisher.recorder);
                }
                peers
            };
            for peer in peers {
                peer.close().await;
            }
        }
        // Every writer is told first, then waited for: they finish in parallel.
        let finishing: Vec<_> = recorders
            .into_iter()
            .map(|r| r.finish(RECORDING_FINISH_TIMEOUT))
            .collect();
        let mut segments = Vec::new();
        for finished in finishing {
            segments.extend(finished.await);
        }
        segments
    }

    /// Drops the event's room once nothing uses it any more (no publisher, viewer or
    /// reader task): its channel would otherwise keep the last packets buffered forever.
    /// Every other holder clones a room under the `rooms` lock, so a count of one checked
    /// under that lock cannot race with a new publisher or viewer.
    fn prune(&self, event_id: &str) {
        let mut rooms = lock(&self.rooms);
        if rooms
            .get(event_id)
            .is_some_and(|room| Arc::strong_count(room) == 1)
        {
            rooms.remove(event_id);
        }
    }

    fn room(&self, event_id: &str) -> Arc<Room> {
        Arc::clone(
            lock(&self.rooms)
                .entry(event_id.to_owned())
                .or_insert_with(|| Arc::new(Room::new(event_id))),
        )
    }

    fn next_port(&self) -> u16 {
        match self.config.udp_ports {
            None => 0,
            Some((min, max)) => {
                let port = self.next_port.fetch_add(1, Ordering::Relaxed);
                if port < min || port > max {
                    self.next_port
                        .store(min.saturating_add(1), Ordering::Relaxed);
                    min
                } else {
                    port
                }
            }
        }
    }

    /// With the shared media port, the answer's host candidates name it instead of the
    /// ports the crate bound (see `mux`).
    fn on_media_port(&self, answer: String, sockets: &SocketCapture) -> String {
        match &self.mux {
            Some(mux) => mux::rewrite_candidate_ports(
                &answer,
                &sockets.bound_ports(),
                mux.local_addr().port(),
            ),
            None => answer,
        }
    }

    async fn new_peer(
        &self,
        tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
        keys: Option<&Arc<direct::keys::KeyCapture>>,
    ) -> Result<(Arc<dyn PeerConnection>, Arc<Signals>, Arc<SocketCapture>), SfuError> {
        let signals = Arc::new(Signals {
            gathered: Notify::new(),
            state: watch::channel(RTCPeerConnectionState::New).0,
            tracks,
        });
        let attempts = match (&self.mux, self.config.udp_ports) {
            (None, Some((min, max))) => usize::from(max - min) + 1,
            _ => 1,
        };
        let mut last_error = None;
        for _ in 0..attempts {
            // Under the mux the crate's own socket is only an address: any port does.
            let port = if self.mux.is_some() {
                0
            } else {
                self.next_port()
            };
            let sockets = Arc::new(match &self.mux {
                Some(mux) => SocketCapture::with_mux(Arc::clone(mux), ice_token(8)),
                None => SocketCapture::default(),
            });
            match self
                .build_peer(Arc::clone(&signals), port, keys, &sockets)
                .await
            {
                Ok(peer) => return Ok((peer, signals, sockets)),
                // A port in use: try the next one of the range.
                Err(error) => last_error = Some(error),
            }
        }
        match (self.config.udp_ports, last_error) {
            (Some(_), _) if self.mux.is_none() => Err(SfuError::NoFreePort),
            (_, Some(error)) => Err(error),
            (_, None) => Err(SfuError::NoFreePort),
        }
    }

    async fn build_peer(
        &self,
        signals: Arc<Signals>,
        port: u16,
        keys: Option<&Arc<direct::keys::KeyCapture>>,
        sockets: &Arc<SocketCapture>,
    ) -> Result<Arc<dyn PeerConnection>, SfuError> {
        let mut media_engine = media_engine()?;
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)
            .map_err(webrtc_error)?
            .with(
                rtc::interceptor::Slot::from(feedback::SLOT),
                feedback::KeyframeRequests::default(),
            );
        let mut settings = SettingEngineBuilder::new();
        if let Some(public_ip) = self.config.public_ip {
            settings =
                settings.with_nat_1to1_ips(vec![public_ip.to_string()], RTCIceCandidateType::Host);
        }
        if self.config.bind_ip.is_loopback() {
            settings = settings.with_include_loopback_candidate(true);
        }
        // No mDNS: browsers' `.local` host candidates are on their own LAN, which a server
        // cannot resolve; their checks reach it anyway and ICE learns their address from
        // them (peer reflexive). Left on, every peer would hold its own socket on 5353
        // and wake for every multicast packet on the server's network.
        settings = settings.with_multicast_dns_mode(MulticastDnsMode::Disabled);
        settings = settings
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_CHECKS_PER_PAIR));
        if let Some(keys) = keys {
            settings = settings.with_crypto_provider(Arc::clone(keys) as _);
        }
        if let Some(ufrag) = sockets.mux_ufrag() {
            // The mux routes by the ufrag, so the SFU chooses it (RFC 8445: >= 4 and
            // >= 22 ice-chars, random).
            settings = settings.with_ice_credentials(ufrag.to_owned(), ice_token(24));
        }
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(
                self.ice_servers()
                    .into_iter()
                    .map(|s| RTCIceServer {
                        urls: s.urls,
                        username: s.username,
                        credential: s.credential,
                    })
                    .collect(),
            )
            .build();
        let peer = PeerConnectionBuilder::new()
            .with_runtime(Arc::clone(sockets) as _)
            .with_configuration(configuration)
            .with_media_engine(media_engine)
            .with_setting_engine(settings.build())
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler(signals)) as Arc<dyn PeerConnectionEventHandler>)
            .with_udp_addrs(vec![SocketAddr::new(self.config.bind_ip, port)])
            .build()
            .await
            .map_err(webrtc_error)?;
        Ok(Arc::new(peer))
    }
}

/// One event's media.
struct Room {
    event_id: String,
    packets: broadcast::Sender<Arc<Forwarded>>,
    /// Video since the last keyframe. Video is sent to `packets` under this lock, so a
    /// viewer that subscribes under it sees each packet exactly once.
    gop: Mutex<keyframe::GopCache<Arc<Forwarded>>>,
    keyframe_wanted: Notify,
    state: Mutex<RoomState>,
    /// Bumped whenever `RoomState::recording` changes, so track readers look at it only
    /// then, not per packet.
    recording_generation: AtomicU64,
    ingest_bytes: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    direct_viewers: AtomicU64,
    /// Packets sent again for viewers' NACKs on the direct path.
    retransmitted: AtomicU64,
    viewer_keyframe_requests: AtomicU64,
    keyframe_requests_sent: AtomicU64,
}

#[derive(Default)]
struct RoomState {
    publisher: Option<Publisher>,
    /// The current (or last) publisher's tracks: what viewers are offered.
    tracks: Vec<PublishedTrack>,
    /// The kinds of track the current publisher session has sent so far, and when its
    /// first one came.
    session_kinds: Vec<RtpCodecKind>,
    first_track_at: Option<tokio::time::Instant>,
    viewers: HashMap<String, PeerHandle>,
    /// The publisher session being recorded and the tap its track readers feed.
    recording: Option<(String, record::RecorderTap)>,
}

impl RoomState {
    /// Whether a viewer can be given the stream now: a live publisher that has sent every
    /// kind of track it offered (or, if one never comes, for long enough).
    fn ready(&self) -> bool {
        let Some(publisher) = self
            .publisher
            .as_ref()
            .filter(|p| is_live(*p.state.borrow()))
        else {
            return false;
        };
        let Some(first) = self.first_track_at else {
            return false;
        };
        let has = |kind| self.session_kinds.contains(&kind);
        let complete = (!publisher.expected.audio || has(RtpCodecKind::Audio))
            && (!publisher.expected.video || has(RtpCodecKind::Video));
        complete || first.elapsed() >= TRACKS_WAIT
    }
}

/// A peer connection and the signals its tasks wait on. Closing through here wakes those
/// tasks at once (the publisher's watcher reports it gone, a viewer's task stops
/// sending), whether or not the crate reports its own close.
#[derive(Clone)]
struct PeerHandle {
    peer: Arc<dyn PeerConnection>,
    signals: Arc<Signals>,
}

impl PeerHandle {
    async fn close(&self) {
        self.signals
            .state
            .send_replace(RTCPeerConnectionState::Closed);
        let _ = self.peer.close().await;
    }
}

struct Publisher {
    session: String,
    peer: PeerHandle,
    state: watch::Receiver<RTCPeerConnectionState>,
    /// What the offer said it would send.
    expected: record::Expected,
    /// This session's recording (none during a rehearsal); dropping it finishes the file.
    recorder: Option<record::Recorder>,
}

#[derive(Debug, Clone)]
struct PublishedTrack {
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
}

/// One publisher audio packet or video frame, shared by all viewer tasks.
struct Forwarded {
    kind: RtpCodecKind,
    mime: Arc<str>,
    source: Arc<Negotiated>,
    packets: Vec<rtp::Packet>,
    /// A video frame that starts a keyframe.
    keyframe: bool,
}

impl Room {
    fn new(event_id: &str) -> Self {
        Self {
            event_id: event_id.to_owned(),
            packets: broadcast::channel(ROOM_CHANNEL_CAPACITY).0,
            gop: Mutex::new(keyframe::GopCache::default()),
            keyframe_wanted: Notify::new(),
            state: Mutex::new(RoomState::default()),
            recording_generation: AtomicU64::new(0),
            ingest_bytes: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            direct_viewers: AtomicU64::new(0),
            retransmitted: AtomicU64::new(0),
            viewer_keyframe_requests: AtomicU64::new(0),
            keyframe_requests_sent: AtomicU64::new(0),
        }
    }

    fn publisher_live(&self) -> bool {
        lock(&self.state)
            .publisher
            .as_ref()
            .is_some_and(|p| is_live(*p.state.borrow()))
    }
}

/// A viewer's outgoing track and what its rewriter needs.
struct ViewerTrack {
    kind: RtpCodecKind,
    clock_rate: u32,
    ssrc: u32,
    local: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
}

/// State a peer's event handler reports to the SFU.
struct Signals {
    gathered: Notify,
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
}

struct Handler(Arc<Signals>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.0.gathered.notify_one();
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.0.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(tracks) = &self.0.tracks {
            let _ = tracks.send(track);
        }
    }
}

/// A publisher that has not failed or closed. `Disconnected` counts as gone: a phone that
/// lost its network should be able to come back at once rather than get 409 until ICE
/// gives up on the old session.
fn is_live(state: RTCPeerConnectionState) -> bool {
    matches!(
        state,
        RTCPeerConnectionState::New
            | RTCPeerConnectionState::Connecting
            | RTCPeerConnectionState::Connected
    )
}

fn kind_name(kind: RtpCodecKind) -> &'static str {
    if kind == RtpCodecKind::Audio {
        "audio"
    } else {
        "video"
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain maps in a consistent state
    // (every critical section is a single insert/remove/read), so poisoning is ignored.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A random ICE ufrag or password of `len` alphanumeric characters (a subset of RFC
/// 8445's ice-chars).
fn ice_token(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn session_id() -> String {
    let bytes: [u8; 12] = rand::thread_rng().r#gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The codecs the SFU negotiates: Opus, VP8 and H.264 constrained baseline with
/// packetization mode 1. No RTX: the publisher's retransmissions would need their own
/// rewrite, and NACK is answered per viewer from the sender's buffer instead.
fn media_engine() -> Result<MediaEngine, SfuError> {
    let video_feedback = vec![
        RTCPFeedback {
            typ: "nack".into(),
            parameter: String::new(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: "pli".into(),
        },
        RTCPFeedback {
            typ: "ccm".into(),
            parameter: "fir".into(),
        },
    ];
    let codecs = [
        (
            RtpCodecKind::Audio,
            111,
            "audio/opus",
            48_000,
            2,
            "minptime=10;useinbandfec=1",
            vec![],
        ),
        (
            RtpCodecKind::Video,
            96,
            "video/VP8",
            90_000,
            0,
            "",
            video_feedback.clone(),
        ),
        (
            RtpCodecKind::Video,
            102,
            "video/H264",
            90_000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            video_feedback.clone(),
        ),
        (
            RtpCodecKind::Video,
            106,
            "video/H264",
            90_000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            video_feedback,
        ),
    ];
    let mut engine = MediaEngine::default();
    for (kind, payload_type, mime, clock_rate, channels, fmtp, feedback) in codecs {
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: mime.into(),
                        clock_rate,
                        channels,
                        sdp_fmtp_line: fmtp.into(),
                        rtcp_feedback: feedback,
                    },
                    payload_type,
                },
                kind,
            )
            .map_err(webrtc_error)?;
    }
    Ok(engine)
}

/// Applies the offer and returns the complete answer (all candidates: WHIP/WHEP clients
/// need not trickle).
async fn negotiate(
    peer: &Arc<dyn PeerConnection>,
    signals: &Signals,
    offer_sdp: String,
) -> Result<String, SfuError> {
    let offer =
        RTCSessionDescription::offer(offer_sdp).map_err(|e| SfuError::BadOffer(e.to_string()))?;
    peer.set_remote_description(offer)
        .await
        .map_err(|e| SfuError::BadOffer(e.to_string()))?;
    let answer = peer.create_answer(None).await.map_err(webrtc_error)?;
    peer.set_local_description(answer)
        .await
        .map_err(webrtc_error)?;
    tokio::time::timeout(GATHERING_TIMEOUT, signals.gathered.notified())
        .await
        .map_err(|_| SfuError::GatheringTimeout)?;
    peer.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or_else(|| SfuError::WebRtc("no local description after answering".into()))
}

fn negotiated(parameters: &RTCRtpParameters) -> Negotiated {
    Negotiated {
        payload_types: parameters
            .codecs
            .iter()
            .map(|c| (c.payload_type, c.rtp_codec.mime_type.clone()))
            .collect(),
        extensions: parameters
            .header_extensions
            .iter()
            .filter_map(|e| u8::try_from(e.id).ok().map(|id| (id, e.uri.clone())))
            .collect(),
    }
}

/// Reads one publisher track into the room; for video, also sends the PLIs viewers ask
/// for.
async fn read_publisher_track(
    sfu: Arc<Sfu>,
    room: Arc<Room>,
    peer: Arc<dyn PeerConnection>,
    track: Arc<dyn TrackRemote>,
    session: String,
) {
    let Some(ssrc) = track.ssrcs().await.first().copied() else {
        return;
    };
    let Some(codec) = track.codec(ssrc).await else {
        return;
    };
    let kind = track.kind().await;
    let track_id = track.track_id().await;
    let mut source = Negotiated::default();
    for receiver in peer.get_receivers().await {
        if receiver.track().track_id().await == track_id
            && let Ok(parameters) = receiver.get_parameters().await
        {
            source = negotiated(&parameters.rtp_parameters);
        }
    }
    tracing::debug!(event_id = %room.event_id, mime = %codec.mime_type, "publisher track");
    let mime: Arc<str> = Arc::from(codec.mime_type.as_str());
    let source = Arc::new(source);
    {
        let mut state = lock(&room.state);
        state.tracks.retain(|t| t.kind != kind);
        state.tracks.push(PublishedTrack { kind, codec });
        if state
            .publisher
            .as_ref()
            .is_some_and(|p| p.session == session)
        {
            state.session_kinds.push(kind);
            state
                .first_track_at
                .get_or_insert_with(tokio::time::Instant::now);
        }
    }
    // The recording this session feeds, re-read only when it changes (going live
    // starts one, an end stops it).
    let mut recording_seen = u64::MAX;
    let mut recorder: Option<record::RecorderTap> = None;

    let (done_tx, done_rx) = watch::channel(false);
    if kind == RtpCodecKind::Video {
        // The previous session's frames are no reference for this one's.
        lock(&room.gop).clear();
        tokio::spawn(send_keyframe_requests(
            Arc::downgrade(&room),
            Arc::clone(&track),
            ssrc,
            done_rx,
        ));
        // A returning publisher: viewers are waiting for a decodable frame.
        room.keyframe_wanted.notify_one();
    }
    let publish = |batch: frames::Batch<rtp::Packet>| {
        let forwarded = Arc::new(Forwarded {
            kind,
            mime: Arc::clone(&mime),
            source: Arc::clone(&source),
            packets: batch.packets,
            keyframe: batch.keyframe,
        });
        // No receivers is normal (nobody watching yet).
        if kind == RtpCodecKind::Video {
            let mut gop = lock(&room.gop);
            gop.push(Arc::clone(&forwarded), batch.timestamp, batch.keyframe);
            let _ = room.packets.send(forwarded);
        } else {
            let _ = room.packets.send(forwarded);
        }
    };
    let mut batcher = frames::FrameBatcher::default();
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                if packet.header.ssrc != ssrc {
                    continue;
                }
                room.ingest_bytes
                    .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                let generation = room.recording_generation.load(Ordering::Acquire);
                if generation != recording_seen {
                    recording_seen = generation;
                    recorder = lock(&room.state)
                        .recording
                        .as_ref()
                        .filter(|(s, _)| *s == session)
                        .map(|(_, tap)| tap.clone());
                }
                if let Some(recorder) = &recorder {
                    recorder.offer(kind, &mime, &packet);
                }
                let timestamp = packet.header.timestamp;
                if kind == RtpCodecKind::Video {
                    let keyframe = keyframe::starts_keyframe(&mime, &packet.payload);
                    let marker = packet.header.marker;
                    for batch in batcher.push(packet, timestamp, marker, keyframe) {
                        publish(batch);
                    }
                } else {
                    publish(frames::Batch {
                        packets: vec![packet],
                        timestamp,
                        keyframe: false,
                    });
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    if let Some(batch) = batcher.flush() {
        publish(batch);
    }
    let _ = done_tx.send(true);
    if kind == RtpCodecKind::Video {
        lock(&room.gop).clear();
    }
    let event_id = room.event_id.clone();
    drop(room);
    sfu.prune(&event_id);
}

async fn send_keyframe_requests(
    room: Weak<Room>,
    track: Arc<dyn TrackRemote>,
    media_ssrc: u32,
    mut done: watch::Receiver<bool>,
) {
    loop {
        let Some(strong) = room.upgrade() else {
            return;
        };
        let wanted = async {
            let _ =
                tokio::time::timeout(KEYFRAME_SAFETY_INTERVAL, strong.keyframe_wanted.notified())
                    .await;
        };
        tokio::select! {
            () = wanted => {}
            _ = done.changed() => return,
        }
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        if track.write_rtcp(vec![Box::new(pli)]).await.is_err() {
            return;
        }
        strong
            .keyframe_requests_sent
            .fetch_add(1, Ordering::Relaxed);
        drop(strong);
        // Requests arriving meanwhile leave one permit in the Notify: one PLI for all.
        tokio::time::sleep(KEYFRAME_MIN_INTERVAL).await;
    }
}

/// Relays one viewer track's PLI/FIR (see `feedback`) to the publisher through the room's
/// coalescing keyframe request, and its NACKs to `nacks` (the viewer task, which answers
/// them on the direct path); ends when the track is unbound.
async fn relay_feedback(
    room: Weak<Room>,
    local: Arc<TrackLocalStaticRTP>,
    nacks: mpsc::Sender<Vec<u16>>,
) {
    while let Some(event) = local.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        let lost = feedback::nacked(&packets);
        // A full queue means the viewer task is behind: these would be answered late.
        if !lost.is_empty() && nacks.try_send(lost).is_err() {
            tracing::trace!("NACK dropped: the viewer task is behind");
        }
        if !feedback::asks_for_keyframe(&packets) {
            continue;
        }
        let Some(room) = room.upgrade() else {
            return;
        };
        room.viewer_keyframe_requests
            .fetch_add(1, Ordering::Relaxed);
        room.keyframe_wanted.notify_one();
    }
}

/// Aborts tasks that must not outlive their owner.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn watch_publisher(
    sfu: Arc<Sfu>,
    room: Arc<Room>,
    session: String,
    mut state: watch::Receiver<RTCPeerConnectionState>,
) {
    let event_id = room.event_id.clone();
    let mut announced = false;
    loop {
        let current = *state.borrow_and_update();
        if current == RTCPeerConnectionState::Connected && !announced {
            announced = true;
            let _ = sfu.events.send(SfuEvent::PublisherConnected {
                event_id: event_id.clone(),
            });
        }
        if !is_live(current) {
            break;
        }
        if state.changed().await.is_err() {
            break;
        }
    }
    // Gone: free the slot if it is still ours, so the same token can publish again.
    let publisher = {
        let mut guard = lock(&room.state);
        if guard
            .publisher
            .as_ref()
            .is_some_and(|p| p.session == session)
        {
            guard.recording = None;
            guard.publisher.take()
        } else {
            None
        }
    };
    if let Some(publisher) = publisher {
        let _ = publisher.peer.close().await;
        if let Some(recorder) = publisher.recorder {
            let _ = recorder.finish(RECORDING_FINISH_TIMEOUT).await;
        }
    }
    tracing::info!(event_id, session, "publisher gone");
    drop(room);
    sfu.prune(&event_id);
    let _ = sfu.events.send(SfuEvent::PublisherGone { event_id });
}

async fn forward_to_viewer(
    sfu: Arc<Sfu>,
    room: Arc<Room>,
    session: String,
    peer: Arc<dyn PeerConnection>,
    mut state: watch::Receiver<RTCPeerConnectionState>,
    outputs: Vec<ViewerTrack>,
    capture: Option<Arc<direct::Capture>>,
) {
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            let current = *state.borrow_and_update();
            if current == RTCPeerConnectionState::Connected {
                return true;
            }
            if matches!(
                current,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
            ) || state.changed().await.is_err()
            {
                return false;
            }
        }
    })
    .await
    .unwrap_or(false);

    if connected {
        let mut rewriters = Vec::new();
        for output in &outputs {
            let parameters = match output.sender.get_parameters().await {
                Ok(p) => negotiated(&p.rtp_parameters),
                Err(_) => Negotiated::default(),
            };
            rewriters.push(Rewriter::new(output.ssrc, parameters, output.clock_rate));
        }
        let mut direct = match &capture {
            Some(capture) => match direct::DirectPath::establish(peer.as_ref(), capture).await {
                Ok(path) => Some(path),
                Err(reason) => {
                    tracing::warn!(
                        event_id = %room.event_id,
                        session,
                        %reason,
                        "viewer served through the crate's pipeline"
                    );
                    None
                }
            },
            None => None,
        };
        // The keys live in the direct path now (or are not needed): drop the copy.
        drop(capture);
        let _direct_count = direct
            .is_some()
            .then(|| DirectCount::new(Arc::clone(&room)));
        let (mut packets, cached, stale) = {
            let gop = lock(&room.gop);
            let span = gop.span();
            let cached = if span <= GOP_MAX_REPLAY_TICKS {
                gop.entries().to_vec()
            } else {
                Vec::new()
            };
            (room.packets.subscribe(), cached, span > GOP_STALE_TICKS)
        };
        if cached.is_empty() || stale {
            room.keyframe_wanted.notify_one();
        }
        if !cached.is_empty() {
            tracing::debug!(
                event_id = %room.event_id,
                session,
                frames = cached.len(),
                "replaying the run since the last keyframe"
            );
        }
        for forwarded in &cached {
            forward_packet(&room, &outputs, &mut rewriters, direct.as_mut(), forwarded).await;
        }
        // Not kept for the viewer's life: the room's cache moves on without it.
        drop(cached);
        let (nack_tx, mut nacks) = mpsc::channel(NACK_QUEUE);
        let relays: Vec<_> = outputs
            .iter()
            .filter(|o| o.kind == RtpCodecKind::Video)
            .map(|o| {
                tokio::spawn(relay_feedback(
                    Arc::downgrade(&room),
                    Arc::clone(&o.local),
                    nack_tx.clone(),
                ))
            })
            .collect();
        drop(nack_tx);
        let _abort_relays = AbortOnDrop(relays);
        let mut gate = keyframe::ResyncGate::default();
        let mut reports = tokio::time::interval(SENDER_REPORT_INTERVAL);
        reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = packets.recv() => match received {
                    Ok(forwarded) => {
                        if forwarded.kind == RtpCodecKind::Video {
                            match gate.admit(forwarded.keyframe) {
                                Admit::Forward => {}
                                Admit::Resume => close_video_gaps(&outputs, &mut rewriters),
                                Admit::Drop => {
                                    let skipped = forwarded.packets.len() as u64;
                                    room.dropped.fetch_add(skipped, Ordering::Relaxed);
                                    continue;
                                }
                            }
                        }
                        forward_packet(&room, &outputs, &mut rewriters, direct.as_mut(), &forwarded)
                            .await;
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        // Counted in items (frames, audio packets): the packets are gone.
                        room.dropped.fetch_add(missed, Ordering::Relaxed);
                        room.keyframe_wanted.notify_one();
                        gate.lost();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                changed = state.changed() => {
                    if changed.is_err() || !is_live(*state.borrow()) {
                        break;
                    }
                }
                _ = reports.tick(), if direct.is_some() => {
                    if let Some(direct) = direct.as_mut() {
                        let _ = direct.report().await;
                    }
                }
                Some(lost) = nacks.recv() => {
                    if let Some(direct) = direct.as_mut()
                        && let Ok(resent) = direct.resend(&lost).await
                    {
                        room.retransmitted.fetch_add(resent as u64, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    lock(&room.state).viewers.remove(&session);
    let _ = peer.close().await;
    tracing::debug!(event_id = %room.event_id, session, "viewer gone");
    let event_id = room.event_id.clone();
    drop(room);
    sfu.prune(&event_id);
}

fn close_video_gaps(outputs: &[ViewerTrack], rewriters: &mut [Rewriter]) {
    for (output, rewriter) in outputs.iter().zip(rewriters.iter_mut()) {
        if output.kind == RtpCodecKind::Video {
            rewriter.close_gap();
        }
    }
}

/// Counts a viewer on the direct path for as long as it lives.
struct DirectCount(Arc<Room>);

impl DirectCount {
    fn new(room: Arc<Room>) -> Self {
        room.direct_viewers.fetch_add(1, Ordering::Relaxed);
        Self(room)
    }
}

impl Drop for DirectCount {
    fn drop(&mut self) {
        self.0.direct_viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sends one publisher packet or frame, rewritten for the viewer's track of its kind: on
/// the direct path when the viewer has one, else through the track.
async fn forward_packet(
    room: &Room,
    outputs: &[ViewerTrack],
    rewriters: &mut [Rewriter],
    direct: Option<&mut direct::DirectPath>,
    forwarded: &Forwarded,
) {
    if let Some(direct) = direct {
        let mut packets = Vec::with_capacity(forwarded.packets.len());
        for (output, rewriter) in outputs.iter().zip(rewriters.iter_mut()) {
            if output.kind != forwarded.kind {
                continue;
            }
            for packet in &forwarded.packets {
                match rewriter.rewrite(packet, &forwarded.mime, &forwarded.source) {
                    Ok(packet) => packets.push(packet),
                    Err(rewrite::Skip::Empty) => {}
                    Err(rewrite::Skip::CodecNotNegotiated) => {
                        room.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        let keep = forwarded.kind == RtpCodecKind::Video;
        let clock_rate = outputs
            .iter()
            .find(|o| o.kind == forwarded.kind)
            .map_or(90_000, |o| o.clock_rate);
        match direct.send(&packets, clock_rate, keep).await {
            Ok(sent) => room.forwarded.fetch_add(sent as u64, Ordering::Relaxed),
            Err(_) => room
                .dropped
                .fetch_add(packets.len() as u64, Ordering::Relaxed),
        };
        return;
    }
    for (output, rewriter) in outputs.iter().zip(rewriters.iter_mut()) {
        if output.kind != forwarded.kind {
            continue;
        }
        for packet in &forwarded.packets {
            match rewriter.rewrite(packet, &forwarded.mime, &forwarded.source) {
                Ok(packet) => {
                    if output.local.write_rtp(packet).await.is_ok() {
                        room.forwarded.fetch_add(1, Ordering::Relaxed);
                    } else {
                        room.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(rewrite::Skip::Empty) => {}
                Err(rewrite::Skip::CodecNotNegotiated) => {
                    room.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
