//! The direct send path: a viewer's RTP encrypted and sent by the SFU itself.
//!
//! Through webrtc-rs, every forwarded packet crosses the peer's driver task and the `rtc`
//! core's handler chain (interceptors, SRTP, DTLS, ICE), each layer moving the message by
//! value: 83 % of the server's CPU at 9.6-17 µs per packet (see `docs/benchmarks.md`,
//! "Media (SFU)"). Viewers only receive, so once a viewer is connected the SFU needs from
//! that pipeline only what the handshake produced: the local SRTP keys and the socket and
//! address ICE selected. With those, [`DirectPath`] encrypts each rewritten packet once
//! and sends a frame's packets to the viewer in one UDP GSO send.
//!
//! The crate keeps handling everything else for the peer: ICE (checks, consent), DTLS,
//! and the viewer's RTCP. NACKs come back through `feedback` and are answered here from
//! a short history ([`History`]), since the crate's NACK responder never saw these
//! packets; for the same reason the SFU sends the sender reports ([`reports`]). A viewer
//! whose keys or socket cannot be had (say, one whose media reaches the server only
//! through its own TURN relay) is served through the crate as before; the room counts
//! the viewers on this path.

mod history;
pub(crate) mod keys;
mod reports;
pub(crate) mod socket;

use std::io;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp;
use rtc::shared::marshal::Marshal;
use rtc::srtp::config::Config as SrtpConfig;
use rtc::srtp::context::Context as SrtpContext;
use rtc::srtp::protection_profile::ProtectionProfile;
use rtc::statistics::StatsSelector;
use webrtc::peer_connection::PeerConnection;

use history::History;
use keys::KeyCapture;
use reports::SentStreams;
use socket::{PeerSocket, SocketCapture};

/// What a viewer's peer connection is built with so the direct path can take over later.
pub(crate) struct Capture {
    pub(crate) keys: Arc<KeyCapture>,
    pub(crate) sockets: Arc<SocketCapture>,
}

/// Why a connected viewer is served through the crate instead.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unavailable {
    #[error("no SRTP profile the direct path knows: {0:?}")]
    Profile(String),
    #[error("the DTLS role is not settled")]
    Role,
    #[error("no keying material was captured")]
    Keys,
    #[error("no socket has seen the viewer's media address")]
    Socket,
    #[error("SRTP context: {0}")]
    Srtp(String),
}

/// A connected viewer's own SRTP context and socket.
pub(crate) struct DirectPath {
    socket: Arc<PeerSocket>,
    srtp: SrtpContext,
    history: History,
    sent: SentStreams,
    /// Encrypted datagrams of the current send, back to back, and their lengths.
    datagrams: Vec<u8>,
    lengths: Vec<usize>,
}

impl DirectPath {
    /// Takes over sending for a connected viewer built with `capture`.
    pub(crate) async fn establish(
        peer: &dyn PeerConnection,
        capture: &Capture,
    ) -> Result<Self, Unavailable> {
        let report = peer.get_stats(Instant::now(), StatsSelector::None).await;
        let transport = report.transport().ok_or(Unavailable::Role)?;
        let profile = profile(&transport.srtp_cipher)
            .ok_or_else(|| Unavailable::Profile(transport.srtp_cipher.clone()))?;
        let is_client = match transport.dtls_role {
            RTCDtlsRole::Client => true,
            RTCDtlsRole::Server => false,
            _ => return Err(Unavailable::Role),
        };
        let socket = capture.sockets.media_socket().ok_or(Unavailable::Socket)?;
        let mut config = SrtpConfig {
            profile,
            ..Default::default()
        };
        let material = capture
            .keys
            .keying_material(config.keying_material_len())
            .ok_or(Unavailable::Keys)?;
        config
            .set_session_keys_from_keying_material(&material, is_client)
            .map_err(|e| Unavailable::Srtp(e.to_string()))?;
        let srtp = SrtpContext::new(
            &config.keys.local_master_key,
            &config.keys.local_master_salt,
            profile,
            None,
            None,
            capture.keys.inner().crypto(),
        )
        .map_err(|e| Unavailable::Srtp(e.to_string()))?;
        Ok(Self {
            socket,
            srtp,
            history: History::default(),
            sent: SentStreams::default(),
            datagrams: Vec::new(),
            lengths: Vec::new(),
        })
    }

    /// Encrypts and sends `packets` (already rewritten for this viewer, on a stream whose
    /// RTP clock runs at `clock_rate`); returns how many left. Video is kept for NACKs.
    pub(crate) async fn send(
        &mut self,
        packets: &[rtp::Packet],
        clock_rate: u32,
        keep: bool,
    ) -> io::Result<usize> {
        self.datagrams.clear();
        self.lengths.clear();
        let now = Instant::now();
        for packet in packets {
            self.encrypt(packet)?;
            self.sent.sent(packet, clock_rate, now);
            if keep {
                self.history.keep(packet.clone());
            }
        }
        self.flush().await
    }

    /// Sends an RTCP sender report for each stream sent so far (see `reports`).
    ///
    /// The crate sends no SRTCP on a viewer's connection (it receives no media there and
    /// its reporter saw none of these packets), so this context's SRTCP indexes are the
    /// only ones used with these SSRCs and keys.
    pub(crate) async fn report(&mut self) -> io::Result<()> {
        let reports: Vec<Box<dyn rtc::rtcp::Packet>> = self
            .sent
            .reports(Instant::now(), SystemTime::now())
            .into_iter()
            .map(|report| Box::new(report) as Box<dyn rtc::rtcp::Packet>)
            .collect();
        if reports.is_empty() {
            return Ok(());
        }
        let plain = rtc::rtcp::packet::marshal(&reports).map_err(io::Error::other)?;
        let encrypted = self.srtp.encrypt_rtcp(&plain).map_err(io::Error::other)?;
        let destination = self
            .socket
            .remote()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        self.socket.send(destination, &encrypted, None).await?;
        Ok(())
    }

