//! Viewers' keyframe requests (PLI, FIR) and NACKs up to the application.
//!
//! With the crate's default interceptor chain, inbound RTCP ends inside the chain (the NACK
//! responder and the report interceptors consume it) and a sent track's `poll()` never sees
//! it. [`KeyframeRequests`] sits application-most and marks PLI, FIR and generic NACK
//! packets with `Attribute::DeliverToApplication`, so each viewer's `TrackLocal::poll`
//! yields them. The SFU relays keyframe requests to the publisher through the room's
//! coalescing keyframe path, and answers NACKs itself for viewers on the direct send path
//! (the crate's NACK responder never saw those packets; for the others it has already
//! answered). Every other inbound RTCP packet has already been seen by the interceptors
//! and stops here, as it did.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;

/// The interceptor's slot: after the default chain (application-most).
pub(crate) const SLOT: usize = 14_000;

/// Passes inbound PLI/FIR/NACK on to the application (see the module docs).
#[derive(Default)]
pub(crate) struct KeyframeRequests {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

/// Whether any of `packets` asks for a keyframe.
pub(crate) fn asks_for_keyframe(packets: &[Box<dyn rtcp::Packet>]) -> bool {
    packets.iter().any(|packet| {
        let any = packet.as_any();
        any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
    })
}

/// The sequence numbers `packets` report lost (generic NACKs).
pub(crate) fn nacked(packets: &[Box<dyn rtcp::Packet>]) -> Vec<u16> {
    packets
        .iter()
        .filter_map(|packet| packet.as_any().downcast_ref::<TransportLayerNack>())
        .flat_map(|nack| nack.nacks.iter().flat_map(|pair| pair.packet_list()))
        .collect()
}

/// Whether the application wants `packet` (see the module docs).
fn for_application(packet: &dyn rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>()
        || any.is::<FullIntraRequest>()
        || any.is::<TransportLayerNack>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtcp::Packet>> = packets
                .iter()
                .filter(|p| for_application(p.as_ref()))
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::receiver_report::ReceiverReport;

    #[test]
    fn only_pli_and_fir_ask_for_a_keyframe() {
        let pli: Box<dyn rtcp::Packet> = Box::new(PictureLossIndication::default());
        let fir: Box<dyn rtcp::Packet> = Box::new(FullIntraRequest::default());
        let rr: Box<dyn rtcp::Packet> = Box::new(ReceiverReport::default());
        assert!(asks_for_keyframe(&[pli]));
        assert!(asks_for_keyframe(&[rr.clone(), fir]));
        assert!(!asks_for_keyframe(&[rr]));
        assert!(!asks_for_keyframe(&[]));
    }

    #[test]
    fn nacks_name_their_lost_sequence_numbers() {
        use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;
        let nack: Box<dyn rtcp::Packet> = Box::new(TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 2,
            nacks: vec![NackPair {
                packet_id: 65_535,
                lost_packets: 0b101,
            }],
        });
        let rr: Box<dyn rtcp::Packet> = Box::new(ReceiverReport::default());
        assert_eq!(nacked(&[rr.clone(), nack.clone()]), vec![65_535, 0, 2]);
        assert!(for_application(nack.as_ref()));
        assert!(!for_application(rr.as_ref()));
        assert!(nacked(&[rr]).is_empty());
    }
}
