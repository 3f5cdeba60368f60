//! Recording: each publisher session of an event becomes one WebM file (a segment) under
//! `<recordings dir>/<event id>/<segment>.webm`.
//!
//! The publisher's track readers hand every RTP packet to [`Recorder::offer`], which never
//! waits: packets go through a bounded channel to the segment's own writer thread (file IO
//! is blocking), and a full channel drops the packet and counts it. The writer
//! reassembles frames (`SampleBuilder` with the `rtp` crate's VP8/H.264 depacketizers;
//! one Opus packet is one frame), asks the publisher for a keyframe and drops video until
//! one arrives, and derives each frame's time from its RTP timestamp (anchored at the
//! arrival of the track's first packet, which aligns audio and video within a packet's
//! jitter). Dropping the [`Recorder`] (publisher gone, DELETE, shutdown) closes the
//! channel; the writer then drains it and finishes the file (duration, cues, sizes).
//!
//! The file is created at the first keyframe, so a session that never sent video (with a
//! video track offered) leaves no segment. [`SfuEvent::RecordingStarted`] and
//! [`SfuEvent::RecordingFinished`] tell the shell, which keeps the catalogue.

mod h264;
pub mod webm;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtc::media::io::sample_builder::SampleBuilder;
use rtc::rtp;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::{broadcast, mpsc, oneshot};

use self::webm::{TrackSpec, WebmFile};
use super::{Room, SfuEvent};

/// Packets buffered between the track readers and the writer (~4 s of 2 Mb/s video).
const CHANNEL_CAPACITY: usize = 4096;
/// How often the writer asks for a keyframe while it waits for the first one.
const KEYFRAME_RETRY: Duration = Duration::from_secs(1);
/// Packets the sample builder may wait for a missing one (reordering on the network).
const MAX_LATE_PACKETS: u16 = 256;
const MAX_LATE_TIME: Duration = Duration::from_millis(500);
/// How long video waits for the offered audio track before a video-only file starts.
const AUDIO_WAIT: Duration = Duration::from_secs(3);
/// File extension of every segment.
pub const EXTENSION: &str = "webm";

/// One recorded segment as the shell stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSegment {
    pub event_id: String,
    /// 1, 2, ... per event, in the order the sessions were recorded.
    pub segment: u32,
    /// The file's name in the event's directory (`0001.webm`).
    pub file_name: String,
    /// Comma-separated codec names (`vp8,opus`).
    pub codecs: String,
    /// Unix milliseconds of the first frame.
    pub started_ms: i64,
    /// Unix milliseconds when the file was finished (`None` while recording).
    pub ended_ms: Option<i64>,
    pub duration_ms: u64,
    pub bytes: u64,
    /// Packets the writer could not keep up with.
    pub dropped_packets: u64,
}

/// The publisher side of a segment being recorded. Dropping it ends the recording.
pub(super) struct Recorder {
    packets: mpsc::Sender<Input>,
    dropped: Arc<AtomicU64>,
    finished: oneshot::Receiver<Option<RecordingSegment>>,
}

/// What a track reader holds: sends nothing once the recording has ended.
#[derive(Clone)]
pub(super) struct RecorderTap {
    packets: mpsc::WeakSender<Input>,
    dropped: Arc<AtomicU64>,
}

struct Input {
    kind: RtpCodecKind,
    mime: Arc<str>,
    packet: rtp::Packet,
    arrived: Instant,
}

/// Which media the publisher offered to send (the header waits for each).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Expected {
    pub audio: bool,
    pub video: bool,
}

impl Recorder {
    /// Starts the writer thread for a new publisher session of `event_id`.
    pub(super) fn start(
        dir: &Path,
        event_id: &str,
        expected: Expected,
        room: Weak<Room>,
        events: broadcast::Sender<SfuEvent>,
    ) -> Option<Recorder> {
        // Ids come parsed from the shell; checked again because they name a directory.
        if event_id.is_empty()
            || event_id.len() > 64
            || !event_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            tracing::warn!("not recording: event id unusable as a directory name");
            return None;
        }
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (finished_tx, finished) = oneshot::channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            dir: dir.join(event_id),
            event_id: event_id.to_owned(),
            expected,
            room,
            events,
            dropped: Arc::clone(&dropped),
        };
        tokio::task::spawn_blocking(move || {
            let _ = finished_tx.send(writer.run(rx));
        });
        Some(Recorder {
            packets: tx,
            dropped,
            finished,
        })
    }

    pub(super) fn tap(&self) -> RecorderTap {
        RecorderTap {
            packets: self.packets.downgrade(),
            dropped: Arc::clone(&self.dropped),
        }
    }

    /// Ends the recording now; the future waits (at most `timeout`) until the file is
    /// finished and returns the segment (`None`: no file was written, or it took too long).
    pub(super) fn finish(
        self,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Option<RecordingSegment>> + Send + 'static {
        let Recorder {
            packets, finished, ..
        } = self;
        drop(packets);
        async move {
            tokio::time::timeout(timeout, finished)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        }
    }
}