    /// Sends again the kept packets among `sequence_numbers` (a viewer's NACK).
    pub(crate) async fn resend(&mut self, sequence_numbers: &[u16]) -> io::Result<usize> {
        self.datagrams.clear();
        self.lengths.clear();
        let packets: Vec<rtp::Packet> = sequence_numbers
            .iter()
            .filter_map(|&seq| self.history.get(seq).cloned())
            .collect();
        for packet in &packets {
            self.encrypt(packet)?;
        }
        self.flush().await
    }

    fn encrypt(&mut self, packet: &rtp::Packet) -> io::Result<()> {
        let plain = packet.marshal().map_err(io::Error::other)?;
        let encrypted = self
            .srtp
            .encrypt_rtp_with_header(&plain, &packet.header)
            .map_err(io::Error::other)?;
        self.datagrams.extend_from_slice(&encrypted);
        self.lengths.push(encrypted.len());
        Ok(())
    }

    /// Sends the pending datagrams, as few GSO sends as their sizes allow.
    async fn flush(&mut self) -> io::Result<usize> {
        let destination = self
            .socket
            .remote()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let mut offset = 0;
        for run in gso_runs(&self.lengths, self.socket.max_segments()) {
            let segment = (run.count > 1).then_some(run.segment);
            self.socket
                .send(
                    destination,
                    &self.datagrams[offset..offset + run.bytes],
                    segment,
                )
                .await?;
            offset += run.bytes;
        }
        Ok(self.lengths.len())
    }
}

/// The SRTP profile named in the crate's transport stats.
fn profile(stats_name: &str) -> Option<ProtectionProfile> {
    Some(match stats_name {
        "SRTP_AEAD_AES_128_GCM" => ProtectionProfile::AeadAes128Gcm,
        "SRTP_AEAD_AES_256_GCM" => ProtectionProfile::AeadAes256Gcm,
        "SRTP_AES128_CM_HMAC_SHA1_80" => ProtectionProfile::Aes128CmHmacSha1_80,
        "SRTP_AES128_CM_HMAC_SHA1_32" => ProtectionProfile::Aes128CmHmacSha1_32,
        _ => return None,
    })
}

/// Consecutive datagrams one GSO send can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// Size of each datagram but the last, which may be shorter.
    segment: usize,
    count: usize,
    bytes: usize,
}

/// Splits datagrams of `lengths` into GSO runs: equal sizes, optionally ending with one
/// shorter datagram, at most `max_segments` each (Linux's UDP_SEGMENT rule).
fn gso_runs(lengths: &[usize], max_segments: usize) -> Vec<Run> {
    let max_segments = max_segments.max(1);
    let mut runs: Vec<Run> = Vec::new();
    let mut open = false;
    for &len in lengths {
        match runs.last_mut() {
            Some(run) if open && run.count < max_segments && len <= run.segment => {
                run.count += 1;
                run.bytes += len;
                // Only the last datagram of a send may be shorter.
                open = len == run.segment;
            }
            _ => {
                runs.push(Run {
                    segment: len,
                    count: 1,
                    bytes: len,
                });
                open = true;
            }
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(segment: usize, count: usize, bytes: usize) -> Run {
        Run {
            segment,
            count,
            bytes,
        }
    }

    #[test]
    fn a_frame_of_equal_packets_and_a_shorter_tail_is_one_send() {
        assert_eq!(
            gso_runs(&[1200, 1200, 1200, 700], 64),
            vec![run(1200, 4, 4300)]
        );
    }

    #[test]
    fn a_longer_packet_or_one_after_a_shorter_starts_a_new_send() {
        assert_eq!(
            gso_runs(&[1000, 1200, 1200, 500, 500, 90], 64),
            vec![run(1000, 1, 1000), run(1200, 3, 2900), run(500, 2, 590)]
        );
    }

    #[test]
    fn sends_hold_at_most_the_socket_limit() {
        assert_eq!(
            gso_runs(&[100; 5], 2),
            vec![run(100, 2, 200), run(100, 2, 200), run(100, 1, 100)]
        );
        assert_eq!(
            gso_runs(&[100, 100], 1),
            vec![run(100, 1, 100), run(100, 1, 100)]
        );
        assert!(gso_runs(&[], 64).is_empty());
    }

    #[test]
    fn stats_names_map_to_profiles() {
        // The profile's key and salt lengths tell the four apart.
        let lengths =
            |name| profile(name).map(|p| (p.key_len(), p.salt_len(), p.rtp_auth_tag_len()));
        assert_eq!(lengths("SRTP_AEAD_AES_128_GCM"), Some((16, 12, 0)));
        assert_eq!(lengths("SRTP_AEAD_AES_256_GCM"), Some((32, 12, 0)));
        assert_eq!(lengths("SRTP_AES128_CM_HMAC_SHA1_80"), Some((16, 14, 10)));
        assert_eq!(lengths("SRTP_AES128_CM_HMAC_SHA1_32"), Some((16, 14, 4)));
        assert!(profile("Unknown").is_none());
    }
}
