//! The little H.264 reading a recording needs: keyframes, the `avcC` record for the track
//! header, and the picture size from the SPS. Frames are AVC (4-byte length-prefixed NAL
//! units), as the `rtp` crate's depacketizer writes them with `is_avc`.

use super::webm::TrackSpec;

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

/// The NAL units of an AVC frame (stops at a malformed length).
fn nal_units(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = frame;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let unit = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(unit)
    })
}

fn nal_type(unit: &[u8]) -> u8 {
    unit.first().map_or(0, |b| b & 0x1f)
}

pub fn is_keyframe(frame: &[u8]) -> bool {
    nal_units(frame).any(|unit| nal_type(unit) == NAL_IDR)
}

/// For an IDR frame that carries its SPS and PPS: the track description.
pub fn keyframe_spec(frame: &[u8]) -> Option<TrackSpec> {
    if !is_keyframe(frame) {
        return None;
    }
    let sps = nal_units(frame).find(|u| nal_type(u) == NAL_SPS)?;
    let pps = nal_units(frame).find(|u| nal_type(u) == NAL_PPS)?;
    if sps.len() < 4 {
        return None;
    }
    // ISO/IEC 14496-15 §5.3.3.1: AVCDecoderConfigurationRecord, 4-byte NAL lengths.
    let mut avcc = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    avcc.extend_from_slice(&u16::try_from(sps.len()).ok()?.to_be_bytes());
    avcc.extend_from_slice(sps);
    avcc.push(1);
    avcc.extend_from_slice(&u16::try_from(pps.len()).ok()?.to_be_bytes());
    avcc.extend_from_slice(pps);
    // The size is informative (decoders read the SPS); 0 when it cannot be parsed.
    let (width, height) = sps_size(sps).unwrap_or((0, 0));
    Some(TrackSpec::H264 {
        width,
        height,
        avcc,
    })
}

/// Picture width and height from an SPS NAL unit (ITU-T H.264 §7.3.2.1.1), 4:2:0.
fn sps_size(sps: &[u8]) -> Option<(u16, u16)> {
    // Remove emulation prevention bytes (00 00 03).
    let mut rbsp = Vec::with_capacity(sps.len());
    let mut zeros = 0;
    for &b in sps.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits { data: &rbsp, at: 0 };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        let chroma = r.ue()?;
        if chroma == 3 {
            r.bits(1)?;
        }
        r.ue()?;
        r.ue()?;
        r.bits(1)?;
        if r.bits(1)? == 1 {
            return None; // scaling matrices: not worth parsing for an informative size
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()? {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?;
    let width_mbs = r.ue()? + 1;
    let height_units = r.ue()? + 1;
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?;
    }
    r.bits(1)?;
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bits(1)? == 1 {
        left = r.ue()?;
        right = r.ue()?;
        top = r.ue()?;
        bottom = r.ue()?;
    }
    let field = 2 - frame_mbs_only;
    let width = (width_mbs * 16).checked_sub((left + right) * 2)?;
    let height = (field * height_units * 16).checked_sub((top + bottom) * 2 * field)?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u64> {
        let byte = self.data.get(self.at / 8)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u64::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u64> {
        (0..n).try_fold(0, |acc, _| Some((acc << 1) | self.bit()?))
    }

    fn ue(&mut self) -> Option<u64> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i64> {
        let v = i64::try_from(self.ue()?).ok()?;
        Some(if v % 2 == 1 { (v + 1) / 2 } else { -(v / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A constrained-baseline SPS for 640x480 (as x264/OpenH264 write it).
    const SPS_640X480: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xf6, 0x84];

    #[test]
    fn the_sps_gives_the_picture_size() {
        assert_eq!(sps_size(SPS_640X480), Some((640, 480)));
        assert_eq!(sps_size(&[0x67]), None);
    }

    #[test]
    fn idr_frames_with_parameter_sets_describe_the_track() {
        let pps: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
        let idr: &[u8] = &[0x65, 0x88, 0x84];
        let mut frame = Vec::new();
        for unit in [SPS_640X480, pps, idr] {
            frame.extend_from_slice(&(unit.len() as u32).to_be_bytes());
            frame.extend_from_slice(unit);
        }
        let Some(TrackSpec::H264 {
            width,
            height,
            avcc,
        }) = keyframe_spec(&frame)
        else {
            panic!("no spec");
        };
        assert_eq!((width, height), (640, 480));
        assert_eq!(&avcc[..6], &[1, 0x42, 0xc0, 0x1e, 0xff, 0xe1]);
        assert!(is_keyframe(&frame));
        let delta = [0, 0, 0, 2, 0x41, 0x9a];
        assert!(!is_keyframe(&delta));
        assert_eq!(keyframe_spec(&delta), None);
    }
}
