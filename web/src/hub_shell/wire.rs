//! Server-to-client WebSocket frames (RFC 6455 §5.2) as bytes ready for the socket.
//!
//! A server's frames are not masked, so one frame's bytes are the same for every
//! viewer: a broadcast is framed once and the very same `Bytes` is written to each
//! socket, with no per-socket copy or framing work.

use bytes::{BufMut, Bytes, BytesMut};

const FIN: u8 = 0x80;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;

/// One final text frame carrying `payload` (UTF-8 JSON).
pub fn text(payload: &[u8]) -> Bytes {
    frame(OPCODE_TEXT, &[payload])
}

/// A close frame with `code` and `reason` (the reason is cut to fit the 125-byte limit
/// of control frames, at a character boundary).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    frame(
        OPCODE_CLOSE,
        &[&code.to_be_bytes(), &reason.as_bytes()[..end]],
    )
}

fn frame(opcode: u8, parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    let mut out = BytesMut::with_capacity(len + 10);
    out.put_u8(FIN | opcode);
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
    for part in parts {
        out.put_slice(part);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tokio_tungstenite::tungstenite::error::ProtocolError;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
    use tokio_tungstenite::tungstenite::{Error, Message};

    use super::*;

    /// Reads `bytes` the way a browser would: tungstenite as the client.
    fn read_all(bytes: &[u8]) -> Vec<Message> {
        let mut client =
            WebSocket::from_raw_socket(Cursor::new(bytes.to_vec()), Role::Client, None);
        let mut messages = Vec::new();
        loop {
            match client.read() {
                Ok(message) => messages.push(message),
                // The end of the bytes, without (or after) a closing handshake.
                Err(
                    Error::Io(_)
                    | Error::ConnectionClosed
                    | Error::AlreadyClosed
                    | Error::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                ) => break,
                Err(error) => panic!("not a valid frame sequence: {error}"),
            }
        }
        messages
    }

    #[test]
    fn text_frames_of_every_length_class_decode() {
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x10000, 200_000] {
            let payload = "字".repeat(len / 3) + &"x".repeat(len % 3);
            let messages = read_all(&text(payload.as_bytes()));
            assert_eq!(messages.len(), 1, "len {len}");
            assert_eq!(messages[0].to_text().expect("text"), payload, "len {len}");
        }
        let two = [text(b"{\"a\":1}"), text(b"{\"b\":2}")].concat();
        let messages = read_all(&two);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].to_text().expect("text"), "{\"b\":2}");
    }

    #[test]
    fn close_frames_carry_code_and_a_reason_cut_at_a_character() {
        let messages = read_all(&close(4001, "resume with since"));
        let Message::Close(Some(frame)) = &messages[0] else {
            panic!("{messages:?}");
        };
        assert_eq!(frame.code, CloseCode::from(4001));
        assert_eq!(frame.reason.as_str(), "resume with since");

        let long = format!("a{}", "落后".repeat(40));
        let bytes = close(1001, &long);
        assert!(bytes.len() <= 127, "control frames carry at most 125 bytes");
        let messages = read_all(&bytes);
        let Message::Close(Some(frame)) = &messages[0] else {
            panic!("{messages:?}");
        };
        assert!(long.starts_with(frame.reason.as_str()));
        assert_eq!(
            frame.reason.len(),
            121,
            "`a` and 40 whole characters of 3 bytes"
        );
    }
}
