//! A VP8 clip read from an IVF file (rtc's `IVFReader`), held in memory so the publisher
//! can loop it and jump back to its first frame (a keyframe) when asked for one.

use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use rtc::media::io::ivf_reader::IVFReader;

#[derive(Debug, Clone)]
pub struct Frame {
    pub data: Bytes,
    /// Until the next frame (the last frame gets the clip's typical frame interval).
    pub duration: Duration,
    pub keyframe: bool,
}

#[derive(Debug, Clone)]
pub struct Clip {
    pub width: u16,
    pub height: u16,
    pub frames: Vec<Frame>,
}

impl Clip {
    pub fn open(path: &std::path::Path) -> anyhow::Result<Clip> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Clip::read(std::io::BufReader::new(file))
            .with_context(|| format!("reading {}", path.display()))
    }

    /// Reads a whole IVF stream of VP8 frames. The first frame must be a keyframe.
    pub fn read(reader: impl Read) -> anyhow::Result<Clip> {
        let (mut ivf, header) = IVFReader::new(reader).context("not an IVF file")?;
        anyhow::ensure!(
            &header.four_cc == b"VP80",
            "the clip is {}, not VP8",
            String::from_utf8_lossy(&header.four_cc)
        );
        // IVF's time base: `timebase_numerator / timebase_denominator` seconds per tick.
        anyhow::ensure!(
            header.timebase_numerator > 0 && header.timebase_denominator > 0,
            "the clip has no time base"
        );
        let tick = f64::from(header.timebase_numerator) / f64::from(header.timebase_denominator);
        let mut raw = Vec::new();
        // The reader fails at the end of the stream; a truncated last frame ends it too.
        while let Ok((data, frame)) = ivf.parse_next_frame() {
            raw.push((data.freeze(), frame.timestamp));
        }
        anyhow::ensure!(!raw.is_empty(), "the clip has no frames");
        let steps: Vec<u64> = raw
            .windows(2)
            .map(|pair| pair[1].1.saturating_sub(pair[0].1))
            .collect();
        let typical = {
            let mut sorted: Vec<u64> = steps.iter().copied().filter(|s| *s > 0).collect();
            sorted.sort_unstable();
            sorted.get(sorted.len() / 2).copied().unwrap_or(1)
        };
        let frames: Vec<Frame> = raw
            .into_iter()
            .enumerate()
            .map(|(i, (data, _))| {
                let step = steps.get(i).copied().filter(|s| *s > 0).unwrap_or(typical);
                Frame {
                    keyframe: vp8_keyframe(&data),
                    data,
                    duration: Duration::from_secs_f64(step as f64 * tick),
                }
            })
            .collect();
        anyhow::ensure!(
            frames[0].keyframe,
            "the clip does not start with a keyframe"
        );
        Ok(Clip {
            width: header.width,
            height: header.height,
            frames,
        })
    }

    pub fn duration(&self) -> Duration {
        self.frames.iter().map(|f| f.duration).sum()
    }

    pub fn fps(&self) -> f64 {
        self.frames.len() as f64 / self.duration().as_secs_f64().max(1e-9)
    }

    /// Average bitrate in bits per second.
    pub fn bitrate(&self) -> f64 {
        let bytes: usize = self.frames.iter().map(|f| f.data.len()).sum();
        bytes as f64 * 8.0 / self.duration().as_secs_f64().max(1e-9)
    }
}

/// A VP8 frame is a keyframe when bit 0 of its frame tag is clear (RFC 6386 9.1); a
/// keyframe's tag is followed by the start code 9d 01 2a.
fn vp8_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|tag| tag & 0x01 == 0)
        && frame.get(3..6) == Some(&[0x9d, 0x01, 0x2a][..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ivf(fourcc: &[u8; 4], rate: u32, scale: u32, frames: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"DKIF");
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&32u16.to_le_bytes());
        out.extend_from_slice(fourcc);
        out.extend_from_slice(&1280u16.to_le_bytes());
        out.extend_from_slice(&720u16.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&scale.to_le_bytes());
        out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for (timestamp, data) in frames {
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&timestamp.to_le_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    const KEY: &[u8] = &[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02];
    const INTER: &[u8] = &[0x31, 0x02, 0x00, 0x11, 0x22];

    #[test]
    fn reads_frames_keyframes_and_durations() {
        let bytes = ivf(
            b"VP80",
            30,
            1,
            &[(0, KEY), (1, INTER), (2, INTER), (4, KEY)],
        );
        let clip = Clip::read(&bytes[..]).expect("valid clip");
        assert_eq!((clip.width, clip.height), (1280, 720));
        let keys: Vec<bool> = clip.frames.iter().map(|f| f.keyframe).collect();
        assert_eq!(keys, [true, false, false, true]);
        let ms: Vec<u128> = clip.frames.iter().map(|f| f.duration.as_millis()).collect();
        // 1/30 s steps; the gap of two ticks; the last frame gets the typical step.
        assert_eq!(ms, [33, 33, 66, 33]);
        assert_eq!(&clip.frames[1].data[..], INTER);
        // Durations are whole nanoseconds: compare to a part in a million.
        assert!((clip.fps() / (4.0 / (5.0 / 30.0)) - 1.0).abs() < 1e-6);
        let bits = (2 * KEY.len() + 2 * INTER.len()) as f64 * 8.0;
        assert!((clip.bitrate() / (bits / (5.0 / 30.0)) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn millisecond_time_bases_work_too() {
        let bytes = ivf(b"VP80", 1000, 1, &[(0, KEY), (40, INTER), (80, INTER)]);
        let clip = Clip::read(&bytes[..]).expect("valid clip");
        assert!(clip.frames.iter().all(|f| f.duration.as_millis() == 40));
    }

    #[test]
    fn rejects_other_codecs_a_late_keyframe_and_garbage() {
        assert!(Clip::read(&ivf(b"VP90", 30, 1, &[(0, KEY)])[..]).is_err());
        assert!(Clip::read(&ivf(b"VP80", 30, 1, &[(0, INTER), (1, KEY)])[..]).is_err());
        assert!(Clip::read(&ivf(b"VP80", 30, 1, &[])[..]).is_err());
        assert!(Clip::read(&b"RIFF and so on, not an ivf file"[..]).is_err());
    }

    #[test]
    fn a_truncated_last_frame_ends_the_clip() {
        let mut bytes = ivf(b"VP80", 30, 1, &[(0, KEY), (1, INTER)]);
        bytes.truncate(bytes.len() - 2);
        let clip = Clip::read(&bytes[..]).expect("first frame survives");
        assert_eq!(clip.frames.len(), 1);
    }
}
