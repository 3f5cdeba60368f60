//! One UDP port for every peer connection (`[media] udp_port`).
//!
//! webrtc 0.21.1 binds a socket per peer connection; its own UDP mux is still a `todo` in
//! the setting engine. It does wrap every socket it binds through the peer's runtime, so
//! the SFU's runtime (`direct::socket::SocketCapture`) hands each peer a [`MuxConn`]
//! instead: a virtual socket fed from the one shared socket. The socket the crate bound
//! is closed at once; only its address stays, as the peer's idea of its local address.
//!
//! Routing: each peer gets ICE credentials the SFU chose, so a STUN binding request's
//! `USERNAME` (`<our ufrag>:<theirs>`) names the peer. Its source address is then routed
//! to that peer, as is every address the peer itself sends to (its own checks, STUN
//! servers). Everything else from an unknown address is dropped. The answer's host
//! candidates carry the peer's bound port, which [`rewrite_candidate_ports`] replaces
//! with the shared one.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::message::Message;
use webrtc::runtime::{AsyncUdpSocket, RecvMeta, Runtime, TokioRuntime, Transmit};

/// Datagrams a peer may have waiting; more are dropped, as a full socket buffer would.
const CONN_QUEUE: usize = 1024;
/// Largest datagram read (GRO may coalesce several into one read).
const RECV_BUF: usize = 64 * 1024;

/// The shared socket and the routes from remote addresses and ICE ufrags to peers.
pub(crate) struct UdpMux {
    socket: Arc<dyn AsyncUdpSocket>,
    local: SocketAddr,
    routes: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, Vec<Weak<MuxConn>>>,
    by_addr: HashMap<SocketAddr, Weak<MuxConn>>,
}

impl std::fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpMux")
            .field("local", &self.local)
            .finish()
    }
}

impl UdpMux {
    /// Binds `addr` and starts routing what arrives (on the current tokio runtime).
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Arc<Self>> {
        let socket = std::net::UdpSocket::bind(addr)?;
        let local = socket.local_addr()?;
        let mux = Arc::new(Self {
            socket: TokioRuntime.wrap_udp_socket(socket)?,
            local,
            routes: Mutex::default(),
        });
        tokio::spawn(receive(Arc::downgrade(&mux), Arc::clone(&mux.socket)));
        Ok(mux)
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A virtual socket for a peer whose local ICE ufrag is `ufrag` and which believes it
    /// bound `local`.
    pub(crate) fn conn(self: &Arc<Self>, ufrag: &str, local: SocketAddr) -> Arc<MuxConn> {
        let conn = Arc::new(MuxConn {
            mux: Arc::clone(self),
            ufrag: ufrag.to_owned(),
            local,
            state: Mutex::default(),
        });
        self.routes()
            .by_ufrag
            .entry(ufrag.to_owned())
            .or_default()
            .push(Arc::downgrade(&conn));
        conn
    }

    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Finds the peer a datagram from `from` to `to` belongs to. A STUN request's
    /// `USERNAME` decides, and moves `from` to the peer it names (a new session may come
    /// from the address an old one, not yet timed out, used); anything else goes by
    /// source address.
    fn route(&self, from: SocketAddr, to: Option<IpAddr>, datagram: &[u8]) -> Option<Arc<MuxConn>> {
        let Some(ufrag) = local_ufrag(datagram) else {
            return self.routes().by_addr.get(&from).and_then(Weak::upgrade);
        };
        let mut routes = self.routes();
        let conns: Vec<Arc<MuxConn>> = routes
            .by_ufrag
            .get(&ufrag)?
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let conn = conns
            .iter()
            .find(|c| Some(c.local.ip()) == to)
            .or(conns.first())?
            .clone();
        let known = routes
            .by_addr
            .get(&from)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&conn)));
        if !known {
            routes.by_addr.insert(from, Arc::downgrade(&conn));
            drop(routes);
            conn.state().addrs.push(from);
        }
        Some(conn)
    }

    fn learn(&self, conn: &Arc<MuxConn>, addr: SocketAddr) {
        let mut routes = self.routes();
        let known = routes
            .by_addr
            .get(&addr)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(conn)));
        if !known {
            routes.by_addr.insert(addr, Arc::downgrade(conn));
            drop(routes);
            conn.state().addrs.push(addr);
        }
    }
}

/// Reads the shared socket for as long as the mux lives and hands datagrams to peers.
async fn receive(mux: Weak<UdpMux>, socket: Arc<dyn AsyncUdpSocket>) {
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let mut meta = [RecvMeta::default()];
        let received = std::future::poll_fn(|cx| {
            let mut bufs = [IoSliceMut::new(&mut buf)];
            socket.poll_recv(cx, &mut bufs, &mut meta)
        })
        .await;
        let Some(mux) = mux.upgrade() else {
            return;
        };
        match received {
            Ok(_) => {
                let meta = meta[0];
                let stride = if meta.stride == 0 {
                    meta.len
                } else {
                    meta.stride
                };
                for datagram in buf[..meta.len].chunks(stride.max(1)) {
                    if let Some(conn) = mux.route(meta.addr, meta.dst_ip, datagram) {
                        conn.deliver(meta.addr, datagram);
                    }
                }
            }
            // ICMP errors from earlier sends (a peer that went away) surface here.
            Err(error) => tracing::trace!(%error, "media mux receive"),
        }
    }
}