impl RecorderTap {
    /// Hands a packet to the writer without waiting; drops it (counted) when the writer is
    /// behind.
    pub(super) fn offer(&self, kind: RtpCodecKind, mime: &Arc<str>, packet: &rtp::Packet) {
        let Some(packets) = self.packets.upgrade() else {
            return;
        };
        let input = Input {
            kind,
            mime: Arc::clone(mime),
            packet: packet.clone(),
            arrived: Instant::now(),
        };
        if packets.try_send(input).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Writer {
    dir: PathBuf,
    event_id: String,
    expected: Expected,
    room: Weak<Room>,
    events: broadcast::Sender<SfuEvent>,
    dropped: Arc<AtomicU64>,
}

/// A video track being reassembled.
enum Video {
    Vp8(Box<SampleBuilder<Vp8Packet>>),
    H264(Box<SampleBuilder<H264Packet>>),
}

/// Per-track timing: RTP timestamps extended past wrap-around and anchored at the first
/// packet's arrival.
struct Clock {
    rate: u64,
    last: u32,
    extended: i64,
    anchor_ms: i64,
}

impl Clock {
    fn new(timestamp: u32, rate: u32, arrived: Instant, origin: Instant) -> Clock {
        Clock {
            rate: u64::from(rate.max(1)),
            last: timestamp,
            extended: 0,
            anchor_ms: i64::try_from(arrived.saturating_duration_since(origin).as_millis())
                .unwrap_or(i64::MAX),
        }
    }

    /// Milliseconds since the writer's origin.
    fn time_ms(&mut self, timestamp: u32) -> i64 {
        // Differences within ±2^31 ticks are taken as the shorter way round.
        let step = i64::from(timestamp.wrapping_sub(self.last) as i32);
        let candidate = self.extended + step;
        if step > 0 {
            self.extended = candidate;
            self.last = timestamp;
        }
        self.anchor_ms + candidate * 1000 / self.rate as i64
    }
}

struct State {
    origin: Instant,
    video: Option<(Video, Clock)>,
    audio: Option<(Clock, u8)>,
    file: Option<Open>,
    first_video: Option<Instant>,
    last_keyframe_request: Option<Instant>,
}

struct Open {
    webm: WebmFile,
    segment: RecordingSegment,
    /// Writer time of the file's zero.
    base_ms: i64,
    video_track: Option<u64>,
    audio_track: Option<u64>,
    last_audio_ms: u64,
    last_video_ms: u64,
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Input>) -> Option<RecordingSegment> {
        let mut state = State {
            origin: Instant::now(),
            video: None,
            audio: None,
            file: None,
            first_video: None,
            last_keyframe_request: None,
        };
        self.request_keyframe(&mut state);
        while let Some(input) = rx.blocking_recv() {
            if let Err(error) = self.handle(&mut state, input) {
                tracing::warn!(event_id = %self.event_id, %error, "recording failed; the segment ends here");
                break;
            }
        }
        // Whatever arrives after an error is discarded; the channel closes with `rx`.
        drop(rx);
        state.file.take().map(|open| self.finish(open))
    }

    fn handle(&self, state: &mut State, input: Input) -> std::io::Result<()> {
        if input.packet.payload.is_empty() {
            return Ok(());
        }
        if input.kind == RtpCodecKind::Audio {
            return self.handle_audio(state, input);
        }
        if state.video.is_none() {
            let rate = 90_000;
            let video = if input.mime.eq_ignore_ascii_case("video/VP8") {
                Video::Vp8(Box::new(
                    SampleBuilder::new(MAX_LATE_PACKETS, Vp8Packet::default(), rate)
                        .with_max_time_delay(MAX_LATE_TIME),
                ))
            } else if input.mime.eq_ignore_ascii_case("video/H264") {
                let mut depacketizer = H264Packet::default();
                depacketizer.is_avc = true;
                Video::H264(Box::new(
                    SampleBuilder::new(MAX_LATE_PACKETS, depacketizer, rate)
                        .with_max_time_delay(MAX_LATE_TIME),
                ))
            } else {
                return Ok(());
            };
            let clock = Clock::new(
                input.packet.header.timestamp,
                rate,
                input.arrived,
                state.origin,
            );
            state.video = Some((video, clock));
        }
        let now = Instant::now();
        let mut frames = Vec::new();
        if let Some((video, _)) = state.video.as_mut() {
            match video {
                Video::Vp8(builder) => {
                    builder.push(now, input.packet);
                    while let Some(sample) = builder.pop(now) {
                        frames.push((sample.data, sample.packet_timestamp));
                    }
                }
                Video::H264(builder) => {
                    builder.push(now, input.packet);
                    while let Some(sample) = builder.pop(now) {
                        frames.push((sample.data, sample.packet_timestamp));
                    }
                }
            }
        }
        for (data, timestamp) in frames {
            self.video_frame(state, data, timestamp)?;
        }
        Ok(())
    }

    fn video_frame(&self, state: &mut State, data: Bytes, timestamp: u32) -> std::io::Result<()> {
        let Some((video, clock)) = state.video.as_mut() else {
            return Ok(());
        };
        let time = clock.time_ms(timestamp);
        let is_h264 = matches!(video, Video::H264(_));
        let (keyframe, spec) = if is_h264 {
            (h264::is_keyframe(&data), h264::keyframe_spec(&data))
        } else {
            match vp8_keyframe_size(&data) {
                Some((width, height)) => (true, Some(TrackSpec::Vp8 { width, height })),
                None => (false, None),
            }
        };
        if state.file.is_none() {
            // Both tracks go into the header: wait (a little) for the audio to show up.
            let first_video = *state.first_video.get_or_insert_with(Instant::now);
            let ready_for_audio =
                !self.expected.audio || state.audio.is_some() || first_video.elapsed() > AUDIO_WAIT;
            let Some(spec) = spec.filter(|_| ready_for_audio) else {
                self.request_keyframe(state);
                return Ok(());
            };
            let mut tracks = vec![spec];
            if let Some((_, channels)) = &state.audio {
                tracks.push(TrackSpec::Opus {
                    channels: *channels,
                });
            }
            self.open(state, &tracks, time)?;
        }
        let Some(open) = state.file.as_mut() else {
            return Ok(());
        };
        let Some(track) = open.video_track else {
            return Ok(());
        };
        let Some(at) = open.file_time(time) else {
            return Ok(());
        };
        // A frame older than the last written one (reordered across a loss): dropped.
        if at < open.last_video_ms && open.last_video_ms > 0 {
            return Ok(());
        }
        open.last_video_ms = at;
        open.webm.write_frame(track, at, keyframe, &data)
    }

    fn handle_audio(&self, state: &mut State, input: Input) -> std::io::Result<()> {
        if !input.mime.eq_ignore_ascii_case("audio/opus") {
            return Ok(());
        }
        if state.audio.is_none() {
            let clock = Clock::new(
                input.packet.header.timestamp,
                48_000,
                input.arrived,
                state.origin,
            );
            state.audio = Some((clock, 2));
        }
        let Some((clock, _)) = state.audio.as_mut() else {
            return Ok(());
        };
        let time = clock.time_ms(input.packet.header.timestamp);
        if state.file.is_none() && !self.expected.video {
            self.open(state, &[TrackSpec::Opus { channels: 2 }], time)?;
        }
        let Some(open) = state.file.as_mut() else {
            return Ok(());
        };
        let Some(track) = open.audio_track else {
            return Ok(());
        };
        let Some(at) = open.file_time(time) else {
            return Ok(());
        };
        if at < open.last_audio_ms {
            return Ok(());
        }
        open.last_audio_ms = at;
        open.webm
            .write_frame(track, at, true, &input.packet.payload)
    }

    /// Creates the next segment's file with `tracks`; `time` becomes its zero.
    fn open(&self, state: &mut State, tracks: &[TrackSpec], time: i64) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut segment = next_segment(&self.dir)?;
        let (webm, file_name) = loop {
            let file_name = format!("{segment:04}.{EXTENSION}");
            match WebmFile::create(&self.dir.join(&file_name), tracks) {
                Ok(webm) => break (webm, file_name),
                // Another writer took this number meanwhile: the next one.
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    segment += 1;
                }
                Err(error) => return Err(error),
            }
        };
        let codecs: Vec<&str> = tracks.iter().map(TrackSpec::codec_name).collect();
        let position = |video: bool| {
            tracks
                .iter()
                .position(|t| !matches!(t, TrackSpec::Opus { .. }) == video)
                .map(|i| i as u64 + 1)
        };
        let recording = RecordingSegment {
            event_id: self.event_id.clone(),
            segment,
            file_name,
            codecs: codecs.join(","),
            started_ms: unix_ms(),
            ended_ms: None,
            duration_ms: 0,
            bytes: webm.bytes(),
            dropped_packets: 0,
        };
        tracing::info!(event_id = %self.event_id, segment, codecs = %recording.codecs, "recording started");
        let _ = self
            .events
            .send(SfuEvent::RecordingStarted(recording.clone()));
        state.file = Some(Open {
            webm,
            segment: recording,
            base_ms: time,
            video_track: position(true),
            audio_track: position(false),
            last_audio_ms: 0,
            last_video_ms: 0,
        });
        Ok(())
    }

    fn finish(&self, open: Open) -> RecordingSegment {
        let Open {
            webm,
            mut segment,
            last_audio_ms,
            last_video_ms,
            ..
        } = open;
        // The last frame's own length: ~one video frame or one 20 ms Opus packet.
        let duration = last_audio_ms.max(last_video_ms) + 20;
        match webm.finish(duration) {
            Ok(bytes) => {
                segment.bytes = bytes;
                segment.duration_ms = duration;
            }
            Err(error) => {
                tracing::warn!(event_id = %self.event_id, %error, "could not finish the recording; it stays a live stream file");
            }
        }
        segment.ended_ms = Some(unix_ms());
        segment.dropped_packets = self.dropped.load(Ordering::Relaxed);
        tracing::info!(
            event_id = %self.event_id,
            segment = segment.segment,
            duration_ms = segment.duration_ms,
            bytes = segment.bytes,
            dropped = segment.dropped_packets,
            "recording finished"
        );
        let _ = self
            .events
            .send(SfuEvent::RecordingFinished(segment.clone()));
        segment
    }

    fn request_keyframe(&self, state: &mut State) {
        let now = Instant::now();
        if state
            .last_keyframe_request
            .is_some_and(|at| now.duration_since(at) < KEYFRAME_RETRY)
        {
            return;
        }
        state.last_keyframe_request = Some(now);
        if let Some(room) = self.room.upgrade() {
            room.keyframe_wanted.notify_one();
        }
    }
}

