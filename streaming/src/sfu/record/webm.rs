//! A WebM (Matroska) file written as it is recorded, readable at every moment.
//!
//! Elements are serialised by `webm-iterable` (a maintained, pure-Rust EBML writer with the
//! Matroska specification: no C++ libwebm to build in CI); this file only decides the
//! layout and patches the few values known at the end:
//!
//! ```text
//! EBML header
//! Segment (size written as "unknown", patched on finish)
//!   [reserved region] Info (no Duration) + Void     -> on finish: SeekHead + Info (Duration) + Void
//!   Tracks
//!   Cluster, Cluster, ...                            one write per cluster (<= ~2 s of media)
//!   Cues                                             written on finish
//! ```
//!
//! Until [`WebmFile::finish`] the file is a live WebM stream (unknown segment size, no
//! duration, no cues), which Chromium and FFmpeg play; a process that dies mid-recording
//! loses at most the cluster being assembled. `finish` makes it an ordinary seekable file.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

use webm_iterable::WebmWriter;
use webm_iterable::matroska_spec::{Master, MatroskaSpec, SimpleBlock};
use webm_iterable::{WriteOptions, matroska_spec::EbmlTag as _};

/// Bytes kept after the segment header for SeekHead + Info, rewritten on finish.
const HEADER_REGION: usize = 256;
/// A new cluster starts at a video keyframe once the current one is this old...
const CLUSTER_MIN_MS: u64 = 1_000;
/// ... and in any case at this age (bounds what a crash loses and the block offsets).
const CLUSTER_MAX_MS: u64 = 2_000;
/// Matroska timestamps are in units of TimestampScale nanoseconds: milliseconds here.
const TIMESTAMP_SCALE_NS: u64 = 1_000_000;
/// Segment/SeekHead/Seek/SeekPosition.
const SEEK_POSITION_ID: u64 = 0x53AC;
/// The segment size as written by the EBML writer for "unknown": 8 bytes, all value bits set.
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

/// A track of the file. Track numbers are the position in the list, from 1.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackSpec {
    Vp8 {
        width: u16,
        height: u16,
    },
    /// H.264 with its AVCDecoderConfigurationRecord (`avcC`); frames are length-prefixed.
    H264 {
        width: u16,
        height: u16,
        avcc: Vec<u8>,
    },
    Opus {
        channels: u8,
    },
}

impl TrackSpec {
    fn is_video(&self) -> bool {
        !matches!(self, TrackSpec::Opus { .. })
    }

    pub fn codec_name(&self) -> &'static str {
        match self {
            TrackSpec::Vp8 { .. } => "vp8",
            TrackSpec::H264 { .. } => "h264",
            TrackSpec::Opus { .. } => "opus",
        }
    }
}

/// A WebM file being written.
pub struct WebmFile {
    file: File,
    written: u64,
    /// Where the segment's 8-byte size field is.
    segment_size_at: u64,
    /// Where the segment's children start (positions in SeekHead and Cues count from here).
    segment_start: u64,
    tracks_at: u64,
    video_track: Option<u64>,
    cluster: Option<Cluster>,
    cues: Vec<(u64, u64)>,
    end_ms: u64,
}

struct Cluster {
    timestamp: u64,
    starts_with_keyframe: bool,
    blocks: Vec<MatroskaSpec>,
}

