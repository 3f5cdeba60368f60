//! The bounded buffer of recent logged broadcasts that `since` reconnects replay from.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Frame;

/// The last `capacity` logged broadcasts, contiguous in seq.
///
/// `floor` is the smallest `since` that can be served exactly: the seq just before the
/// oldest buffered frame, or the seq at which the log was (re)started. Anything older, or
/// newer than the last seq (a client from a previous incarnation of the room), gets a
/// snapshot instead: never a silent gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayBuffer {
    capacity: usize,
    floor: u64,
    frames: VecDeque<(u64, Frame)>,
}

/// What a reconnecting client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The frames it missed, in seq order (possibly none).
    Frames(Vec<Frame>),
    /// Too far behind (or unknown seq): send a snapshot.
    Snapshot,
}

impl ReplayBuffer {
    /// An empty buffer whose log continues after `last_seq`.
    pub fn new(capacity: usize, last_seq: u64) -> ReplayBuffer {
        ReplayBuffer {
            capacity: capacity.max(1),
            floor: last_seq,
            frames: VecDeque::with_capacity(capacity.clamp(1, 4096)),
        }
    }

    /// The last seq pushed (or the starting seq).
    pub fn last_seq(&self) -> u64 {
        self.frames.back().map_or(self.floor, |(seq, _)| *seq)
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Appends the frame of broadcast `seq`, evicting the oldest when full.
    /// The room only ever pushes `last_seq() + 1`; anything else restarts the buffer at
    /// `seq - 1` so that a replay can never span a hole.
    pub fn push(&mut self, seq: u64, frame: Frame) {
        if seq != self.last_seq() + 1 {
            self.restart(seq.saturating_sub(1));
        }
        if self.frames.len() == self.capacity {
            let evicted = self.frames.pop_front();
            self.floor = evicted.map_or(self.floor, |(seq, _)| seq);
        }
        self.frames.push_back((seq, frame));
    }

    /// The buffered frame of broadcast `seq`, if it is still here.
    pub fn get(&self, seq: u64) -> Option<&Frame> {
        let first = self.frames.front()?.0;
        let at = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.frames.get(at).map(|(_, frame)| frame)
    }

    /// Forgets everything: the log continues after `last_seq`.
    pub fn restart(&mut self, last_seq: u64) {
        self.frames.clear();
        self.floor = last_seq;
    }

    /// What a client that has seen everything up to `since` needs.
    pub fn since(&self, since: u64) -> Replay {
        if since < self.floor || since > self.last_seq() {
            return Replay::Snapshot;
        }
        // The buffer is contiguous, so the frames after `since` start at a known offset.
        let skip = (since - self.floor) as usize;
        Replay::Frames(
            self.frames
                .iter()
                .skip(skip)
                .map(|(_, f)| f.clone())
                .collect(),
        )
    }

    pub(crate) fn to_wire(&self) -> ReplayWire {
        ReplayWire {
            capacity: self.capacity,
            floor: self.floor,
            frames: self
                .frames
                .iter()
                .map(|(seq, f)| (*seq, f.as_str().to_owned()))
                .collect(),
        }
    }

    pub(crate) fn from_wire(wire: ReplayWire, capacity: usize) -> ReplayBuffer {
        let mut buffer = ReplayBuffer::new(capacity, wire.floor);
        for (seq, text) in wire.frames {
            buffer.push(seq, Frame::from_json(text));
        }
        buffer
    }
}

/// The buffer as it crosses the bus in a state sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplayWire {
    pub capacity: usize,
    pub floor: u64,
    pub frames: Vec<(u64, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> Frame {
        Frame::from_json(format!("{{\"seq\":{seq}}}"))
    }

    fn seqs(replay: Replay) -> Option<Vec<String>> {
        match replay {
            Replay::Frames(f) => Some(f.iter().map(|f| f.as_str().to_owned()).collect()),
            Replay::Snapshot => None,
        }
    }

    #[test]
    fn replays_missed_and_evicts() {
        let mut b = ReplayBuffer::new(3, 10);
        assert_eq!(seqs(b.since(10)), Some(vec![]));
        assert_eq!(seqs(b.since(9)), None);
        for s in 11..=14 {
            b.push(s, frame(s));
        }
        assert_eq!(b.floor(), 11);
        assert_eq!(b.last_seq(), 14);
        assert_eq!(seqs(b.since(10)), None, "11 was evicted");
        assert_eq!(
            seqs(b.since(11)),
            Some(vec![
                "{\"seq\":12}".into(),
                "{\"seq\":13}".into(),
                "{\"seq\":14}".into()
            ])
        );
        assert_eq!(seqs(b.since(13)), Some(vec!["{\"seq\":14}".into()]));
        assert_eq!(seqs(b.since(14)), Some(vec![]));
        assert_eq!(seqs(b.since(15)), None, "from the future: snapshot");
    }

    #[test]
    fn a_hole_restarts_the_buffer() {
        let mut b = ReplayBuffer::new(8, 0);
        b.push(1, frame(1));
        b.push(5, frame(5));
        assert_eq!(b.floor(), 4);
        assert_eq!(seqs(b.since(1)), None);
        assert_eq!(seqs(b.since(4)).map(|v| v.len()), Some(1));
    }

    #[test]
    fn wire_round_trip() {
        let mut b = ReplayBuffer::new(4, 2);
        for s in 3..=8 {
            b.push(s, frame(s));
        }
        let back = ReplayBuffer::from_wire(b.to_wire(), 4);
        assert_eq!(back, b);
    }
}
