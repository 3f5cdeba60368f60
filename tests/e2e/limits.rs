//! Issue 15 item 4: slow clients and per-address caps. Connections that dribble a header,
//! sit idle, or dribble a body are closed within the configured timeouts; WebSockets and
//! new viewer identities are capped per client IP (429 `rate_limited` with `Retry-After`).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{AppOptions, PASSWORD, TestApp};

/// The timeouts the server runs with here (seconds).
const TIMEOUT: u64 = 2;
/// Far longer than the timeout: the bound of every wait for the server to act.
const BOUND: Duration = Duration::from_secs(20);

async fn slow_app() -> TestApp {
    TestApp::spawn_with(
        AppOptions::default()
            .env("GONGKAI_LIMITS_HEADER_TIMEOUT_SECS", &TIMEOUT.to_string())
            .env("GONGKAI_LIMITS_BODY_TIMEOUT_SECS", &TIMEOUT.to_string()),
    )
    .await
}

async fn raw(app: &TestApp) -> TcpStream {
    let address = app.base_url.trim_start_matches("http://");
    TcpStream::connect(address).await.expect("tcp connect")
}

/// Reads until the server closes the connection (or resets it); `None` if it is still
/// open after `BOUND`. Returns what was read.
async fn read_until_closed(tcp: &mut TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let deadline = Instant::now() + BOUND;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Writes `lines` one at a time, `every` apart, until the server closes the connection
/// (a write fails or a read sees the end); `false` if it is still open after `BOUND`.
async fn dribble(tcp: &mut TcpStream, first: &[u8], line: &[u8], every: Duration) -> bool {
    tcp.write_all(first).await.expect("first bytes");
    let deadline = Instant::now() + BOUND;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        // Wait `every` for the server to say something (or close), then send more.
        match tokio::time::timeout(every, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // an error response; the close follows
            Err(_) => {
                if tcp.write_all(line).await.is_err() {
                    return true;
                }
            }
        }
    }
    false
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    let app = slow_app().await;

    // A header line every half second: never a complete header.
    let mut tcp = raw(&app).await;
    let opened = Instant::now();
    let closed = dribble(
        &mut tcp,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        b"X-Slow: 1\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert!(closed, "a dribbled header kept the connection open");
    let took = opened.elapsed();
    assert!(
        took >= Duration::from_secs(TIMEOUT) - Duration::from_millis(100),
        "{took:?}"
    );

    // A connection that never sends anything.
    let mut tcp = raw(&app).await;
    assert!(
        read_until_closed(&mut tcp).await.is_some(),
        "an idle connection stayed open"
    );

    // A keep-alive connection idle after one request.
    let mut tcp = raw(&app).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let answered = read_until_closed(&mut tcp)
        .await
        .expect("an idle keep-alive connection stayed open");
    assert!(
        String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answered)
    );

    // A body of one byte every half second.
    let mut tcp = raw(&app).await;
    let closed = dribble(
        &mut tcp,
        b"POST /api/v1/viewer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{",
        b" ",
        Duration::from_millis(500),
    )
    .await;
    assert!(closed, "a dribbled body kept the connection open");
}

#[tokio::test]
async fn websockets_outlive_the_header_timeout() {
    let app = slow_app().await;
    app.create_user("admin", PASSWORD, &["admin"]);
    let admin = crate::hub::staff_session(&app, "admin").await;
    let event = crate::hub::live_event(&app, &admin).await;
    let url = format!(
        "{}/ws/events/{event}",
        app.base_url.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    use futures::{SinkExt, StreamExt};
    // Quiet for twice the timeout (letting time pass is the point here), then still open.
    let quiet_until = Instant::now() + Duration::from_secs(2 * TIMEOUT);
    while let Ok(Some(frame)) = tokio::time::timeout_at(quiet_until, ws.next()).await {
        frame.expect("the socket stays open");
    }
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "ping", "t": 7}).to_string().into(),
    ))
    .await
    .expect("send after the quiet");
    let deadline = Instant::now() + BOUND;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("pong in time")
            .expect("open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            let v: Value = serde_json::from_str(text.as_str()).expect("json");
            if v["type"] == "pong" {
                assert_eq!(v["t"], 7);
                break;
            }
        }
    }
}

#[tokio::test]
async fn websockets_and_viewer_identities_are_capped_per_address() {
    let app = TestApp::spawn_with(
        AppOptions::default()
            .env("GONGKAI_LIMITS_WEBSOCKETS_PER_IP", "3")
            .env("GONGKAI_LIMITS_VIEWER_IDENTITIES_PER_IP_PER_HOUR", "4"),
    )
    .await;
    app.create_user("admin", PASSWORD, &["admin"]);
    let admin = crate::hub::staff_session(&app, "admin").await;
    let event = crate::hub::live_event(&app, &admin).await;

    // New identities: 4 per hour from this address, then 429; renaming is not minting.
    let mint = |cookie: Option<String>| {
        let client = app.anonymous_client();
        let url = app.url("/api/v1/viewer");
        async move {
            let mut request = client.post(url).json(&json!({"nickname": "网友"}));
            if let Some(cookie) = cookie {
                request = request.header("cookie", cookie);
            }
            request.send().await.expect("POST /api/v1/viewer")
        }
    };
    let mut first = None;
    for _ in 0..4 {
        let response = mint(None).await;
        assert_eq!(response.status(), 200);
        first.get_or_insert_with(|| {
            response
                .headers()
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .expect("cookie")
                .to_owned()
        });
    }
    let refused = mint(None).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(mint(first.clone()).await.status(), 200, "renaming is free");

    // WebSockets: 3 open per address, then 429 before the upgrade.
    let url = format!(
        "{}/ws/events/{event}",
        app.base_url.replacen("http://", "ws://", 1)
    );
    let connect = |url: String| async move {
        tokio_tungstenite::connect_async(url.into_client_request().expect("request")).await
    };
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(url.clone()).await.expect("within the cap").0);
    }
    match connect(url.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().get("retry-after").is_some());
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("JSON body");
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        }
        other => panic!("a 4th socket from one address: {:?}", other.map(|_| ())),
    }
    // Staff are not counted.
    let mut request = url.clone().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("cookie", admin.0.parse().expect("cookie"));
    tokio_tungstenite::connect_async(request)
        .await
        .expect("staff socket beyond the viewers' cap");
    // A closed socket frees its place (the server notices the close asynchronously).
    let mut closing = open.pop().expect("a socket");
    closing.close(None).await.expect("close");
    let deadline = Instant::now() + BOUND;
    loop {
        match connect(url.clone()).await {
            Ok(_) => break,
            Err(error) => assert!(Instant::now() < deadline, "place never freed: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
