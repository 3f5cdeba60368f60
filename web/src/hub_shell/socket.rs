//! One WebSocket: one task, in which a send loop draining its [`Outbox`] and a receive
//! loop feeding the room are joined with `select!`; whichever ends first ends the other.
//!
//! Tens of thousands of mostly idle sockets each keep their task's future for their
//! whole life, so its size is memory per viewer: what only the join needs (the event,
//! the identity, the join command) lives in a boxed future that is freed once joined.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use streaming::hub::{
    ClientMessage, ConnId, Frame, RateLimit, StaffRole, TokenBucket, Viewer, parse_client_frame,
};
use tokio::sync::{mpsc, oneshot};

use super::outbox::{Next, Outbox};
use super::room_task::Command;
use super::{Hub, now_millis};
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
/// Joins retried when the room retires under us.
const JOIN_ATTEMPTS: usize = 3;
/// Local `nickname_required` replies per read-only socket (beyond: silently dropped).
const LOCAL_REPLIES: RateLimit = RateLimit::new(10.0, 30.0);

/// The socket's task. Not an `async fn`: that would keep its arguments (the socket
/// before the split, the event, the identity) in the future for the socket's life.
pub fn serve(
    hub: Hub,
    socket: WebSocket,
    event: Arc<Event>,
    who: Who,
    since: Option<u64>,
) -> impl Future<Output = ()> + Send + 'static {
    metrics::gauge!(WEBSOCKETS_OPEN).increment(1.0);
    let open = OpenGuard;
    let conn = hub.next_conn();
    let options = &hub.0.options;
    let outbox = Outbox::new(options.queue_frames, options.queue_bytes);
    let read_only = who.read_only;
    let (sink, stream) = socket.split();
    let joining = Box::pin(join(
        hub.clone(),
        event,
        conn,
        who,
        since,
        Arc::clone(&outbox),
    ));
    let socket = Socket {
        conn,
        read_only,
        outbox,
        sink,
        stream,
        _open: open,
    };
    run(socket, joining)
}

/// What a socket keeps after joining.
struct Socket {
    conn: ConnId,
    read_only: bool,
    outbox: Arc<Outbox>,
    sink: SplitSink<WebSocket, Message>,
    stream: SplitStream<WebSocket>,
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
        send_loop(socket.sink, &socket.outbox).await;
        return;
    };
    tokio::select! {
        () = send_loop(socket.sink, &socket.outbox) => {}
        () = receive_loop(socket.stream, conn, &room, &socket.outbox, socket.read_only) => {}
    }
    // `reserve` then `send` rather than `Sender::send`: the latter's future holds a
    // whole `Command`, and this future's size is paid by every open socket.
    if let Ok(permit) = room.reserve().await {
        permit.send(Command::Leave { conn });
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

async fn send_loop(mut sink: SplitSink<WebSocket, Message>, outbox: &Outbox) {
    loop {
        match outbox.next().await {
            Next::Frames(frames) => {
                for frame in frames {
                    if sink.feed(Message::Text(text_of(&frame))).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            Next::Close(code, reason) => {
                let close = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                };
                let _ = sink.send(Message::Close(Some(close))).await;
                let _ = sink.close().await;
                return;
            }
        }
    }
}

async fn receive_loop(
    mut stream: SplitStream<WebSocket>,
    conn: ConnId,
    room: &mpsc::Sender<Command>,
    outbox: &Outbox,
    read_only: bool,
) {
    let mut replies = TokenBucket::new(LOCAL_REPLIES, now_millis());
    while let Some(Ok(message)) = stream.next().await {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                if replies.try_take(LOCAL_REPLIES, now_millis(), 1.0) {
                    outbox.push(local_error("bad_json", "send JSON text frames", None));
                }
                continue;
            }
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if read_only && let Some(reference) = needs_nickname(text.as_str()) {
            if replies.try_take(LOCAL_REPLIES, now_millis(), 1.0) {
                outbox.push(local_error(
                    "nickname_required",
                    "choose a nickname first",
                    reference,
                ));
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

fn local_error(code: &str, message: &str, reference: Option<String>) -> Frame {
    let mut error = json!({"type": "error", "code": code, "message": message});
    if let Some(reference) = reference {
        error["ref"] = reference.into();
    }
    Frame::from_json(error.to_string())
}

fn text_of(frame: &Frame) -> Utf8Bytes {
    // Frames are serialized from `str`, so the bytes are UTF-8; the check is a cheap scan
    // and the fallback copies.
    Utf8Bytes::try_from(frame.to_bytes()).unwrap_or_else(|_| Utf8Bytes::from(frame.as_str()))
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