impl Open {
    /// A writer time as file time; `None` before the file's zero.
    fn file_time(&self, time: i64) -> Option<u64> {
        u64::try_from(time - self.base_ms).ok()
    }
}

/// The VP8 frame's dimensions when it is a keyframe (RFC 6386 §9.1).
fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// One more than the highest segment number in `dir` (1 for none).
fn next_segment(dir: &Path) -> std::io::Result<u32> {
    let mut highest = 0;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = name
            .strip_suffix(&format!(".{EXTENSION}"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            highest = highest.max(number);
        }
    }
    Ok(highest + 1)
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes_carry_their_size() {
        let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        assert_eq!(vp8_keyframe_size(&frame), Some((320, 240)));
        frame[0] |= 1; // an interframe
        assert_eq!(vp8_keyframe_size(&frame), None);
        assert_eq!(vp8_keyframe_size(&[0x10]), None);
    }

    #[test]
    fn rtp_clocks_survive_wrap_around_and_reordering() {
        let origin = Instant::now();
        let mut clock = Clock::new(u32::MAX - 90_000, 90_000, origin, origin);
        assert_eq!(clock.time_ms(u32::MAX - 90_000), 0);
        assert_eq!(clock.time_ms(u32::MAX - 45_000), 500);
        assert_eq!(clock.time_ms(44_999), 1500); // wrapped
        assert_eq!(clock.time_ms(u32::MAX - 45_000 + 9_000), 600); // late, earlier
        assert_eq!(clock.time_ms(134_999), 2500);
    }

    #[test]
    fn segments_are_numbered_after_the_highest_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_segment(dir.path()).unwrap(), 1);
        std::fs::write(dir.path().join("0001.webm"), b"x").unwrap();
        std::fs::write(dir.path().join("0007.webm"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        assert_eq!(next_segment(dir.path()).unwrap(), 8);
    }
}
