//! The publisher's current group of pictures, so a joining viewer decodes at once.
//!
//! Waiting for the publisher to answer a PLI costs a joining viewer a round trip plus an
//! encoder's reaction time (hundreds of milliseconds with some encoders, seconds with
//! OBS configured for fixed keyframe intervals). Instead, the room keeps every video
//! packet since the last keyframe began, and a viewer whose DTLS is up gets that run
//! first, then the live packets: the first frame is decodable as soon as the
//! connection is. The later frames of the run reference only frames in it, so the
//! decoder never sees a dangling reference.
//!
//! Pure: the entries (the SFU's frames, see `frames`) are opaque to [`GopCache`];
//! [`starts_keyframe`] reads only the payload descriptor (VP8, RFC 7741) or NAL header
//! (H.264, RFC 6184).

/// The longest run kept, in entries. Beyond it (a publisher with sparse keyframes), the
/// cache gives up until the next keyframe rather than hold more than a viewer could use.
pub const MAX_ENTRIES: usize = 512;

/// The packets since the publisher's last keyframe began.
#[derive(Debug)]
pub struct GopCache<T> {
    packets: Vec<T>,
    /// RTP timestamp of the keyframe the run starts with.
    keyframe_ts: Option<u32>,
    last_ts: u32,
}

impl<T> Default for GopCache<T> {
    fn default() -> Self {
        Self {
            packets: Vec::new(),
            keyframe_ts: None,
            last_ts: 0,
        }
    }
}

impl<T: Clone> GopCache<T> {
    /// Takes the next packet of the track. `keyframe`: the packet starts a keyframe
    /// (or carries its parameter sets: H.264's SPS/PPS and IDR share one timestamp, and
    /// they all belong to the run).
    pub fn push(&mut self, packet: T, timestamp: u32, keyframe: bool) {
        if keyframe && self.keyframe_ts != Some(timestamp) {
            self.packets.clear();
            self.keyframe_ts = Some(timestamp);
        }
        if self.keyframe_ts.is_none() {
            return;
        }
        if self.packets.len() >= MAX_ENTRIES {
            self.clear();
            return;
        }
        self.packets.push(packet);
        self.last_ts = timestamp;
    }

    /// Forgets the run (the publisher went away: its frames mean nothing to the next one).
    pub fn clear(&mut self) {
        self.packets = Vec::new();
        self.keyframe_ts = None;
    }

    /// The run so far: empty when no keyframe has been seen since the last clear.
    pub fn entries(&self) -> &[T] {
        &self.packets
    }

    /// How much media the run spans, in RTP clock ticks.
    pub fn span(&self) -> u32 {
        self.keyframe_ts
            .map_or(0, |first| self.last_ts.wrapping_sub(first))
    }
}

/// A viewer whose queue overflowed has lost video and cannot decode again before the
/// next keyframe: the delta frames in between are work for the server and nothing for
/// the viewer, and under overload the server has none to spare, so the gate drops them.
#[derive(Debug, Default)]
pub struct ResyncGate {
    waiting: bool,
}

/// What to do with a video frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Forward,
    /// The keyframe that ends a wait: forward it and close the sequence gap, so the
    /// viewer does not ask for packets that were dropped on purpose.
    Resume,
    Drop,
}

impl ResyncGate {
    /// The viewer lost frames (its queue overflowed).
    pub fn lost(&mut self) {
        self.waiting = true;
    }

    /// Whether to forward the next video frame; `keyframe`: the frame starts one.
    pub fn admit(&mut self, keyframe: bool) -> Admit {
        match (self.waiting, keyframe) {
            (false, _) => Admit::Forward,
            (true, true) => {
                self.waiting = false;
                Admit::Resume
            }
            (true, false) => Admit::Drop,
        }
    }
}

/// Whether an RTP payload of `mime` (e.g. `video/VP8`) begins a keyframe.
pub fn starts_keyframe(mime: &str, payload: &[u8]) -> bool {
    if mime.eq_ignore_ascii_case("video/vp8") {
        vp8(payload)
    } else if mime.eq_ignore_ascii_case("video/h264") {
        h264(payload)
    } else {
        false
    }
}

