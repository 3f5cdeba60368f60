//! Raw HTTP/1.1 for requests reqwest cannot make reliably.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` announcing a `Content-Length` of `length` bytes of a
/// JSON document and keeps writing the body only while the server reads it.
///
/// A server that rejects the request early (413 from the Content-Length
/// alone) may close the connection while a normal client is still uploading,
/// which turns a correct 413 into a client-side "connection reset". Here the
/// response is read concurrently with the upload, so either way the status
/// the server sent is returned.
pub async fn send_oversized_body(
    base_url: &str,
    method: &str,
    path: &str,
    length: usize,
) -> RawResponse {
    let host = base_url
        .strip_prefix("http://")
        .expect("base_url starts with http://");
    let stream = TcpStream::connect(host).await.expect("connect to server");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    let upload = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let prefix = br#"{"username":""#;
        writer.write_all(prefix).await?;
        let chunk = vec![b'a'; 64 * 1024];
        let mut left = length - prefix.len();
        while left > 0 {
            let n = left.min(chunk.len());
            writer.write_all(&chunk[..n]).await?;
            left -= n;
        }
        writer.flush().await
    });

    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(response) = parse_complete(&buf) {
                return response;
            }
            let n = reader.read(&mut chunk).await.expect("read response");
            if n == 0 {
                return parse_complete(&buf)
                    .or_else(|| parse_at_eof(&buf))
                    .unwrap_or_else(|| {
                        panic!(
                            "connection closed before a complete response; got {:?}",
                            String::from_utf8_lossy(&buf)
                        )
                    });
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let response = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("response to the oversized request within 60 s");
    upload.abort();
    response
}

/// Parses `buf` once it holds the head and the whole `Content-Length` body.
fn parse_complete(buf: &[u8]) -> Option<RawResponse> {
    let (mut response, body) = parse_head(buf)?;
    let length: usize = response.header("content-length")?.parse().ok()?;
    let body = body.get(..length)?;
    response.body = String::from_utf8_lossy(body).into_owned();
    Some(response)
}

/// Parses a response whose end is the end of the connection, undoing chunked
/// transfer encoding.
fn parse_at_eof(buf: &[u8]) -> Option<RawResponse> {
    let (mut response, mut body) = parse_head(buf)?;
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if !chunked {
        response.body = String::from_utf8_lossy(body).into_owned();
        return Some(response);
    }
    let mut decoded = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        let start = line_end + 2;
        if size == 0 || body.len() < start + size {
            break;
        }
        decoded.extend_from_slice(&body[start..start + size]);
        body = body.get(start + size + 2..).unwrap_or_default();
    }
    response.body = String::from_utf8_lossy(&decoded).into_owned();
    Some(response)
}

/// Status line and headers; returns the bytes after the head.
fn parse_head(buf: &[u8]) -> Option<(RawResponse, &[u8])> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let response = RawResponse {
        status,
        headers,
        body: String::new(),
    };
    Some((response, &buf[end + 4..]))
}