impl WebmFile {
    /// Creates `path` (which must not exist) and writes the header for `tracks`.
    pub fn create(path: &Path, tracks: &[TrackSpec]) -> io::Result<WebmFile> {
        let file = File::options().write(true).create_new(true).open(path)?;
        let mut webm = WebmFile {
            file,
            written: 0,
            segment_size_at: 0,
            segment_start: 0,
            tracks_at: 0,
            video_track: tracks
                .iter()
                .position(TrackSpec::is_video)
                .map(|i| i as u64 + 1),
            cluster: None,
            cues: Vec::new(),
            end_ms: 0,
        };
        let header = serialize(None, |w| {
            w.write(&MatroskaSpec::Ebml(Master::Start))?;
            w.write(&MatroskaSpec::EbmlVersion(1))?;
            w.write(&MatroskaSpec::EbmlReadVersion(1))?;
            w.write(&MatroskaSpec::EbmlMaxIdLength(4))?;
            w.write(&MatroskaSpec::EbmlMaxSizeLength(8))?;
            // "webm" also for H.264: Chromium plays it (its own MediaRecorder writes such
            // files); FFmpeg reads any Matroska.
            w.write(&MatroskaSpec::DocType("webm".into()))?;
            w.write(&MatroskaSpec::DocTypeVersion(4))?;
            w.write(&MatroskaSpec::DocTypeReadVersion(2))?;
            w.write(&MatroskaSpec::Ebml(Master::End))?;
            w.write_advanced(
                &MatroskaSpec::Segment(Master::Start),
                WriteOptions::is_unknown_sized_element(),
            )
        })?;
        webm.append(&header)?;
        webm.segment_start = webm.written;
        webm.segment_size_at = webm.written - 8;
        // Info without a duration, padded to the reserved region.
        let info = info(None)?;
        let region = pad_to(info, HEADER_REGION)?;
        webm.append(&region)?;
        webm.tracks_at = webm.written - webm.segment_start;
        let tracks = tracks_element(tracks)?;
        webm.append(&tracks)?;
        Ok(webm)
    }

    /// Adds one frame of `track` (1-based) at `time_ms` from the start of the file.
    /// Times must not go backwards by more than the current cluster's start; earlier ones
    /// are clamped to it.
    pub fn write_frame(
        &mut self,
        track: u64,
        time_ms: u64,
        keyframe: bool,
        data: &[u8],
    ) -> io::Result<()> {
        let is_video = Some(track) == self.video_track;
        let start_new = match &self.cluster {
            None => true,
            Some(cluster) => {
                let age = time_ms.saturating_sub(cluster.timestamp);
                age >= CLUSTER_MAX_MS || (is_video && keyframe && age >= CLUSTER_MIN_MS)
            }
        };
        if start_new {
            self.close_cluster()?;
            self.cluster = Some(Cluster {
                timestamp: time_ms,
                starts_with_keyframe: self.video_track.is_none() || (is_video && keyframe),
                blocks: Vec::new(),
            });
        }
        let Some(cluster) = self.cluster.as_mut() else {
            return Ok(());
        };
        let time_ms = time_ms.max(cluster.timestamp);
        // < CLUSTER_MAX_MS + one frame, far below i16::MAX.
        let relative = i16::try_from(time_ms - cluster.timestamp).unwrap_or(i16::MAX);
        let block = SimpleBlock::new_uncheked(data, track, relative, false, None, false, keyframe);
        cluster.blocks.push(block.into());
        self.end_ms = self.end_ms.max(time_ms);
        Ok(())
    }

    /// Bytes written so far (the current cluster not included).
    pub fn bytes(&self) -> u64 {
        self.written
    }

    /// Writes the last cluster, the cues, the duration and the segment size; returns the
    /// file's size. `duration_ms` is the end of the last frame.
    pub fn finish(mut self, duration_ms: u64) -> io::Result<u64> {
        self.close_cluster()?;
        let cues_at = self.written - self.segment_start;
        let has_cues = !self.cues.is_empty();
        if has_cues {
            let track = self.video_track.unwrap_or(1);
            let cues = std::mem::take(&mut self.cues);
            let bytes = serialize(Some(()), |w| {
                w.write(&MatroskaSpec::Cues(Master::Start))?;
                for (time, position) in &cues {
                    w.write(&MatroskaSpec::CuePoint(Master::Start))?;
                    w.write(&MatroskaSpec::CueTime(*time))?;
                    w.write(&MatroskaSpec::CueTrackPositions(Master::Start))?;
                    w.write(&MatroskaSpec::CueTrack(track))?;
                    w.write(&MatroskaSpec::CueClusterPosition(*position))?;
                    w.write(&MatroskaSpec::CueTrackPositions(Master::End))?;
                    w.write(&MatroskaSpec::CuePoint(Master::End))?;
                }
                w.write(&MatroskaSpec::Cues(Master::End))
            })?;
            self.append(&bytes)?;
        }
        // The header region: a SeekHead (Info, Tracks, Cues) and the Info with its duration.
        let mut seeks = vec![(MatroskaSpec::Tracks(Master::Start), self.tracks_at)];
        if has_cues {
            seeks.push((MatroskaSpec::Cues(Master::Start), cues_at));
        }
        // The SeekHead comes first in the region; its length does not depend on the
        // positions (fixed 8 bytes each), so the Info's position is known.
        let seek_head_len = seek_head(&seeks, 0)?.len() as u64;
        let seek_head = seek_head(&seeks, seek_head_len)?;
        let mut region = seek_head;
        region.extend(info(Some(duration_ms.max(self.end_ms) as f64))?);
        let region = pad_to(region, HEADER_REGION)?;
        self.file.seek(SeekFrom::Start(self.segment_start))?;
        self.file.write_all(&region)?;
        let size = (self.written - self.segment_start) | (1 << 56);
        self.file.seek(SeekFrom::Start(self.segment_size_at))?;
        self.file.write_all(&size.to_be_bytes())?;
        self.file.sync_all()?;
        Ok(self.written)
    }

