//! Groups a video track's RTP packets into frames before they are fanned out.
//!
//! Each item in the room's channel wakes every viewer task, and each packet a viewer
//! writes wakes its peer's driver and costs a `sendto`. Handing viewers a whole frame at
//! once makes that one wake-up per frame per viewer, and lets the driver send the frame's
//! packets in one go. It costs no latency: a frame cannot be decoded before its last
//! packet, which is the one that completes the batch (RTP marker bit).
//!
//! A frame ends at its marker bit, or, if the marker packet was lost, when a packet of
//! another frame (another timestamp) arrives. Pure: no clock, no IO.

/// A keyframe at high bitrates can be many packets; beyond this a frame goes out in parts.
pub const MAX_BATCH: usize = 64;

/// Consecutive packets of one frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch<T> {
    pub packets: Vec<T>,
    pub timestamp: u32,
    /// One of the packets begins a keyframe.
    pub keyframe: bool,
}

/// Collects packets until their frame is complete.
#[derive(Debug)]
pub struct FrameBatcher<T> {
    current: Option<Batch<T>>,
}

impl<T> Default for FrameBatcher<T> {
    fn default() -> Self {
        Self { current: None }
    }
}

impl<T> FrameBatcher<T> {
    /// Takes the next packet; returns what is complete now, oldest first (at most two
    /// batches: a frame whose marker was lost, then the one this packet completes).
    pub fn push(
        &mut self,
        packet: T,
        timestamp: u32,
        marker: bool,
        keyframe: bool,
    ) -> Vec<Batch<T>> {
        let mut done = Vec::new();
        if self
            .current
            .as_ref()
            .is_some_and(|batch| batch.timestamp != timestamp)
        {
            done.extend(self.current.take());
        }
        let batch = self.current.get_or_insert_with(|| Batch {
            packets: Vec::new(),
            timestamp,
            keyframe: false,
        });
        batch.packets.push(packet);
        batch.keyframe |= keyframe;
        if marker || batch.packets.len() >= MAX_BATCH {
            done.extend(self.current.take());
        }
        done
    }

    /// What is held (the track ended mid-frame).
    pub fn flush(&mut self) -> Option<Batch<T>> {
        self.current.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_goes_out_at_its_marker() {
        let mut batcher = FrameBatcher::default();
        assert!(batcher.push(1, 100, false, true).is_empty());
        assert!(batcher.push(2, 100, false, false).is_empty());
        let done = batcher.push(3, 100, true, false);
        assert_eq!(
            done,
            vec![Batch {
                packets: vec![1, 2, 3],
                timestamp: 100,
                keyframe: true
            }]
        );
        let single = batcher.push(4, 200, true, false);
        assert_eq!(single[0].packets, vec![4]);
        assert!(!single[0].keyframe);
        assert!(batcher.flush().is_none());
    }

    #[test]
    fn a_lost_marker_ends_the_frame_at_the_next_timestamp() {
        let mut batcher = FrameBatcher::default();
        batcher.push(1, 100, false, false);
        let done = batcher.push(2, 200, true, false);
        assert_eq!(done.len(), 2);
        assert_eq!((done[0].timestamp, &done[0].packets), (100, &vec![1]));
        assert_eq!((done[1].timestamp, &done[1].packets), (200, &vec![2]));
    }

    #[test]
    fn a_huge_frame_goes_out_in_parts_and_the_rest_is_flushed_at_the_end() {
        let mut batcher = FrameBatcher::default();
        let mut sent = Vec::new();
        for i in 0..MAX_BATCH + 3 {
            sent.extend(batcher.push(i, 7, false, i == 0));
        }
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].packets.len(), MAX_BATCH);
        assert!(sent[0].keyframe);
        let rest = batcher.flush().expect("held packets");
        assert_eq!(rest.packets, vec![MAX_BATCH, MAX_BATCH + 1, MAX_BATCH + 2]);
        assert!(!rest.keyframe);
    }
}
