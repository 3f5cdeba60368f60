//! One peer connection's UDP socket, shared with the crate.
//!
//! webrtc 0.21.1 binds and owns each peer connection's sockets, but it wraps them
//! through the peer's [`Runtime`]. [`SocketCapture`] is the tokio runtime with two
//! changes: it keeps a handle to every UDP socket it wraps, and that handle notes where
//! the remote's DTLS and SRTP(C) packets come from: the address ICE selected, which is
//! where the direct path must send (sending from the same socket keeps ICE consent and
//! the remote's view of the 5-tuple intact). And with a [`UdpMux`], the socket it hands
//! the crate is the peer's share of the one media port instead of the one it bound.

use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::sfu::mux::{MuxSocket, UdpMux};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// The tokio runtime, keeping the UDP sockets it wraps (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct SocketCapture {
    sockets: Mutex<Vec<Arc<PeerSocket>>>,
    /// The shared media port and this peer's local ICE ufrag on it.
    mux: Option<(Arc<UdpMux>, String)>,
}

impl SocketCapture {
    /// A runtime whose peer uses `mux` instead of its own sockets, with local ufrag `ufrag`.
    pub(crate) fn with_mux(mux: Arc<UdpMux>, ufrag: String) -> Self {
        Self {
            sockets: Mutex::default(),
            mux: Some((mux, ufrag)),
        }
    }

    /// This peer's local ICE ufrag on the shared port, if it uses one.
    pub(crate) fn mux_ufrag(&self) -> Option<&str> {
        self.mux.as_ref().map(|(_, ufrag)| ufrag.as_str())
    }

    /// The local ports the crate bound (its host candidates carry them).
    pub(crate) fn bound_ports(&self) -> Vec<u16> {
        self.sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter_map(|socket| socket.inner.local_addr().ok())
            .map(|addr| addr.port())
            .collect()
    }

    /// The socket the remote's media comes from, once it has sent some.
    pub(crate) fn media_socket(&self) -> Option<Arc<PeerSocket>> {
        self.sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .find(|socket| socket.remote().is_some())
            .cloned()
    }
}

/// A wrapped UDP socket that remembers the remote's media address.
#[derive(Debug)]
pub(crate) struct PeerSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    remote: Mutex<Option<SocketAddr>>,
}

impl PeerSocket {
    /// Where the remote's last DTLS or SRTP(C) packet came from.
    pub(crate) fn remote(&self) -> Option<SocketAddr> {
        *self
            .remote
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Datagrams one GSO send may carry (1: no GSO).
    pub(crate) fn max_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    /// Sends `contents` to `destination`, as `segment`-byte datagrams when given.
    pub(crate) async fn send(
        &self,
        destination: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<usize> {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: segment,
            src_ip: None,
        };
        std::future::poll_fn(|cx| self.inner.poll_send(cx, &transmit)).await
    }
}

/// RFC 7983's demultiplexing: DTLS is 20-63, RTP and RTCP 128-191; STUN (0-3) may come
/// from candidate pairs ICE does not select, so it does not count.
fn is_media_or_dtls(first_byte: u8) -> bool {
    matches!(first_byte, 20..=63 | 128..=191)
}

impl AsyncUdpSocket for PeerSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let received = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(count)) = &received {
            let media_from = bufs
                .iter()
                .zip(meta.iter())
                .take(*count)
                .rev()
                .find(|(buf, meta)| meta.len > 0 && is_media_or_dtls(buf[0]))
                .map(|(_, meta)| meta.addr);
            if let Some(addr) = media_from {
                let mut remote = self
                    .remote
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if *remote != Some(addr) {
                    *remote = Some(addr);
                }
            }
        }
        received
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}

impl Runtime for SocketCapture {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let inner: Arc<dyn AsyncUdpSocket> = match &self.mux {
            // The crate's mDNS socket stays its own.
            Some((mux, ufrag)) if socket.local_addr()?.port() != rtc::mdns::MDNS_PORT => {
                // Only the address is kept: the shared port carries the traffic.
                let local = socket.local_addr()?;
                drop(socket);
                Arc::new(MuxSocket(mux.conn(ufrag, local)))
            }
            _ => TokioRuntime.wrap_udp_socket(socket)?,
        };
        let socket = Arc::new(PeerSocket {
            inner,
            remote: Mutex::new(None),
        });
        self.sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::clone(&socket));
        Ok(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        TokioRuntime.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        TokioRuntime.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        TokioRuntime.resolve_host(host)
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        TokioRuntime.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        TokioRuntime.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.yield_now()
    }

    fn name(&self) -> &'static str {
        TokioRuntime.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtls_and_rtp_mark_the_media_address_but_stun_does_not() {
        assert!(is_media_or_dtls(22)); // DTLS handshake
        assert!(is_media_or_dtls(23)); // DTLS application data
        assert!(is_media_or_dtls(0x80)); // RTP/RTCP version 2
        assert!(!is_media_or_dtls(0x00)); // STUN binding request
        assert!(!is_media_or_dtls(0x01)); // STUN binding response
        assert!(!is_media_or_dtls(0xff));
    }

    #[tokio::test]
    async fn a_wrapped_socket_learns_the_sender_of_media_and_sends_from_the_same_port() {
        let capture = SocketCapture::default();
        let local = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let local_addr = local.local_addr().unwrap();
        let wrapped = capture.wrap_udp_socket(local).unwrap();
        let remote = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

        remote.send_to(&[0x00, 0x01], local_addr).await.unwrap();
        let mut buf = [0u8; 64];
        wrapped.recv_from(&mut buf).await.unwrap();
        assert!(capture.media_socket().is_none(), "STUN does not select");

        remote.send_to(&[22, 0xfe, 0xfd], local_addr).await.unwrap();
        wrapped.recv_from(&mut buf).await.unwrap();
        let socket = capture.media_socket().expect("DTLS selects");
        assert_eq!(socket.remote(), Some(remote.local_addr().unwrap()));

        let sent = socket
            .send(remote.local_addr().unwrap(), &[0x80, 1, 2, 3], None)
            .await
            .unwrap();
        assert_eq!(sent, 4);
        let (len, from) = remote.recv_from(&mut buf).await.unwrap();
        assert_eq!((len, from), (4, local_addr));
    }
}