/// VP8: the start of partition 0 whose frame tag has the (inverse) key-frame bit clear.
fn vp8(payload: &[u8]) -> bool {
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
    payload.get(i).is_some_and(|tag| tag & 0x01 == 0)
}

/// H.264: an IDR slice or a parameter set (SPS 7, PPS 8), alone, first in a STAP-A, or
/// in the first fragment of an FU-A.
fn h264(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let nal = match first & 0x1f {
        24 => payload.get(3).map(|b| b & 0x1f),
        28 => payload
            .get(1)
            .filter(|fu| **fu & 0x80 != 0)
            .map(|fu| fu & 0x1f),
        other => Some(other),
    };
    matches!(nal, Some(5 | 7 | 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes_only() {
        assert!(starts_keyframe("video/VP8", &[0x10, 0x50, 0x02, 0x00]));
        assert!(!starts_keyframe("video/VP8", &[0x10, 0x51, 0x02, 0x00]));
        // X=1 with a 15-bit picture id.
        assert!(starts_keyframe(
            "video/vp8",
            &[0x90, 0x80, 0x81, 0x23, 0x50]
        ));
        // A continuation packet of the same frame.
        assert!(!starts_keyframe("video/VP8", &[0x00, 0x50, 0x02]));
        assert!(!starts_keyframe("video/VP8", &[]));
    }

    #[test]
    fn h264_idr_parameter_sets_and_fragments() {
        assert!(starts_keyframe("video/H264", &[0x65, 0x88]));
        assert!(starts_keyframe("video/H264", &[0x67, 0x42]));
        assert!(starts_keyframe("video/H264", &[0x68, 0xce]));
        assert!(!starts_keyframe("video/H264", &[0x41, 0x9a]));
        assert!(starts_keyframe("video/H264", &[0x78, 0x00, 0x10, 0x67]));
        assert!(starts_keyframe("video/H264", &[0x7c, 0x85, 0x88]));
        assert!(!starts_keyframe("video/H264", &[0x7c, 0x05, 0x88]));
        assert!(!starts_keyframe("audio/opus", &[0x65]));
    }

    #[test]
    fn the_run_starts_at_the_last_keyframe() {
        let mut cache = GopCache::default();
        cache.push(1, 100, false); // before any keyframe: useless to a new decoder
        assert!(cache.entries().is_empty());
        cache.push(2, 200, true);
        cache.push(3, 200, false);
        cache.push(4, 300, false);
        assert_eq!(cache.entries(), &[2, 3, 4]);
        assert_eq!(cache.span(), 100);
        cache.push(5, 400, true);
        cache.push(6, 500, false);
        assert_eq!(cache.entries(), &[5, 6]);
    }

    #[test]
    fn parameter_sets_and_idr_of_one_access_unit_stay_together() {
        let mut cache = GopCache::default();
        cache.push("sps", 900, true);
        cache.push("pps", 900, true);
        cache.push("idr", 900, true);
        cache.push("p", 3900, false);
        assert_eq!(cache.entries(), &["sps", "pps", "idr", "p"]);
    }

    #[test]
    fn an_overlong_run_is_dropped_until_the_next_keyframe() {
        let mut cache = GopCache::default();
        cache.push(0, 0, true);
        for i in 1..=MAX_ENTRIES {
            cache.push(i, 1, false);
        }
        assert!(cache.entries().is_empty());
        cache.push(7, 2, false);
        assert!(cache.entries().is_empty());
        cache.push(8, 3, true);
        assert_eq!(cache.entries(), &[8]);
        cache.clear();
        assert!(cache.entries().is_empty());
        assert_eq!(cache.span(), 0);
    }

    #[test]
    fn after_a_loss_only_the_next_keyframe_resumes_the_video() {
        let mut gate = ResyncGate::default();
        assert_eq!(gate.admit(false), Admit::Forward);
        assert_eq!(gate.admit(true), Admit::Forward);
        gate.lost();
        assert_eq!(gate.admit(false), Admit::Drop);
        assert_eq!(gate.admit(false), Admit::Drop);
        assert_eq!(gate.admit(true), Admit::Resume);
        assert_eq!(gate.admit(false), Admit::Forward);
    }
}
