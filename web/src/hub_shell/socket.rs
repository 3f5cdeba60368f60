//! One WebSocket: one task, in which the outbox's writer and a receive loop feeding the
//! room are joined with `select!`; whichever ends first ends the other. Reading (and
//! the protocol's own replies: pongs, the close reply) goes through tungstenite; what
//! the room sends is framed already and bypasses it.
//!
//! Tens of thousands of mostly idle sockets each keep their task's future for their
//! whole life, so its size is memory per viewer: what only the join needs (the event,
//! the identity, the join command) lives in a boxed future that is freed once joined.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use streaming::hub::{
    CLOSE_POLICY, ClientMessage, ConnId, RateLimit, StaffRole, TokenBucket, Viewer,
    parse_client_frame,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::outbox::{Drained, Outbox};
use super::room_task::Command;
use super::upgrade::Connection;
use super::{Hub, now_millis, wire};
use crate::domain::event::Event;
use crate::telemetry_metrics::WEBSOCKETS_OPEN;

/// Who is on the socket, as the upgrade request authenticated them.
#[derive(Debug, Clone)]
pub struct Who {
    pub viewer: Viewer,
    pub role: Option<StaffRole>,
    /// No nickname cookie: may watch, may not chat, ask, vote or like.
    pub read_only: bool,
}

/// Close code when no room could be opened for the socket (database trouble).
const CLOSE_INTERNAL: u16 = 1011;
/// Close code for a message over [`MAX_WS_MESSAGE`] (RFC 6455 §7.4.1).
const CLOSE_TOO_BIG: u16 = 1009;
/// Joins retried when the room retires under us.
const JOIN_ATTEMPTS: usize = 3;
/// Frames the socket answers itself (binary frames, a read-only viewer's interactions):
/// the same budget the room gives every frame it sees, since these never reach it.
const LOCAL_REPLIES: RateLimit = RateLimit::new(10.0, 30.0);
/// After this many such frames refused in a row the connection is closed (as the room
/// does for the frames it sees).
const MAX_LOCAL_REFUSED: u32 = 100;
/// After the client's close: how long its last frames (our close reply) may take.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Largest WebSocket message accepted at all. Text frames over the protocol's 4096 bytes
/// (and up to this) get `frame_too_large`; larger ones end the connection (1009).
const MAX_WS_MESSAGE: usize = 16 * 1024;

/// The socket's task. Not an `async fn`: that would keep its arguments (the connection
/// before the split, the event, the identity) in the future for the socket's life.
pub fn serve(
    hub: Hub,
    connection: Connection,
    event: Arc<Event>,
    who: Who,
    since: Option<u64>,
) -> impl Future<Output = ()> + Send + 'static {
    metrics::gauge!(WEBSOCKETS_OPEN).increment(1.0);
    let open = OpenGuard;
    let conn = hub.next_conn();
    let options = &hub.0.options;
    let (read, write) = tokio::io::split(connection);
    let outbox = Outbox::new(Box::pin(write), options.queue_frames, options.queue_bytes);
    let read_only = who.read_only;
    let joining = Box::pin(join(
        hub.clone(),
        event,
        conn,
        who,
        since,
        Arc::clone(&outbox),
    ));
    let reader = Reader {
        read,
        outbox: Arc::clone(&outbox),
    };
    let socket = Socket {
        conn,
        read_only,
        outbox,
        reader,
        _open: open,
    };
    run(socket, joining)
}

/// The client's side of the connection as the WebSocket protocol layer sees it: reads
/// from the socket; its own writes (pongs, the close reply) are queued in the outbox,
/// so they never land inside another frame.
struct Reader {
    read: ReadHalf<Connection>,
    outbox: Arc<Outbox>,
}

impl AsyncRead for Reader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Reader {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.outbox.push(Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The outbox ends the connection, after what is queued.
        Poll::Ready(Ok(()))
    }
}

fn protocol_config() -> WebSocketConfig {
    // The read buffer is zero-filled and kept per socket (the default 128 KiB would be
    // gigabytes at tens of thousands of idle viewers), and it is most of what an idle
    // socket costs. Client frames are small (a ping is ~40 bytes, a long chat message
    // ~1.5 KB); a larger frame grows the buffer to fit and takes a few more reads.
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
}

/// What a socket keeps after joining.
struct Socket {
    conn: ConnId,
    read_only: bool,
    outbox: Arc<Outbox>,
    reader: Reader,
    _open: OpenGuard,
}

async fn run(
    socket: Socket,
    joining: Pin<Box<impl Future<Output = Option<mpsc::Sender<Command>>>>>,
) {
    // Fields are moved out where used rather than destructured up front, which may give
    // each a second slot in this future.
    let conn = socket.conn;
    let Some(room) = joining.await else {
        socket.outbox.close(CLOSE_INTERNAL, "room unavailable");
        send_loop(&socket.outbox).await;
        return;
    };
    let stream =
        WebSocketStream::from_raw_socket(socket.reader, Role::Server, Some(protocol_config()))
            .await;
    let reading_ended = tokio::select! {
        () = send_loop(&socket.outbox) => false,
        () = receive_loop(stream, conn, &room, &socket.outbox, socket.read_only) => true,
    };
    // `reserve` then `send` rather than `Sender::send`: the latter's future holds a
    // whole `Command`, and this future's size is paid by every open socket.
    if let Ok(permit) = room.reserve().await {
        permit.send(Command::Leave { conn });
    }
    if reading_ended {
        // The close reply (or our own close, e.g. 1009) and anything before it.
        socket.outbox.finish();
        let _ = tokio::time::timeout(CLOSE_GRACE, send_loop(&socket.outbox)).await;
    }
    tracing::debug!(conn = conn.0, "socket closed");
}

