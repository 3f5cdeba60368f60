//! Per-viewer RTP rewriting: the one place that turns a publisher's packet into one the
//! viewer's negotiated session accepts.
//!
//! Forwarding a packet unchanged decodes nowhere (see `shared/webrtc-notes.md`): the viewer
//! negotiated its own payload types and header-extension ids, and its sender only accepts
//! its own SSRC. Sequence numbers and timestamps are also made continuous across publisher
//! sessions, so a returning publisher (new SSRC, new random sequence) looks to the viewer
//! like the same stream after a short gap, and its jitter buffer does not reset.

use bytes::Bytes;
use rtc::rtp;

/// Header extensions that must not travel from the publisher's session to a viewer's:
/// they describe the publisher's transport (its MID, RIDs, transport-wide sequence), not
/// the media. The viewer's own stack adds what its session needs.
const TRANSPORT_EXTENSIONS: &[&str] = &[
    "urn:ietf:params:rtp-hdrext:sdes:mid",
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
];

/// RTP header-extension profile ids (RFC 8285).
const ONE_BYTE_PROFILE: u16 = 0xBEDE;
const TWO_BYTE_PROFILE: u16 = 0x1000;

/// The negotiated parameters of one side of a forwarded track.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// `(payload type, lower-case MIME type such as "video/vp8")`.
    pub payload_types: Vec<(u8, String)>,
    /// `(extension id, URI)`.
    pub extensions: Vec<(u8, String)>,
}

impl Negotiated {
    fn payload_type_of(&self, mime: &str) -> Option<u8> {
        self.payload_types
            .iter()
            .find(|(_, m)| m.eq_ignore_ascii_case(mime))
            .map(|(pt, _)| *pt)
    }

    fn uri_of(&self, id: u8) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, uri)| uri.as_str())
    }

    fn id_of(&self, uri: &str) -> Option<u8> {
        self.extensions
            .iter()
            .find(|(_, u)| u == uri)
            .map(|(id, _)| *id)
    }
}

/// Rewrites one publisher track's packets for one viewer's sender.
#[derive(Debug)]
pub struct Rewriter {
    ssrc: u32,
    viewer: Negotiated,
    /// Continuity across publisher sessions.
    source_ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    /// Timestamp step inserted when the source changes (about one frame).
    gap_ticks: u32,
    /// The next packet continues the sequence right after the last one sent.
    close_gap: bool,
}

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The viewer did not negotiate the packet's codec.
    CodecNotNegotiated,
    /// Padding only (bandwidth probes): meaningless on the viewer's path.
    Empty,
}

impl Rewriter {
    /// `ssrc`: the viewer sender's SSRC; `viewer`: its negotiated parameters;
    /// `clock_rate`: the codec clock (for the timestamp gap between publisher sessions).
    pub fn new(ssrc: u32, viewer: Negotiated, clock_rate: u32) -> Self {
        Self {
            ssrc,
            viewer,
            source_ssrc: None,
            seq_offset: 0,
            ts_offset: 0,
            last_seq: 0,
            last_ts: 0,
            gap_ticks: (clock_rate / 30).max(1),
            close_gap: false,
        }
    }

    /// Packets were skipped on purpose: the next one continues the sequence right after
    /// the last one sent, so the viewer sees no gap to ask retransmissions for. Timestamps
    /// keep their offset: the skipped time really passed.
    pub fn close_gap(&mut self) {
        self.close_gap = true;
    }

