//! The packets a viewer was sent recently, by sequence number, for its NACKs.

use rtc::rtp;

/// Slots: a power of two, so sequence numbers wrap onto them evenly. 512 packets is about
/// 2 s of 2 Mb/s video, longer than any retransmission is still useful for.
const SLOTS: usize = 512;

/// A ring of recently sent packets (plaintext, after rewrite; payloads shared).
pub(crate) struct History {
    slots: Vec<Option<rtp::Packet>>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            slots: vec![None; SLOTS],
        }
    }
}

impl History {
    pub(crate) fn keep(&mut self, packet: rtp::Packet) {
        let slot = usize::from(packet.header.sequence_number) % SLOTS;
        self.slots[slot] = Some(packet);
    }

    /// The packet sent with `sequence_number`, if it is still kept.
    pub(crate) fn get(&self, sequence_number: u16) -> Option<&rtp::Packet> {
        self.slots[usize::from(sequence_number) % SLOTS]
            .as_ref()
            .filter(|p| p.header.sequence_number == sequence_number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                sequence_number: seq,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn keeps_the_last_slots_packets_and_forgets_older_ones() {
        let mut history = History::default();
        for seq in 65_000u16..=65_535 {
            history.keep(packet(seq));
        }
        for seq in 0u16..500 {
            history.keep(packet(seq));
        }
        assert!(history.get(499).is_some());
        assert!(history.get(65_535).is_some(), "across the wrap");
        assert!(history.get(65_000).is_none(), "overwritten by 65_000 + 512");
        assert!(history.get(600).is_none(), "never sent");
    }
}