    fn close_cluster(&mut self) -> io::Result<()> {
        let Some(cluster) = self.cluster.take() else {
            return Ok(());
        };
        if cluster.blocks.is_empty() {
            return Ok(());
        }
        let position = self.written - self.segment_start;
        let bytes = serialize(Some(()), |w| {
            w.write(&MatroskaSpec::Cluster(Master::Start))?;
            w.write(&MatroskaSpec::Timestamp(cluster.timestamp))?;
            for block in &cluster.blocks {
                w.write(block)?;
            }
            w.write(&MatroskaSpec::Cluster(Master::End))
        })?;
        self.append(&bytes)?;
        if cluster.starts_with_keyframe {
            self.cues.push((cluster.timestamp, position));
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

type Writer = WebmWriter<Vec<u8>>;

/// Serialises elements into bytes. With `inside_segment`, the writer first opens a
/// Segment (so that the Matroska path checks accept its children) whose 12 header bytes
/// are cut off again.
fn serialize(
    inside_segment: Option<()>,
    write: impl FnOnce(&mut Writer) -> Result<(), webm_iterable::errors::TagWriterError>,
) -> io::Result<Vec<u8>> {
    let mut writer = WebmWriter::new(Vec::new());
    let skip = if inside_segment.is_some() {
        writer
            .write_advanced(
                &MatroskaSpec::Segment(Master::Start),
                WriteOptions::is_unknown_sized_element(),
            )
            .map_err(io::Error::other)?;
        4 + UNKNOWN_SIZE.len()
    } else {
        0
    };
    write(&mut writer).map_err(io::Error::other)?;
    let mut bytes = writer.into_inner().map_err(io::Error::other)?;
    bytes.drain(..skip);
    Ok(bytes)
}

fn info(duration_ms: Option<f64>) -> io::Result<Vec<u8>> {
    serialize(Some(()), |w| {
        w.write(&MatroskaSpec::Info(Master::Start))?;
        w.write(&MatroskaSpec::TimestampScale(TIMESTAMP_SCALE_NS))?;
        if let Some(duration) = duration_ms {
            w.write(&MatroskaSpec::Duration(duration))?;
        }
        w.write(&MatroskaSpec::MuxingApp("gongkai".into()))?;
        w.write(&MatroskaSpec::WritingApp("gongkai".into()))?;
        w.write(&MatroskaSpec::Info(Master::End))
    })
}

fn seek_head(seeks: &[(MatroskaSpec, u64)], info_at: u64) -> io::Result<Vec<u8>> {
    let info_id = MatroskaSpec::Info(Master::Start).get_id();
    let entries: Vec<(u64, u64)> = std::iter::once((info_id, info_at))
        .chain(seeks.iter().map(|(tag, at)| (tag.get_id(), *at)))
        .collect();
    serialize(Some(()), |w| {
        w.write(&MatroskaSpec::SeekHead(Master::Start))?;
        for (id, at) in &entries {
            w.write(&MatroskaSpec::Seek(Master::Start))?;
            let id_bytes: Vec<u8> = id
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            w.write(&MatroskaSpec::SeekID(id_bytes))?;
            // Fixed 8 bytes, so the SeekHead's length does not depend on the values.
            w.write_raw(SEEK_POSITION_ID, &at.to_be_bytes())?;
            w.write(&MatroskaSpec::Seek(Master::End))?;
        }
        w.write(&MatroskaSpec::SeekHead(Master::End))
    })
}

fn tracks_element(tracks: &[TrackSpec]) -> io::Result<Vec<u8>> {
    serialize(Some(()), |w| {
        w.write(&MatroskaSpec::Tracks(Master::Start))?;
        for (index, track) in tracks.iter().enumerate() {
            let number = index as u64 + 1;
            w.write(&MatroskaSpec::TrackEntry(Master::Start))?;
            w.write(&MatroskaSpec::TrackNumber(number))?;
            w.write(&MatroskaSpec::TrackUID(number))?;
            match track {
                TrackSpec::Vp8 { width, height } => {
                    w.write(&MatroskaSpec::TrackType(1))?;
                    w.write(&MatroskaSpec::CodecID("V_VP8".into()))?;
                    video(w, *width, *height)?;
                }
                TrackSpec::H264 {
                    width,
                    height,
                    avcc,
                } => {
                    w.write(&MatroskaSpec::TrackType(1))?;
                    w.write(&MatroskaSpec::CodecID("V_MPEG4/ISO/AVC".into()))?;
                    w.write(&MatroskaSpec::CodecPrivate(avcc.clone()))?;
                    video(w, *width, *height)?;
                }
                TrackSpec::Opus { channels } => {
                    w.write(&MatroskaSpec::TrackType(2))?;
                    w.write(&MatroskaSpec::CodecID("A_OPUS".into()))?;
                    w.write(&MatroskaSpec::CodecPrivate(opus_head(*channels)))?;
                    // 80 ms pre-roll after a seek, as the WebM guidelines ask for Opus.
                    w.write(&MatroskaSpec::SeekPreRoll(80_000_000))?;
                    w.write(&MatroskaSpec::CodecDelay(0))?;
                    w.write(&MatroskaSpec::Audio(Master::Start))?;
                    w.write(&MatroskaSpec::SamplingFrequency(48_000.0))?;
                    w.write(&MatroskaSpec::Channels(u64::from(*channels)))?;
                    w.write(&MatroskaSpec::Audio(Master::End))?;
                }
            }
            w.write(&MatroskaSpec::TrackEntry(Master::End))?;
        }
        w.write(&MatroskaSpec::Tracks(Master::End))
    })
}

fn video(
    w: &mut Writer,
    width: u16,
    height: u16,
) -> Result<(), webm_iterable::errors::TagWriterError> {
    w.write(&MatroskaSpec::Video(Master::Start))?;
    w.write(&MatroskaSpec::PixelWidth(u64::from(width)))?;
    w.write(&MatroskaSpec::PixelHeight(u64::from(height)))?;
    w.write(&MatroskaSpec::Video(Master::End))
}

/// RFC 7845 §5.1 identification header (channel mapping family 0).
fn opus_head(channels: u8) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(channels);
    head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: RTP Opus starts decoded
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // mapping family
    head
}

/// Appends a Void element so that `bytes` fills exactly `len` bytes.
fn pad_to(mut bytes: Vec<u8>, len: usize) -> io::Result<Vec<u8>> {
    const VOID_ID: u8 = 0xEC;
    let free = len
        .checked_sub(bytes.len())
        .ok_or_else(|| io::Error::other("header region overflow"))?;
    match free {
        0 => {}
        // ID + 1-byte size + up to 126 bytes.
        2..=128 => {
            bytes.push(VOID_ID);
            bytes.push(0x80 | (free - 2) as u8);
            bytes.resize(len, 0);
        }
        // ID + 8-byte size.
        129.. => {
            bytes.push(VOID_ID);
            bytes.extend_from_slice(&(((free - 9) as u64) | (1 << 56)).to_be_bytes());
            bytes.resize(len, 0);
        }
        _ => return Err(io::Error::other("header region off by one byte")),
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use webm_iterable::WebmIterator;

    fn tags(path: &Path) -> Vec<(MatroskaSpec, usize)> {
        let file = File::open(path).unwrap();
        let mut iterator = WebmIterator::new(file, &[]);
        let mut out = Vec::new();
        while let Some(tag) = iterator.next() {
            let tag = tag.unwrap();
            out.push((tag, iterator.last_emitted_tag_offset()));
        }
        out
    }

    /// 3 s of 30 fps video (keyframe every second) and 20 ms audio.
    fn write_media(webm: &mut WebmFile) {
        for ms in (0..3000).step_by(20) {
            if ms % 33 < 20 {
                let frame = ms / 33;
                webm.write_frame(1, ms, frame % 30 == 0, &[0u8; 100])
                    .unwrap();
            }
            webm.write_frame(2, ms, true, &[1u8; 40]).unwrap();
        }
    }

    const TRACKS: &[TrackSpec] = &[
        TrackSpec::Vp8 {
            width: 320,
            height: 240,
        },
        TrackSpec::Opus { channels: 2 },
    ];

    #[test]
    fn a_finished_file_has_duration_cues_and_a_seek_head_that_points_right() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0001.webm");
        let mut webm = WebmFile::create(&path, TRACKS).unwrap();
        write_media(&mut webm);
        let size = webm.finish(3000).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert!(WebmFile::create(&path, TRACKS).is_err(), "never overwrites");

        let tags = tags(&path);
        let duration = tags.iter().find_map(|(t, _)| match t {
            MatroskaSpec::Duration(d) => Some(*d),
            _ => None,
        });
        assert_eq!(duration, Some(3000.0));
        let count = |f: fn(&MatroskaSpec) -> bool| tags.iter().filter(|(t, _)| f(t)).count();
        assert_eq!(
            count(|t| matches!(t, MatroskaSpec::SimpleBlock(_))),
            150 + 91
        );
        assert_eq!(
            count(|t| matches!(t, MatroskaSpec::CuePoint(Master::Start))),
            3
        );
        assert_eq!(
            count(|t| matches!(t, MatroskaSpec::Cluster(Master::Start))),
            3
        );
        // The segment's size is known, and the SeekHead's positions land on the elements.
        let segment_start = tags
            .iter()
            .find(|(t, _)| matches!(t, MatroskaSpec::Segment(Master::Start)))
            .map(|(_, at)| *at + 12)
            .unwrap();
        let size_field = &bytes[segment_start - 8..segment_start];
        assert_eq!(
            u64::from_be_bytes(size_field.try_into().unwrap()) & !(1 << 56),
            (bytes.len() - segment_start) as u64
        );
        let ids: Vec<Vec<u8>> = tags
            .iter()
            .filter_map(|(t, _)| match t {
                MatroskaSpec::SeekID(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let positions: Vec<u64> = tags
            .iter()
            .filter_map(|(t, _)| match t {
                MatroskaSpec::SeekPosition(p) => Some(*p),
                _ => None,
            })
            .collect();
        assert_eq!(ids.len(), 3);
        for (id, position) in ids.iter().zip(&positions) {
            let at = segment_start + *position as usize;
            assert_eq!(&bytes[at..at + id.len()], id.as_slice());
        }
    }

    #[test]
    fn an_unfinished_file_is_a_readable_live_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0001.webm");
        let mut webm = WebmFile::create(&path, TRACKS).unwrap();
        write_media(&mut webm);
        drop(webm); // the process died: the last cluster is lost, the rest reads
        let tags = tags(&path);
        assert!(
            !tags
                .iter()
                .any(|(t, _)| matches!(t, MatroskaSpec::Duration(_)))
        );
        assert!(
            tags.iter()
                .any(|(t, _)| matches!(t, MatroskaSpec::CodecID(c) if c == "V_VP8"))
        );
        let clusters = tags
            .iter()
            .filter(|(t, _)| matches!(t, MatroskaSpec::Cluster(Master::Start)))
            .count();
        assert_eq!(clusters, 2);
    }
}