async fn join(
    hub: Hub,
    event: Arc<Event>,
    conn: ConnId,
    who: Who,
    since: Option<u64>,
    outbox: Arc<Outbox>,
) -> Option<mpsc::Sender<Command>> {
    for _ in 0..JOIN_ATTEMPTS {
        let room = hub.room(&event);
        let (joined, done) = oneshot::channel();
        let command = Command::Join {
            conn,
            viewer: who.viewer.clone(),
            role: who.role,
            since,
            outbox: Arc::clone(&outbox),
            joined,
        };
        if room.send(command).await.is_ok() && done.await.is_ok() {
            return Some(room);
        }
    }
    None
}

/// Writes what the room queues, until the connection is finished.
async fn send_loop(outbox: &Outbox) {
    while outbox.write_queued().await == Drained::Idle {}
}

async fn receive_loop(
    mut stream: WebSocketStream<Reader>,
    conn: ConnId,
    room: &mpsc::Sender<Command>,
    outbox: &Outbox,
    read_only: bool,
) {
    let mut local = LocalFrames::new();
    while let Some(next) = stream.next().await {
        let message = match next {
            Ok(message) => message,
            Err(WsError::Capacity(_)) => {
                outbox.close(CLOSE_TOO_BIG, "message too large");
                return;
            }
            Err(_) => return,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                match local.admit() {
                    Admit::Answer => {
                        outbox.push(local_error("bad_json", "send JSON text frames", None));
                    }
                    Admit::Refuse => {}
                    Admit::Close => {
                        outbox.close(CLOSE_POLICY, "too many messages");
                        return;
                    }
                }
                continue;
            }
            // Reading on lets the protocol layer write its close reply, then ends.
            Message::Close(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                continue;
            }
        };
        if read_only && let Some(reference) = needs_nickname(text.as_str()) {
            match local.admit() {
                Admit::Answer => {
                    outbox.push(local_error(
                        "nickname_required",
                        "choose a nickname first",
                        reference,
                    ));
                }
                Admit::Refuse => {}
                Admit::Close => {
                    outbox.close(CLOSE_POLICY, "too many messages");
                    return;
                }
            }
            continue;
        }
        // As in `run`: no `Command` held across the wait for queue space.
        let Ok(permit) = room.reserve().await else {
            return;
        };
        permit.send(Command::Text {
            conn,
            text: text.as_str().to_owned(),
        });
    }
}

/// The budget of frames a socket answers without the room.
struct LocalFrames {
    bucket: TokenBucket,
    refused: u32,
}

enum Admit {
    Answer,
    /// Over the rate: no answer.
    Refuse,
    /// Refused too often in a row.
    Close,
}

impl LocalFrames {
    fn new() -> Self {
        Self {
            bucket: TokenBucket::new(LOCAL_REPLIES, now_millis()),
            refused: 0,
        }
    }

    fn admit(&mut self) -> Admit {
        if self.bucket.try_take(LOCAL_REPLIES, now_millis(), 1.0) {
            self.refused = 0;
            return Admit::Answer;
        }
        self.refused += 1;
        if self.refused > MAX_LOCAL_REFUSED {
            Admit::Close
        } else {
            Admit::Refuse
        }
    }
}

/// For a read-only viewer: `Some(ref)` when the frame is a viewer interaction (chat,
/// question, vote, like) that needs a nickname. Anything else goes to the room, which
/// answers bad frames and staff actions itself.
fn needs_nickname(text: &str) -> Option<Option<String>> {
    let frame = parse_client_frame(text, usize::MAX).ok()?;
    match frame.message {
        ClientMessage::ChatSend { .. }
        | ClientMessage::Like { .. }
        | ClientMessage::QuestionAsk { .. }
        | ClientMessage::QuestionUpvote { .. } => Some(frame.reference),
        _ => None,
    }
}

fn local_error(code: &str, message: &str, reference: Option<String>) -> Bytes {
    let mut error = json!({"type": "error", "code": code, "message": message});
    if let Some(reference) = reference {
        error["ref"] = reference.into();
    }
    wire::text(error.to_string().as_bytes())
}

struct OpenGuard;

impl Drop for OpenGuard {
    fn drop(&mut self) {
        metrics::gauge!(WEBSOCKETS_OPEN).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_viewers_are_stopped_only_for_interactions() {
        assert_eq!(
            needs_nickname(r#"{"type":"chat.send","text":"hi","ref":"c1"}"#),
            Some(Some("c1".into()))
        );
        assert_eq!(needs_nickname(r#"{"type":"like"}"#), Some(None));
        assert_eq!(needs_nickname(r#"{"type":"ping"}"#), None);
        assert_eq!(needs_nickname("not json"), None);
        assert_eq!(
            needs_nickname(r#"{"type":"chat.delete","message_id":1}"#),
            None
        );
    }
}