/// The ICE ufrag of ours that a STUN binding request names, if `datagram` is one.
pub(super) fn local_ufrag(datagram: &[u8]) -> Option<String> {
    // RFC 7983: STUN is 0-3 in the first byte.
    if datagram.len() < 20 || datagram[0] > 3 {
        return None;
    }
    let mut message = Message::new();
    message.unmarshal_binary(datagram).ok()?;
    let username = message.get(ATTR_USERNAME).ok()?;
    let username = std::str::from_utf8(&username).ok()?;
    Some(username.split_once(':')?.0.to_owned())
}

/// One peer's view of the shared socket.
pub(crate) struct MuxConn {
    mux: Arc<UdpMux>,
    ufrag: String,
    local: SocketAddr,
    state: Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    waker: Option<Waker>,
    /// Remote addresses routed here, removed from the mux with the conn.
    addrs: Vec<SocketAddr>,
}

impl std::fmt::Debug for MuxConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxConn")
            .field("shared", &self.mux.local)
            .field("local", &self.local)
            .finish()
    }
}

impl MuxConn {
    fn state(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deliver(&self, from: SocketAddr, datagram: &[u8]) {
        let mut state = self.state();
        if state.queue.len() >= CONN_QUEUE {
            return;
        }
        state.queue.push_back((from, datagram.to_vec()));
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
    }
}

impl Drop for MuxConn {
    fn drop(&mut self) {
        let addrs = std::mem::take(&mut self.state().addrs);
        let mut routes = self.mux.routes();
        for addr in addrs {
            if routes
                .by_addr
                .get(&addr)
                .is_some_and(|w| w.strong_count() == 0)
            {
                routes.by_addr.remove(&addr);
            }
        }
        if let Some(conns) = routes.by_ufrag.get_mut(&self.ufrag) {
            conns.retain(|w| w.strong_count() > 0);
            if conns.is_empty() {
                routes.by_ufrag.remove(&self.ufrag);
            }
        }
    }
}

/// The `AsyncUdpSocket` the crate drives; `self: &Arc` is not available there, so the
/// peer-facing handle is this newtype.
#[derive(Debug, Clone)]
pub(crate) struct MuxSocket(pub(crate) Arc<MuxConn>);

impl AsyncUdpSocket for MuxSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.0.local)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        let conn = &self.0;
        conn.mux.learn(conn, transmit.destination);
        // Leave from the address the peer advertised when the shared socket is bound to
        // every interface.
        let src_ip = if conn.mux.local.ip().is_unspecified() {
            Some(conn.local.ip())
        } else {
            transmit.src_ip
        };
        let transmit = Transmit {
            destination: transmit.destination,
            ecn: transmit.ecn,
            contents: transmit.contents,
            segment_size: transmit.segment_size,
            src_ip,
        };
        conn.mux.socket.poll_send(cx, &transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.0.state();
        if state.queue.is_empty() {
            state.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut count = 0;
        for (buf, meta) in bufs.iter_mut().zip(meta.iter_mut()) {
            let Some((from, datagram)) = state.queue.pop_front() else {
                break;
            };
            let len = datagram.len().min(buf.len());
            buf[..len].copy_from_slice(&datagram[..len]);
            let mut filled = RecvMeta::default();
            filled.addr = from;
            filled.len = len;
            filled.stride = len;
            filled.dst_ip = Some(self.0.local.ip());
            *meta = filled;
            count += 1;
        }
        Poll::Ready(Ok(count))
    }

    fn max_gso_segments(&self) -> usize {
        self.0.mux.socket.max_gso_segments()
    }
}

/// Replaces the port of the answer's UDP host candidates bound at `bound` ports with the
/// shared `port` (see the module docs). Other candidates (server reflexive, relayed)
/// already carry the addresses their servers saw.
pub(crate) fn rewrite_candidate_ports(sdp: &str, bound: &[u16], port: u16) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        match rewrite_candidate(body, bound, port) {
            Some(rewritten) => {
                out.push_str(&rewritten);
                out.push_str(ending);
            }
            None => out.push_str(line),
        }
    }
    out
}