    /// Rewrites `packet` (from a publisher whose parameters are `source`, carrying `mime`).
    pub fn rewrite(
        &mut self,
        packet: &rtp::Packet,
        mime: &str,
        source: &Negotiated,
    ) -> Result<rtp::Packet, Skip> {
        if packet.payload.is_empty() {
            return Err(Skip::Empty);
        }
        let payload_type = self
            .viewer
            .payload_type_of(mime)
            .ok_or(Skip::CodecNotNegotiated)?;
        let input = &packet.header;
        if self.source_ssrc != Some(input.ssrc) {
            // A new publisher session (or the first packet): continue the viewer's stream
            // right after what it last saw, whatever the publisher's numbering.
            let (next_seq, next_ts) = if self.source_ssrc.is_none() {
                (input.sequence_number, input.timestamp)
            } else {
                (
                    self.last_seq.wrapping_add(1),
                    self.last_ts.wrapping_add(self.gap_ticks),
                )
            };
            self.seq_offset = next_seq.wrapping_sub(input.sequence_number);
            self.ts_offset = next_ts.wrapping_sub(input.timestamp);
            self.source_ssrc = Some(input.ssrc);
        } else if self.close_gap {
            self.seq_offset = self
                .last_seq
                .wrapping_add(1)
                .wrapping_sub(input.sequence_number);
        }
        self.close_gap = false;
        let sequence_number = input.sequence_number.wrapping_add(self.seq_offset);
        let timestamp = input.timestamp.wrapping_add(self.ts_offset);
        // Out-of-order packets must not move the continuity point backwards.
        if (sequence_number.wrapping_sub(self.last_seq) as i16) > 0 || self.last_seq == 0 {
            self.last_seq = sequence_number;
            self.last_ts = timestamp;
        }

        let mut extensions = Vec::new();
        if input.extension {
            for extension in &input.extensions {
                let Some(uri) = source.uri_of(extension.id) else {
                    continue;
                };
                if TRANSPORT_EXTENSIONS.contains(&uri) {
                    continue;
                }
                if let Some(id) = self.viewer.id_of(uri) {
                    extensions.push(rtp::header::Extension {
                        id,
                        payload: extension.payload.clone(),
                    });
                }
            }
        }
        let one_byte = extensions
            .iter()
            .all(|e| (1..=14).contains(&e.id) && (1..=16).contains(&e.payload.len()));

        Ok(rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                padding: false,
                extension: !extensions.is_empty(),
                marker: input.marker,
                payload_type,
                sequence_number,
                timestamp,
                ssrc: self.ssrc,
                csrc: Vec::new(),
                extension_profile: if extensions.is_empty() {
                    0
                } else if one_byte {
                    ONE_BYTE_PROFILE
                } else {
                    TWO_BYTE_PROFILE
                },
                extensions,
                extensions_padding: 0,
            },
            payload: Bytes::clone(&packet.payload),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIENTATION: &str = "urn:3gpp:video-orientation";
    const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

    fn publisher() -> Negotiated {
        Negotiated {
            payload_types: vec![(96, "video/VP8".into())],
            extensions: vec![(4, MID.into()), (13, ORIENTATION.into())],
        }
    }

    fn viewer() -> Negotiated {
        Negotiated {
            payload_types: vec![(120, "video/vp8".into()), (125, "video/H264".into())],
            extensions: vec![(1, MID.into()), (7, ORIENTATION.into())],
        }
    }

    fn packet(ssrc: u32, seq: u16, ts: u32) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                padding: true,
                extension: true,
                payload_type: 96,
                sequence_number: seq,
                timestamp: ts,
                ssrc,
                extension_profile: ONE_BYTE_PROFILE,
                extensions: vec![
                    rtp::header::Extension {
                        id: 4,
                        payload: Bytes::from_static(b"0"),
                    },
                    rtp::header::Extension {
                        id: 13,
                        payload: Bytes::from_static(&[1]),
                    },
                ],
                ..Default::default()
            },
            payload: Bytes::from_static(&[0x90, 0x80, 0x00]),
        }
    }

    #[test]
    fn maps_ssrc_payload_type_and_extension_ids() {
        let mut rewriter = Rewriter::new(0xABCD, viewer(), 90_000);
        let out = rewriter
            .rewrite(&packet(1, 100, 5000), "video/VP8", &publisher())
            .unwrap();
        assert_eq!(out.header.ssrc, 0xABCD);
        assert_eq!(out.header.payload_type, 120);
        assert_eq!(out.header.sequence_number, 100);
        assert!(!out.header.padding);
        // The MID is the publisher session's; only the media extension survives, re-numbered.
        assert_eq!(out.header.extensions.len(), 1);
        assert_eq!(out.header.extensions[0].id, 7);
        assert_eq!(out.header.extension_profile, ONE_BYTE_PROFILE);
    }

    #[test]
    fn refuses_codecs_the_viewer_did_not_negotiate() {
        let mut rewriter = Rewriter::new(1, viewer(), 90_000);
        let result = rewriter.rewrite(&packet(1, 1, 1), "video/VP9", &publisher());
        assert_eq!(result.unwrap_err(), Skip::CodecNotNegotiated);
    }

    #[test]
    fn drops_padding_only_packets() {
        let mut rewriter = Rewriter::new(1, viewer(), 90_000);
        let mut probe = packet(1, 1, 1);
        probe.payload = Bytes::new();
        assert_eq!(
            rewriter
                .rewrite(&probe, "video/VP8", &publisher())
                .unwrap_err(),
            Skip::Empty
        );
    }

    #[test]
    fn a_returning_publisher_continues_the_sequence() {
        let mut rewriter = Rewriter::new(9, viewer(), 90_000);
        for seq in 65_530..=65_535 {
            rewriter
                .rewrite(&packet(1, seq, 1_000), "video/VP8", &publisher())
                .unwrap();
        }
        // New session: new SSRC, unrelated numbering.
        let out = rewriter
            .rewrite(&packet(2, 17, 777), "video/VP8", &publisher())
            .unwrap();
        assert_eq!(out.header.sequence_number, 0);
        assert_eq!(out.header.timestamp, 1_000 + 3_000);
        let next = rewriter
            .rewrite(&packet(2, 18, 777 + 3_000), "video/VP8", &publisher())
            .unwrap();
        assert_eq!(next.header.sequence_number, 1);
        assert_eq!(next.header.timestamp, 7_000);
    }

    #[test]
    fn a_deliberate_skip_leaves_no_sequence_gap_but_keeps_time() {
        let mut rewriter = Rewriter::new(9, viewer(), 90_000);
        let vp8 = |r: &mut Rewriter, seq, ts| {
            r.rewrite(&packet(1, seq, ts), "video/VP8", &publisher())
                .unwrap()
                .header
        };
        assert_eq!(vp8(&mut rewriter, 100, 0).sequence_number, 100);
        assert_eq!(vp8(&mut rewriter, 101, 3_000).sequence_number, 101);
        // 102..=109 skipped; without close_gap the sequence jumps.
        rewriter.close_gap();
        let resumed = vp8(&mut rewriter, 110, 30_000);
        assert_eq!((resumed.sequence_number, resumed.timestamp), (102, 30_000));
        assert_eq!(vp8(&mut rewriter, 111, 30_000).sequence_number, 103);
        assert_eq!(vp8(&mut rewriter, 113, 33_000).sequence_number, 105);
    }
}
