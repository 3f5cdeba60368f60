//! RTCP sender reports for the streams a viewer gets on the direct path.
//!
//! The crate's report interceptor never sees these packets, so without this a viewer
//! would get no sender reports, and a player could not line audio up with video (RFC 3550
//! section 6.4.1: the report maps the stream's RTP clock to wall-clock time).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What was sent per SSRC since the viewer joined.
#[derive(Debug, Default)]
pub(crate) struct SentStreams {
    streams: HashMap<u32, Sent>,
}

#[derive(Debug)]
struct Sent {
    clock_rate: u32,
    /// The newest RTP timestamp sent and when it was sent.
    timestamp: u32,
    at: Instant,
    packets: u32,
    octets: u32,
}

impl SentStreams {
    /// Counts `packet`, sent at `now` on a stream whose RTP clock runs at `clock_rate`.
    pub(crate) fn sent(&mut self, packet: &rtp::Packet, clock_rate: u32, now: Instant) {
        let timestamp = packet.header.timestamp;
        let sent = self
            .streams
            .entry(packet.header.ssrc)
            .or_insert_with(|| Sent {
                clock_rate,
                timestamp,
                at: now,
                packets: 0,
                octets: 0,
            });
        // A new frame's first packet fixes the mapping; later packets of the frame are
        // only later sends of the same instant.
        if timestamp != sent.timestamp {
            sent.timestamp = timestamp;
            sent.at = now;
        }
        sent.packets = sent.packets.wrapping_add(1);
        sent.octets = sent
            .octets
            .wrapping_add(u32::try_from(packet.payload.len()).unwrap_or(u32::MAX));
    }

    /// One report per stream: its RTP clock extrapolated to `now`, stamped with `wall`.
    pub(crate) fn reports(&self, now: Instant, wall: SystemTime) -> Vec<SenderReport> {
        let ntp_time = ntp(wall);
        self.streams
            .iter()
            .map(|(&ssrc, sent)| {
                let elapsed = now.saturating_duration_since(sent.at);
                SenderReport {
                    ssrc,
                    ntp_time,
                    rtp_time: sent.timestamp.wrapping_add(ticks(elapsed, sent.clock_rate)),
                    packet_count: sent.packets,
                    octet_count: sent.octets,
                    reports: Vec::new(),
                    profile_extensions: Bytes::new(),
                }
            })
            .collect()
    }
}

fn ticks(elapsed: Duration, clock_rate: u32) -> u32 {
    // Truncating to the RTP clock's 32 bits is the wrap RTP timestamps have anyway.
    (elapsed.as_secs_f64() * f64::from(clock_rate)) as u64 as u32
}

/// 64-bit NTP time: seconds since 1900 and a binary fraction.
fn ntp(wall: SystemTime) -> u64 {
    let since_unix = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ssrc: u32, timestamp: u32, payload: usize) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                ssrc,
                timestamp,
                ..Default::default()
            },
            payload: Bytes::from(vec![0; payload]),
        }
    }

    #[test]
    fn reports_count_and_extrapolate_each_stream() {
        let start = Instant::now();
        let mut streams = SentStreams::default();
        streams.sent(&packet(1, 90_000, 1000), 90_000, start);
        streams.sent(
            &packet(1, 90_000, 500),
            90_000,
            start + Duration::from_millis(5),
        );
        streams.sent(
            &packet(2, 48_000, 80),
            48_000,
            start + Duration::from_millis(10),
        );
        let wall = UNIX_EPOCH + Duration::from_millis(1_500);
        let mut reports = streams.reports(start + Duration::from_millis(510), wall);
        reports.sort_by_key(|r| r.ssrc);

        // Video: the frame's first packet at `start`, 510 ms before the report.
        assert_eq!(reports[0].ssrc, 1);
        assert_eq!((reports[0].packet_count, reports[0].octet_count), (2, 1500));
        assert_eq!(reports[0].rtp_time, 90_000 + 45_900);
        // Audio: 500 ms at 48 kHz.
        assert_eq!(reports[1].rtp_time, 48_000 + 24_000);
        assert_eq!(reports[1].octet_count, 80);
        // 1.5 s after 1970 in NTP: the seconds and half a second of fraction.
        assert_eq!(reports[0].ntp_time >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(reports[0].ntp_time & 0xffff_ffff, 1 << 31);
        assert_eq!(reports[0].ntp_time, reports[1].ntp_time);
    }

    #[test]
    fn rtp_time_wraps_like_rtp_timestamps() {
        let start = Instant::now();
        let mut streams = SentStreams::default();
        streams.sent(&packet(7, u32::MAX - 10, 1), 90_000, start);
        let reports = streams.reports(start + Duration::from_secs(1), SystemTime::now());
        assert_eq!(reports[0].rtp_time, 90_000 - 11);
    }
}