fn rewrite_candidate(line: &str, bound: &[u16], port: u16) -> Option<String> {
    let (prefix, candidate) = line
        .strip_prefix("a=candidate:")
        .map(|c| ("a=candidate:", c))?;
    let mut fields: Vec<&str> = candidate.split(' ').collect();
    // foundation component transport priority address port "typ" type ...
    if fields.len() < 8 || !fields[2].eq_ignore_ascii_case("udp") || fields[7] != "host" {
        return None;
    }
    let old: u16 = fields[5].parse().ok()?;
    if !bound.contains(&old) {
        return None;
    }
    let new = port.to_string();
    fields[5] = &new;
    Some(format!("{prefix}{}", fields.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::stun::message::{BINDING_REQUEST, Setter, TransactionId};
    use rtc::stun::textattrs::Username;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut message = Message::new();
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId::new()),
            Box::new(Username::new(ATTR_USERNAME, username.to_owned())),
        ];
        message.build(&setters).unwrap();
        message.raw
    }

    #[test]
    fn a_binding_request_names_our_ufrag() {
        assert_eq!(
            local_ufrag(&binding_request("ours1234:theirs")).as_deref(),
            Some("ours1234")
        );
        assert_eq!(local_ufrag(&[0x80; 40]), None, "RTP");
        assert_eq!(local_ufrag(&[22; 40]), None, "DTLS");
        assert_eq!(local_ufrag(&[0, 1, 0]), None, "short");
    }

    #[test]
    fn only_udp_host_candidates_on_bound_ports_move_to_the_shared_port() {
        let sdp = "v=0\r\n\
            a=candidate:1 1 udp 2130706431 10.0.0.5 50123 typ host\r\n\
            a=candidate:2 1 UDP 2130706431 10.0.0.6 50124 typ host generation 0\r\n\
            a=candidate:3 1 udp 1694498815 203.0.113.9 50123 typ srflx raddr 10.0.0.5 rport 50123\r\n\
            a=candidate:4 1 tcp 1518280447 10.0.0.5 9 typ host tcptype passive\r\n\
            a=candidate:5 1 udp 2130706431 10.0.0.5 40000 typ host\r\n";
        let out = rewrite_candidate_ports(sdp, &[50123, 50124], 8443);
        assert_eq!(
            out,
            "v=0\r\n\
            a=candidate:1 1 udp 2130706431 10.0.0.5 8443 typ host\r\n\
            a=candidate:2 1 UDP 2130706431 10.0.0.6 8443 typ host generation 0\r\n\
            a=candidate:3 1 udp 1694498815 203.0.113.9 50123 typ srflx raddr 10.0.0.5 rport 50123\r\n\
            a=candidate:4 1 tcp 1518280447 10.0.0.5 9 typ host tcptype passive\r\n\
            a=candidate:5 1 udp 2130706431 10.0.0.5 40000 typ host\r\n"
        );
    }

    #[tokio::test]
    async fn datagrams_reach_the_peer_named_by_stun_and_replies_leave_from_the_shared_port() {
        let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let shared = mux.local_addr();
        let a = MuxSocket(mux.conn("aaaa", "127.0.0.1:1".parse().unwrap()));
        let b = MuxSocket(mux.conn("bbbb", "127.0.0.1:2".parse().unwrap()));
        let remote = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let remote_addr = remote.local_addr().unwrap();

        // Unknown address, not STUN: dropped. Then a check naming b, then DTLS.
        remote.send_to(&[22, 1, 2], shared).await.unwrap();
        remote
            .send_to(&binding_request("bbbb:remote"), shared)
            .await
            .unwrap();
        remote.send_to(&[22, 3, 4], shared).await.unwrap();
        let mut buf = [0u8; 512];
        let (len, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(from, remote_addr);
        assert_eq!(local_ufrag(&buf[..len]).as_deref(), Some("bbbb"));
        let (len, _) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], &[22, 3, 4]);

        // a sends first: the reply from that address routes back to a.
        let other = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        a.send_to(&[0x80, 9], other.local_addr().unwrap())
            .await
            .unwrap();
        let (len, from) = other.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..len], from), (&[0x80, 9][..], shared));
        other.send_to(&[0x81, 7], shared).await.unwrap();
        let (len, from) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            (&buf[..len], from),
            (&[0x81, 7][..], other.local_addr().unwrap())
        );

        // A new session from the same address: its check moves the address to it.
        let c = MuxSocket(mux.conn("cccc", "127.0.0.1:3".parse().unwrap()));
        remote
            .send_to(&binding_request("cccc:remote2"), shared)
            .await
            .unwrap();
        remote.send_to(&[23, 5], shared).await.unwrap();
        c.recv_from(&mut buf).await.unwrap();
        let (len, _) = c.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], &[23, 5]);

        // A conn that is gone takes its routes with it.
        drop(c);
        assert!(!mux.routes().by_addr.contains_key(&remote_addr));
        assert!(!mux.routes().by_ufrag.contains_key("cccc"));
        drop(b);
        assert!(!mux.routes().by_ufrag.contains_key("bbbb"));
        assert!(mux.routes().by_ufrag.contains_key("aaaa"));
    }
}
