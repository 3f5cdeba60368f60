//! WHIP/WHEP with real peers: aiortc publishers and viewers (`tests/peers/`) through the
//! real server, asserting frames DECODED by the viewer, never packets sent (forwarding
//! that does not rewrite payload types and extensions sends packets nobody decodes).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::peer::Peer;
use crate::support::{AppOptions, Browser, TestApp};

/// Loopback only: the machine's other interfaces must not carry test traffic.
const MEDIA_CONFIG: &str = "[media]\nbind_ip = \"127.0.0.1\"\n";
/// Bound on any single peer process (they stop themselves earlier).
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// `MEDIA_CONFIG` with every peer on one UDP port (`[media] udp_port`), free just now,
/// and that port.
fn one_port_config() -> (String, u16) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port();
    (format!("{MEDIA_CONFIG}udp_port = {port}\n"), port)
}

/// An event of `app` with an aiortc publisher sending for `seconds`: (event id, WHEP
/// URL, the publisher).
async fn publishing(app: &TestApp, seconds: &str) -> (String, String, Peer) {
    let (event, token) = setup(app).await;
    let whip = app.url(&format!("/whip/{event}"));
    let whep = app.url(&format!("/whep/{event}"));
    let mut publisher = Peer::start("whip_publisher.py", &[&whip, &token, seconds]);
    let published = publisher.next(PEER_TIMEOUT).await.expect("publisher");
    assert_eq!(published["status"], 201, "{published}");
    // The event follows its publisher: public players are admitted once it is live.
    let status = wait_status(app, &event, |s| s["on_air"] == true).await;
    assert_eq!(status["on_air"], true, "{status}");
    (event, whep, publisher)
}

async fn setup(app: &TestApp) -> (String, String) {
    app.create_user("admin", "correct horse battery", &["admin"]);
    let api = app.create_token("admin", "media");
    let client = app.anonymous_client();
    let event: Value = client
        .post(app.url("/api/v1/events"))
        .bearer_auth(&api)
        .json(&json!({"kind": "interview", "title": "媒体测试",
                      "scheduled_start": "2030-01-01T09:30:00+08:00",
                      "scheduled_end": "2030-01-01T11:00:00+08:00",
                      "follow_publisher": true}))
        .send()
        .await
        .expect("create event")
        .json()
        .await
        .expect("event JSON");
    let id = event["id"].as_str().expect("event id").to_owned();
    let token: Value = client
        .post(app.url(&format!("/api/v1/events/{id}/publish-token")))
        .bearer_auth(&api)
        .send()
        .await
        .expect("publish token")
        .json()
        .await
        .expect("token JSON");
    (id, token["token"].as_str().expect("token").to_owned())
}

async fn media_status(app: &TestApp, event: &str) -> Value {
    app.anonymous_client()
        .get(app.url(&format!("/api/v1/events/{event}/media")))
        .send()
        .await
        .expect("media status")
        .json()
        .await
        .expect("status JSON")
}

/// Waits (bounded) until the event's media status satisfies `ready`.
async fn wait_status(app: &TestApp, event: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = media_status(app, event).await;
        if ready(&status) || tokio::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn aiortc_publisher_two_aiortc_viewers_decode_and_resume_after_the_publisher_returns() {
    let app = TestApp::spawn_with(AppOptions::default().config(MEDIA_CONFIG)).await;
    let (event, token) = setup(&app).await;
    let whip = app.url(&format!("/whip/{event}"));
    let whep = app.url(&format!("/whep/{event}"));

    // Not started yet: the public may not watch (409 not_live, retry later).
    let early = app
        .anonymous_client()
        .post(&whep)
        .header("content-type", "application/sdp")
        .body("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n")
        .send()
        .await
        .expect("early WHEP");
    // Before the start the public may not watch (only staff preview a rehearsal).
    assert_eq!(early.status(), 409);
    assert!(early.headers().get("retry-after").is_some());
    let body: Value = early.json().await.expect("error JSON");
    assert_eq!(body["error"]["code"], "not_live", "{body}");

    let mut publisher = Peer::start("whip_publisher.py", &[&whip, &token, "12"]);
    let published = publisher
        .next(PEER_TIMEOUT)
        .await
        .expect("publisher started");
    assert_eq!(published["status"], 201, "{published}");
    let status = wait_status(&app, &event, |s| s["publishing"] == true).await;
    assert_eq!(status["publishing"], true, "{status}");
    // follow_publisher: the event went live with its publisher.
    let status = wait_status(&app, &event, |s| s["event_status"] == "live").await;
    assert_eq!(status["event_status"], "live", "{status}");

    // A second publisher while the first is live: 409.
    let second = app
        .anonymous_client()
        .post(&whip)
        .bearer_auth(&token)
        .header("content-type", "application/sdp")
        .body(include_str!("../peers/sample_offer.sdp"))
        .send()
        .await
        .expect("second WHIP");
    assert_eq!(second.status(), 409);

    // A viewer that can decode none of the published codecs is refused clearly.
    let vp9_only = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
                    m=video 9 UDP/TLS/RTP/SAVPF 98\r\nc=IN IP4 0.0.0.0\r\n\
                    a=recvonly\r\na=rtpmap:98 VP9/90000\r\n";
    let refused = app
        .anonymous_client()
        .post(&whep)
        .header("content-type", "application/sdp")
        .body(vp9_only)
        .send()
        .await
        .expect("VP9-only WHEP");
    assert_eq!(refused.status(), 406);
    let body: Value = refused.json().await.expect("error JSON");
    assert_eq!(body["error"]["code"], "no_common_codec", "{body}");

    // Two viewers, long enough to outlive the first publisher and see the second.
    let viewer_a = Peer::start("whep_viewer.py", &[&whep, "24"]);
    let viewer_b = Peer::start("whep_viewer.py", &[&whep, "24"]);
    let viewers_started = tokio::time::Instant::now();

    // The first publisher stops after 12 s (DELETE); viewers stay, paused.
    let _ = publisher.finish().await;
    let paused = wait_status(&app, &event, |s| s["paused"] == true).await;
    assert_eq!(paused["publishing"], false, "{paused}");
    assert_eq!(paused["viewers"], 2, "{paused}");

    // The same token publishes again; the viewers' frame counts keep rising.
    let mut again = Peer::start("whip_publisher.py", &[&whip, &token, "10"]);
    let published = again.next(PEER_TIMEOUT).await.expect("publisher returned");
    assert_eq!(published["status"], 201, "{published}");
    let resumed_at = viewers_started.elapsed().as_secs_f64();

    // The forwarding shows in /metrics, per event (scraped while the viewers watch).
    let metrics = app
        .anonymous_client()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let forwarded = metrics
        .lines()
        .find(|l| {
            l.starts_with("gongkai_media_packets_forwarded_total")
                && l.contains(&format!("event=\"{event}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        forwarded > 300.0,
        "forwarded packets in /metrics: {forwarded}"
    );
    let dropped_line = metrics
        .lines()
        .find(|l| l.starts_with("gongkai_media_packets_dropped_total"))
        .unwrap_or("");
    eprintln!("forwarded {forwarded}; {dropped_line}");
    // Both viewers are on the direct send path (own SRTP context, GSO sends), not the
    // crate's pipeline: the frames counted below went that way.
    let direct = metrics
        .lines()
        .find(|l| {
            l.starts_with("gongkai_media_viewers_direct{")
                && l.contains(&format!("event=\"{event}\""))
        })
        .unwrap_or("");
    assert!(
        direct.ends_with(" 2"),
        "direct viewers in /metrics: {direct:?}"
    );

    let a = viewer_a.finish().await;
    let b = viewer_b.finish().await;
    let _ = again.finish().await;
    for lines in [&a, &b] {
        let last = lines.last().expect("viewer output");
        let frames = |line: &Value| line["video_frames"].as_u64().unwrap_or(0);
        // Frames decoded before the second publisher came back ...
        let before = lines
            .iter()
            .filter(|l| l["t"].as_f64().is_some_and(|t| t <= resumed_at))
            .map(frames)
            .max()
            .unwrap_or(0);
        assert!(
            before > 100,
            "too few frames from the first publisher: {last}"
        );
        // ... and more than ~3 s worth after it, without the viewer reconnecting.
        assert!(
            frames(last) > before + 90,
            "viewer did not resume: {before} before, {last}"
        );
        assert!(last["audio_frames"].as_u64().unwrap_or(0) > 100, "{last}");
        eprintln!("viewer: {before} frames before the publisher returned; final {last}");
    }
}

/// `[media] udp_port`: every publisher and viewer on one UDP port (the one a firewall
/// opens). Answers advertise only that port, and media flows both ways through it,
/// including the direct send path and its retransmissions.
#[tokio::test]
async fn one_udp_port_carries_the_publisher_and_every_viewer() {
    let (config, port) = one_port_config();
    let app = TestApp::spawn_with(AppOptions::default().config(&config)).await;
    let (event, whep, publisher) = publishing(&app, "16").await;
    wait_status(&app, &event, |s| s["publishing"] == true).await;

    // The answer's host candidates name the shared port and nothing else. (503 until the
    // publisher's tracks have arrived, as players retry.)
    let mut attempts = 0;
    let answer = loop {
        let answer = app
            .anonymous_client()
            .post(&whep)
            .header("content-type", "application/sdp")
            .body(include_str!("../peers/sample_offer.sdp"))
            .send()
            .await
            .expect("WHEP");
        attempts += 1;
        if answer.status() != 503 || attempts == 40 {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(answer.status(), 201);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let sdp = answer.text().await.expect("answer");
    let ports: Vec<&str> = sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" typ host"))
        .filter_map(|l| l.split(' ').nth(5))
        .collect();
    assert!(!ports.is_empty(), "no host candidates: {sdp}");
    let port = port.to_string();
    assert!(ports.iter().all(|p| *p == port), "{ports:?} in {sdp}");
    let deleted = app
        .anonymous_client()
        .delete(app.url(&location))
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success());

    let mut lossy = Peer::start("whep_viewer.py", &[&whep, "10", "--drop-every", "10"]);
    let plain = Peer::start("whep_viewer.py", &[&whep, "10"]);
    let watching = viewer_until(&mut lossy, |l| l["video_frames"].as_u64() > Some(0)).await;
    let direct = event_metric(&app, "gongkai_media_viewers_direct", &event).await;
    let (lossy, plain) = (lossy.finish().await, plain.finish().await);
    let _ = publisher.finish().await;
    assert_eq!(direct, 2.0, "both viewers on the direct path: {watching}");
    for lines in [&lossy, &plain] {
        let last = lines.last().expect("viewer output");
        assert!(last["video_frames"].as_u64().unwrap_or(0) > 120, "{last}");
        assert!(last["audio_frames"].as_u64().unwrap_or(0) > 100, "{last}");
    }
    let last = lossy.last().expect("lossy viewer output");
    let dropped = last["dropped"].as_u64().unwrap_or(0);
    assert!(dropped >= 10, "{last}");
    assert!(
        last["recovered"].as_u64().unwrap_or(0) * 10 >= dropped * 8,
        "retransmissions through the shared port: {last}"
    );
}

/// The direct send path answers NACKs itself (the crate's NACK responder never saw those
/// packets): a viewer that loses every 10th video packet on the way in gets them again.
/// It also sends the sender reports players align audio and video with.
#[tokio::test]
async fn a_viewer_losing_packets_gets_them_retransmitted_and_keeps_decoding() {
    let app = TestApp::spawn_with(AppOptions::default().config(MEDIA_CONFIG)).await;
    let (event, whep, publisher) = publishing(&app, "16").await;

    let mut viewer = Peer::start("whep_viewer.py", &[&whep, "12", "--drop-every", "10"]);
    let watching = viewer_until(&mut viewer, |l| l["video_frames"].as_u64() > Some(0)).await;
    let direct = event_metric(&app, "gongkai_media_viewers_direct", &event).await;
    let lines = viewer.finish().await;
    let retransmitted =
        event_metric(&app, "gongkai_media_packets_retransmitted_total", &event).await;
    let _ = publisher.finish().await;

    let last = lines.last().expect("viewer output");
    let dropped = last["dropped"].as_u64().unwrap_or(0);
    let recovered = last["recovered"].as_u64().unwrap_or(0);
    eprintln!("{last}; server retransmitted {retransmitted}, direct viewers {direct}");
    assert!(
        dropped >= 20,
        "the viewer lost too few packets to tell: {last}"
    );
    // The last few losses may still be in flight when the viewer stops.
    assert!(
        recovered * 10 >= dropped * 8,
        "lost packets were not retransmitted: {last}"
    );
    assert!(
        retransmitted >= recovered as f64,
        "server count {retransmitted}: {last}"
    );
    assert!(last["video_frames"].as_u64().unwrap_or(0) > 150, "{last}");
    assert_eq!(direct, 1.0, "the viewer is on the direct path: {watching}");
    // The direct path sends the RTCP sender reports the crate's reporter no longer can.
    assert!(
        last["reported_video_packets"].as_u64().unwrap_or(0) > 100,
        "no sender reports: {last}"
    );
}

#[tokio::test]
async fn whip_and_whep_reject_bad_input_with_clear_errors() {
    let app = TestApp::spawn_with(AppOptions::default().config(MEDIA_CONFIG)).await;
    let (event, token) = setup(&app).await;
    let client = app.anonymous_client();
    let whip = app.url(&format!("/whip/{event}"));
    let offer = include_str!("../peers/sample_offer.sdp");

    let send = |url: String, token: Option<&str>, content_type: &str, body: Vec<u8>| {
        let mut request = client
            .post(url)
            .header("content-type", content_type.to_owned())
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };

    // (name, url, token, content type, body, status, error code)
    type Case<'a> = (
        &'a str,
        String,
        Option<&'a str>,
        &'a str,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "no token",
            whip.clone(),
            None,
            "application/sdp",
            offer.into(),
            401,
            "unauthorized",
        ),
        (
            "wrong token",
            whip.clone(),
            Some("gkp_wrong"),
            "application/sdp",
            offer.into(),
            403,
            "forbidden",
        ),
        (
            "wrong type",
            whip.clone(),
            Some(&token),
            "application/json",
            offer.into(),
            415,
            "unsupported_media_type",
        ),
        (
            "garbage",
            whip.clone(),
            Some(&token),
            "application/sdp",
            b"\x00\xffnot sdp".to_vec(),
            400,
            "bad_request",
        ),
        (
            "garbage text",
            whip.clone(),
            Some(&token),
            "application/sdp",
            b"v=0\r\nthis is not sdp".to_vec(),
            400,
            "bad_request",
        ),
        (
            "oversized",
            whip.clone(),
            Some(&token),
            "application/sdp",
            vec![b'a'; 200 * 1024],
            413,
            "payload_too_large",
        ),
        (
            "unknown event",
            app.url("/whip/nosuchevent2"),
            Some(&token),
            "application/sdp",
            offer.into(),
            404,
            "not_found",
        ),
        (
            "unknown event (WHEP)",
            app.url("/whep/nosuchevent2"),
            None,
            "application/sdp",
            offer.into(),
            404,
            "not_found",
        ),
        (
            "not started",
            app.url(&format!("/whep/{event}")),
            None,
            "application/sdp",
            offer.into(),
            409,
            "not_live",
        ),
    ];
    for (name, url, token, content_type, body, status, code) in cases {
        let (got, body) = send(url, token, content_type, body).await;
        assert_eq!(got, status, "{name}: {body}");
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
    }

    // Trickle is not supported: 405 with Allow; CORS preflight for browser publishers.
    let patch = client
        .patch(app.url(&format!("/whip/{event}/abc")))
        .header("content-type", "application/trickle-ice-sdpfrag")
        .body("a=candidate:1 1 udp 1 127.0.0.1 9 typ host")
        .send()
        .await
        .expect("PATCH");
    assert_eq!(patch.status(), 405);
    assert!(patch.headers().get("allow").is_some());
    let preflight = client
        .request(reqwest::Method::OPTIONS, &whip)
        .header("origin", "https://obs.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "*",
        "{:?}",
        preflight.headers()
    );

    // Nothing else was disturbed: the API still answers.
    let health = client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
}

/// The event page player's decoded-frame count, as it publishes it.
const PLAYER_FRAMES: &str = "Number(document.getElementById('player').dataset.framesDecoded || 0)";

async fn frames_decoded(client: &fantoccini::Client) -> anyhow::Result<f64> {
    let value = client
        .execute(&format!("return {PLAYER_FRAMES};"), vec![])
        .await?;
    Ok(value.as_f64().unwrap_or(0.0))
}

/// Waits until the event page's player has decoded more than `above` frames.
async fn wait_frames_above(
    client: &fantoccini::Client,
    above: f64,
    timeout: Duration,
) -> anyhow::Result<Value> {
    wait_js(client, PLAYER_FRAMES, timeout, |v| {
        v.as_f64().is_some_and(|n| n > above)
    })
    .await
}

/// Polls `script` (a JS expression) in `client` until `done(value)`, at most `timeout`.
async fn wait_js(
    client: &fantoccini::Client,
    script: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = client.execute(&format!("return {script};"), vec![]).await?;
        if done(&value) {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {script}: last {value}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The whole flow in Chromium: a broadcaster goes live from the broadcaster page,
/// a viewer watches and chats on the event page, the broadcaster stops (the player shows
/// "paused"), another publisher takes over, the event ends, and the past event page plays
/// both sessions' recordings beside the text record holding the chat. Every peer shares
/// one UDP port here (`[media] udp_port`), so browsers are tested through the mux too.
#[tokio::test]
async fn chromium_broadcaster_page_live_with_chat_then_stop_and_replay() {
    use crate::event_browser::{choose_nickname, send_chat, wait_text};
    use crate::support::browser::BrowserOptions;
    use fantoccini::Locator;

    let app = TestApp::spawn_with(AppOptions::default().config(&one_port_config().0)).await;
    // OBS's token, issued before anyone opens the broadcaster page.
    let (event, obs_token) = setup(&app).await;
    let api = app.create_token("admin", "media-flow");
    let http = app.anonymous_client();
    let app_url = app.url("").trim_end_matches('/').to_owned();
    let base = app.url("");
    let base = base.trim_end_matches('/').to_owned();
    let viewer = Browser::start(BrowserOptions { media: true }).await;
    let viewer_client = viewer.client.clone();
    Browser::run_with(
        "media_broadcast",
        BrowserOptions { media: true },
        |broadcaster| async move {
            broadcaster.goto(&format!("{base}/login")).await?;
            for (css, text) in [
                ("#username", "admin"),
                ("#password", "correct horse battery"),
            ] {
                broadcaster
                    .find(Locator::Css(css))
                    .await?
                    .send_keys(text)
                    .await?;
            }
            broadcaster
                .find(Locator::Css("button[type=submit]"))
                .await?
                .click()
                .await?;
            wait_js(
                &broadcaster,
                "location.pathname",
                Duration::from_secs(20),
                |v| v.as_str().is_some_and(|p| p.starts_with("/staff")),
            )
            .await?;
            broadcaster
                .goto(&format!("{base}/staff/events/{event}/broadcast"))
                .await?;
            wait_js(
                &broadcaster,
                "!!document.getElementById('preview').srcObject",
                Duration::from_secs(20),
                |v| v == &Value::Bool(true),
            )
            .await?;
            broadcaster
                .find(Locator::Css("#start"))
                .await?
                .click()
                .await?;
            wait_js(
                &broadcaster,
                "document.getElementById('broadcast-state').dataset.state",
                Duration::from_secs(30),
                |v| v == "live",
            )
            .await?;

            let client = &viewer_client;
            client.goto(&format!("{base}/events/{event}")).await?;
            let frames = wait_frames_above(client, 0.0, Duration::from_secs(30)).await?;
            eprintln!("chromium viewer framesDecoded: {frames}");

            // The viewer chats beside the player.
            choose_nickname(client, "观众甲").await?;
            send_chat(client, "画面很清楚").await?;
            wait_text(client, "#chat-messages", "画面很清楚").await?;

            // Stop (confirmed in the page's dialog: it interrupts the public stream): the
            // player shows "paused" (viewer still connected, publisher gone).
            broadcaster
                .find(Locator::Css("#stop"))
                .await?
                .click()
                .await?;
            broadcaster
                .wait()
                .at_most(Duration::from_secs(20))
                .for_element(Locator::Css("#stop-dialog[open] #stop-confirm"))
                .await?
                .click()
                .await?;
            wait_js(
                client,
                "document.getElementById('player').dataset.state",
                Duration::from_secs(20),
                |v| v == "paused",
            )
            .await?;

            // An aiortc publisher takes over the event: the same Chromium player decodes
            // its frames too, without reloading.
            // It publishes with OBS's token, issued before the broadcaster page was opened:
            // the page's own credential did not rotate it.
            let before = frames_decoded(client).await?;
            let publisher = Peer::start(
                "whip_publisher.py",
                &[&format!("{app_url}/whip/{event}"), &obs_token, "8"],
            );
            let after = wait_frames_above(client, before + 30.0, Duration::from_secs(30)).await?;
            eprintln!("chromium viewer framesDecoded: {before} -> {after} (aiortc publisher)");
            let lines = publisher.finish().await;
            anyhow::ensure!(
                lines.iter().any(|l| l["event"] == "ended"),
                "aiortc publisher: {lines:?}"
            );

            // The event ends; both sessions' segments are finished and listed.
            let ended = http
                .post(format!("{base}/api/v1/events/{event}/end"))
                .bearer_auth(&api)
                .send()
                .await?;
            anyhow::ensure!(ended.status().is_success(), "end: {}", ended.status());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let body: Value = http
                    .get(format!("{base}/api/v1/events/{event}/recordings"))
                    .send()
                    .await?
                    .json()
                    .await?;
                let list = body["recordings"].as_array().cloned().unwrap_or_default();
                if list.len() == 2 && list.iter().all(|r| r["recording"] == false) {
                    break;
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "recordings never finished: {body}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }

            // The past event page: the text record holds the chat, the player replays.
            client.goto(&format!("{base}/events/{event}")).await?;
            wait_text(client, "#record-chat", "画面很清楚").await?;
            let segments = wait_js(
                client,
                "document.querySelectorAll('#replay-segments a').length",
                Duration::from_secs(20),
                |v| v.as_u64().is_some_and(|n| n >= 2),
            )
            .await?;
            let replayed = wait_js(
                client,
                "(() => { const v = document.getElementById('replay'); v.muted = true; \
                 v.play().catch(() => {}); \
                 return v.readyState >= 2 ? v.getVideoPlaybackQuality().totalVideoFrames : 0; })()",
                Duration::from_secs(30),
                |v| v.as_u64().is_some_and(|n| n > 0),
            )
            .await?;
            eprintln!("replay: {segments} segments, {replayed} frames decoded in Chromium");
            Ok(())
        },
    )
    .await;
    viewer.close().await;
}

/// What `ffprobe` (Debian's ffmpeg, installed by `./test.sh`) reads from a file: codec
/// names of its streams and the container's duration in seconds.
fn ffprobe(path: &std::path::Path) -> (Vec<String>, f64) {
    try_ffprobe(path)
        .unwrap_or_else(|error| panic!("ffprobe failed on {}: {error}", path.display()))
}

/// As [`ffprobe`], with its complaint as the error (e.g. a file with no media yet).
fn try_ffprobe(path: &std::path::Path) -> Result<(Vec<String>, f64), String> {
    let output = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-show_format"])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe (Debian's ffmpeg; ./test.sh installs it)");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let probe: Value = serde_json::from_slice(&output.stdout).expect("ffprobe JSON");
    let codecs = probe["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .filter_map(|s| s["codec_name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let duration = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    Ok((codecs, duration))
}

#[tokio::test]
async fn each_aiortc_session_is_recorded_as_a_playable_webm_segment_and_replayed() {
    use crate::support::browser::BrowserOptions;

    let app = TestApp::spawn_with(AppOptions::default().config(MEDIA_CONFIG)).await;
    let (event, token) = setup(&app).await;
    let whip = app.url(&format!("/whip/{event}"));
    let client = app.anonymous_client();

    let dir = tempfile::tempdir().expect("temp dir");
    // Publish, stop (DELETE), publish again: two sessions, two segments.
    for session in 1..=2 {
        let mut publisher = Peer::start("whip_publisher.py", &[&whip, &token, "5"]);
        if session == 1 {
            // While it is written, the segment is already a readable (live) WebM: what a
            // crash would leave behind.
            let first = publisher
                .next(PEER_TIMEOUT)
                .await
                .expect("publisher started");
            assert_eq!(first["status"], 201, "{first}");
            let codecs = streams_while_recording(&app, &event, &dir.path().join("live.webm")).await;
            assert_eq!(codecs, ["vp8", "opus"], "streams of the file being written");
        }
        let mut lines = publisher.finish().await;
        if session == 1 {
            lines.insert(0, json!({"status": 201}));
        }
        assert_eq!(
            lines.first().map(|l| l["status"].clone()),
            Some(json!(201)),
            "session {session}: {lines:?}"
        );
        assert!(
            lines.iter().any(|l| l["event"] == "ended")
                && !lines.iter().any(|l| l["event"] == "delete_failed"),
            "session {session}: {lines:?}"
        );
        let status = wait_status(&app, &event, |s| s["publishing"] == false).await;
        assert_eq!(status["publishing"], false, "{status}");
    }
    let url = app.url(&format!("/api/v1/events/{event}/recordings"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let recordings = loop {
        let body: Value = client
            .get(&url)
            .send()
            .await
            .expect("recordings")
            .json()
            .await
            .expect("recordings JSON");
        let list = body["recordings"].as_array().cloned().unwrap_or_default();
        let finished = list.len() == 2 && list.iter().all(|r| r["recording"] == false);
        if finished || tokio::time::Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(recordings.len(), 2, "{recordings:?}");

    for (index, recording) in recordings.iter().enumerate() {
        assert_eq!(recording["segment"], index as u64 + 1, "{recording}");
        assert_eq!(recording["codecs"], "vp8,opus", "{recording}");
        assert_eq!(recording["recording"], false, "{recording}");
        let duration_ms = recording["duration_ms"].as_u64().unwrap_or(0);
        assert!(duration_ms > 1000, "{recording}");
        let file_url = app.url(recording["url"].as_str().expect("url"));
        let response = client.get(&file_url).send().await.expect("recording file");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "video/webm");
        assert_eq!(response.headers()["accept-ranges"], "bytes");
        let body = response.bytes().await.expect("file body");
        assert!(!body.is_empty());
        assert_eq!(Some(body.len() as u64), recording["bytes"].as_u64());
        let path = dir.path().join(format!("{index}.webm"));
        std::fs::write(&path, &body).expect("write copy");
        let (codecs, duration) = ffprobe(&path);
        assert!(codecs.iter().any(|c| c == "vp8"), "streams: {codecs:?}");
        assert!(codecs.iter().any(|c| c == "opus"), "streams: {codecs:?}");
        assert!(duration > 1.0, "ffprobe duration {duration}");
        eprintln!(
            "segment {}: {} bytes, {duration} s, {codecs:?}",
            index + 1,
            body.len()
        );

        // Range requests: the bytes asked for, 206; past the end, 416.
        let partial = client
            .get(&file_url)
            .header("range", "bytes=100-1123")
            .send()
            .await
            .expect("range request");
        assert_eq!(partial.status(), 206);
        assert_eq!(
            partial.headers()["content-range"],
            format!("bytes 100-1123/{}", body.len()).as_str()
        );
        let part = partial.bytes().await.expect("range body");
        assert_eq!(&part[..], &body[100..1124]);
        let beyond = client
            .get(&file_url)
            .header("range", format!("bytes={}-", body.len() + 10))
            .send()
            .await
            .expect("bad range request");
        assert_eq!(beyond.status(), 416);
    }

    // Nothing but parsed ids reaches the file system.
    for bad in [
        format!("/recordings/{event}/..%2F..%2Fgongkai.db"),
        format!("/recordings/{event}/3.webm"),
        format!("/recordings/{event}/1.mp4"),
        "/recordings/nosuchevent/1.webm".to_owned(),
    ] {
        let response = client.get(app.url(&bad)).send().await.expect("bad path");
        assert_eq!(response.status(), 404, "{bad}");
    }

    // The past event page plays the recording in Chromium: frames decoded.
    let api = app.create_token("admin", "media-end");
    let ended = client
        .post(app.url(&format!("/api/v1/events/{event}/end")))
        .bearer_auth(&api)
        .send()
        .await
        .expect("end event");
    assert!(ended.status().is_success(), "{:?}", ended.status());
    let page = app.url(&format!("/events/{event}"));
    Browser::run_with(
        "media_replay",
        BrowserOptions { media: true },
        |browser| async move {
            browser.goto(&page).await?;
            let segments = wait_js(
                &browser,
                "document.querySelectorAll('#replay-segments a').length",
                Duration::from_secs(20),
                |v| v.as_u64().is_some_and(|n| n > 0),
            )
            .await?;
            anyhow::ensure!(segments == 2, "segments listed: {segments}");
            let frames = wait_js(
                &browser,
                "(() => { const v = document.getElementById('replay'); v.muted = true; \
                 v.play().catch(() => {}); \
                 return v.readyState >= 2 ? v.getVideoPlaybackQuality().totalVideoFrames : 0; })()",
                Duration::from_secs(30),
                |v| v.as_u64().is_some_and(|n| n > 0),
            )
            .await?;
            eprintln!("replay: {frames} frames decoded in Chromium");
            Ok(())
        },
    )
    .await;
}

#[tokio::test]
async fn an_h264_session_is_recorded_with_its_parameter_sets() {
    let app = TestApp::spawn_with(AppOptions::default().config(MEDIA_CONFIG)).await;
    let (event, token) = setup(&app).await;
    let whip = app.url(&format!("/whip/{event}"));
    let client = app.anonymous_client();
    let lines = Peer::start("whip_publisher.py", &[&whip, &token, "4", "h264"])
        .finish()
        .await;
    assert_eq!(
        lines.first().map(|l| l["status"].clone()),
        Some(json!(201)),
        "{lines:?}"
    );
    let url = app.url(&format!("/api/v1/events/{event}/recordings"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let recording = loop {
        let body: Value = client
            .get(&url)
            .send()
            .await
            .expect("recordings")
            .json()
            .await
            .expect("recordings JSON");
        let first = body["recordings"][0].clone();
        if first["recording"] == false || tokio::time::Instant::now() > deadline {
            break first;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(recording["codecs"], "h264,opus", "{recording}");
    let body = client
        .get(app.url(recording["url"].as_str().expect("url")))
        .send()
        .await
        .expect("file")
        .bytes()
        .await
        .expect("file body");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h264.webm");
    std::fs::write(&path, &body).expect("write copy");
    let (codecs, duration) = ffprobe(&path);
    assert_eq!(codecs, ["h264", "opus"]);
    assert!(duration > 1.0, "ffprobe duration {duration}");
    // The frames decode: ffmpeg reads every video frame without an error.
    let decoded = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&path)
        .args(["-map", "0:v", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        decoded.status.success(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
}

/// Polls (bounded) the event's first segment while it is being written until `ffprobe`
/// finds its two streams in a copy at `copy`; returns the codecs found.
async fn streams_while_recording(
    app: &TestApp,
    event: &str,
    copy: &std::path::Path,
) -> Vec<String> {
    let client = app.anonymous_client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body: Value = client
            .get(app.url(&format!("/api/v1/events/{event}/recordings")))
            .send()
            .await
            .expect("recordings")
            .json()
            .await
            .expect("recordings JSON");
        let mut codecs = Vec::new();
        if let Some(url) = body["recordings"][0]["url"].as_str() {
            assert_eq!(body["recordings"][0]["recording"], true, "{body}");
            let bytes = client
                .get(app.url(url))
                .send()
                .await
                .expect("live file")
                .bytes()
                .await
                .expect("live body");
            std::fs::write(copy, &bytes).expect("write copy");
            // Before its first cluster the file has no media: ffprobe says EOF.
            codecs = try_ffprobe(copy).map(|(c, _)| c).unwrap_or_default();
        }
        if codecs.len() == 2 || tokio::time::Instant::now() > deadline {
            return codecs;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_recording_cut_by_a_crash_stays_readable_and_is_closed_at_the_next_start() {
    let mut app = TestApp::spawn_with(AppOptions::default().config(MEDIA_CONFIG)).await;
    let (event, token) = setup(&app).await;
    let whip = app.url(&format!("/whip/{event}"));
    let mut publisher = Peer::start("whip_publisher.py", &[&whip, &token, "30"]);
    let first = publisher
        .next(PEER_TIMEOUT)
        .await
        .expect("publisher started");
    assert_eq!(first["status"], 201, "{first}");
    let dir = tempfile::tempdir().expect("temp dir");
    let codecs = streams_while_recording(&app, &event, &dir.path().join("live.webm")).await;
    assert_eq!(codecs, ["vp8", "opus"]);

    // SIGKILL mid-recording: nothing is finished; the next start closes the row.
    app.kill_and_restart().await;
    drop(publisher);
    let client = app.anonymous_client();
    let url = app.url(&format!("/api/v1/events/{event}/recordings"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let recording = loop {
        let body: Value = client
            .get(&url)
            .send()
            .await
            .expect("recordings")
            .json()
            .await
            .expect("recordings JSON");
        let first = body["recordings"][0].clone();
        if first["recording"] == false || tokio::time::Instant::now() > deadline {
            break first;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(recording["recording"], false, "{recording}");
    let body = client
        .get(app.url(recording["url"].as_str().expect("url")))
        .send()
        .await
        .expect("file")
        .bytes()
        .await
        .expect("file body");
    assert_eq!(
        Some(body.len() as u64),
        recording["bytes"].as_u64(),
        "{recording}"
    );
    let path = dir.path().join("crashed.webm");
    std::fs::write(&path, &body).expect("write copy");
    let (codecs, _) = ffprobe(&path);
    assert_eq!(codecs, ["vp8", "opus"]);
}

/// The value of `metric` for `event` in a `/metrics` scrape (0 when absent).
async fn event_metric(app: &TestApp, metric: &str, event: &str) -> f64 {
    let metrics = app
        .anonymous_client()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!("{metric}{{")) && l.contains(&format!("event=\"{event}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Reads a viewer's lines until one satisfies `done` (bounded by the peer's own lifetime).
async fn viewer_until(viewer: &mut Peer, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    while let Some(line) = viewer.next(PEER_TIMEOUT).await {
        let finished = done(&line) || line["done"] == true;
        last = line;
        if finished {
            break;
        }
    }
    last
}

/// A TURN URL on a closed loopback port: only the `Link` headers matter here. TCP, so the
/// SFU's own peers are refused at once (a silent UDP port would hold their ICE gathering
/// to its timeout).
const TURN_CONFIG: &str = "[media]\nbind_ip = \"127.0.0.1\"\n\
    ice_servers = \"turn:127.0.0.1:9?transport=tcp\"\n\
    turn_secret = \"north\"\nturn_ttl_secs = 600\n";

#[tokio::test]
async fn an_unlisted_event_needs_a_viewer_token_and_answers_carry_fresh_turn_credentials() {
    let app = TestApp::spawn_with(AppOptions::default().config(TURN_CONFIG)).await;
    let (event, token) = setup(&app).await;
    let api = app.create_token("admin", "media-unlisted");
    let client = app.anonymous_client();
    let edited = client
        .patch(app.url(&format!("/api/v1/events/{event}")))
        .bearer_auth(&api)
        .json(&json!({"visibility": "unlisted"}))
        .send()
        .await
        .expect("edit event");
    assert_eq!(edited.status(), 200);

    let mint_url = app.url(&format!("/api/v1/events/{event}/viewer-tokens"));
    let anonymous = client.post(&mint_url).send().await.expect("mint");
    assert_eq!(anonymous.status(), 401);
    let mint = |ttl: Option<u64>| {
        let mut request = client.post(&mint_url).bearer_auth(&api);
        if let Some(ttl) = ttl {
            request = request.json(&json!({ "ttl_secs": ttl }));
        }
        async move {
            let response = request.send().await.expect("mint");
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.expect("token JSON")
        }
    };
    let minted = mint(None).await;
    let viewer_token = minted["token"].as_str().expect("token").to_owned();
    assert_eq!(
        minted["share_url"],
        format!("/events/{event}#t={viewer_token}"),
        "{minted}"
    );
    let short = mint(Some(1)).await;

    let whep = app.url(&format!("/whep/{event}"));
    let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
    let post = |token: Option<String>| {
        let mut request = client
            .post(&whep)
            .header("content-type", "application/sdp")
            .body(offer);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.expect("WHEP");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(post(None).await.0, 401);
    assert_eq!(post(Some("gkv1.99999999999.AAAA".into())).await.0, 403);
    // Another event's token is no token for this one.
    let other: Value = client
        .post(app.url("/api/v1/events"))
        .bearer_auth(&api)
        .json(&json!({"kind": "interview", "title": "另一场",
                      "scheduled_start": "2030-01-01T09:30:00+08:00",
                      "scheduled_end": "2030-01-01T11:00:00+08:00"}))
        .send()
        .await
        .expect("create event")
        .json()
        .await
        .expect("event JSON");
    let other = other["id"].as_str().expect("event id");
    let foreign: Value = client
        .post(app.url(&format!("/api/v1/events/{other}/viewer-tokens")))
        .bearer_auth(&api)
        .send()
        .await
        .expect("mint other")
        .json()
        .await
        .expect("token JSON");
    let foreign = foreign["token"].as_str().expect("token").to_owned();
    assert_eq!(post(Some(foreign)).await.0, 403);
    // The 1-second token is past its expiry two seconds later.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = post(Some(short["token"].as_str().expect("token").into())).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{body}"
    );
    // A valid token passes the check (the event has not started: 409 not_live).
    let (status, body) = post(Some(viewer_token.clone())).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("not_live")),
        "{body}"
    );

    let whip = app.url(&format!("/whip/{event}"));
    let mut publisher = Peer::start("whip_publisher.py", &[&whip, &token, "10"]);
    let published = publisher.next(PEER_TIMEOUT).await.expect("publisher");
    assert_eq!(published["status"], 201, "{published}");
    let status = wait_status(&app, &event, |s| s["publishing"] == true).await;
    assert_eq!(status["publishing"], true, "{status}");

    let mut first = Peer::start("whep_viewer.py", &[&whep, "6", "--token", &viewer_token]);
    let mut second = Peer::start("whep_viewer.py", &[&whep, "6", "--token", &viewer_token]);
    let mut turn_usernames = Vec::new();
    for viewer in [&mut first, &mut second] {
        let answered = viewer.next(PEER_TIMEOUT).await.expect("viewer answered");
        assert_eq!(answered["status"], 201, "{answered}");
        let links: Vec<String> = answered["links"]
            .as_array()
            .expect("links")
            .iter()
            .filter_map(|l| l.as_str().map(str::to_owned))
            .collect();
        let turn = links
            .iter()
            .find(|l| l.starts_with("<turn:"))
            .unwrap_or_else(|| panic!("no TURN link: {links:?}"));
        let field = |name: &str| {
            let start = turn.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
            turn[start..][..turn[start..].find('"').expect("closing quote")].to_owned()
        };
        let username = field("username");
        let (expiry, id) = username.split_once(':').expect("<expiry>:<id>");
        let expiry: u64 = expiry.parse().expect("unix expiry");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(expiry > now && expiry <= now + 600, "{username} at {now}");
        assert!(!id.is_empty(), "{username}");
        // coturn's check: base64(HMAC-SHA1(secret, username)).
        let expected = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf %s '{username}' | openssl dgst -sha1 -hmac north -binary | base64"
            ))
            .output()
            .expect("openssl");
        assert_eq!(
            field("credential"),
            String::from_utf8_lossy(&expected.stdout).trim(),
            "{turn}"
        );
        turn_usernames.push(username);
    }
    assert_ne!(turn_usernames[0], turn_usernames[1]);
    for viewer in [first, second] {
        let lines = viewer.finish().await;
        let last = lines.last().expect("viewer output");
        assert!(last["video_frames"].as_u64().unwrap_or(0) > 30, "{last}");
    }
    let _ = publisher.finish().await;

    // Its recording, too, is for holders of a viewer token: by bearer, or by the cookie
    // the event page asks for (a <video> sends no Authorization header).
    let listing = app.url(&format!("/api/v1/events/{event}/recordings"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let segment = loop {
        let list: Value = app
            .anonymous_client()
            .get(&listing)
            .send()
            .await
            .expect("recordings")
            .json()
            .await
            .expect("recordings JSON");
        if let Some(done) = list["recordings"]
            .as_array()
            .and_then(|r| r.iter().find(|s| s["recording"] == false))
        {
            break done["url"].as_str().expect("url").to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no finished recording: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let file = app.url(&segment);
    let anonymous = app.anonymous_client().get(&file).send().await.expect("GET");
    assert_eq!(anonymous.status(), 401);
    let with_bearer = app
        .anonymous_client()
        .get(&file)
        .bearer_auth(&viewer_token)
        .send()
        .await
        .expect("GET with token");
    assert_eq!(with_bearer.status(), 200);
    assert_eq!(
        with_bearer.headers()["cache-control"],
        "private, max-age=300"
    );
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("a client that keeps cookies, as a browser does");
    let access = browser
        .post(app.url(&format!("/api/v1/events/{event}/replay-access")))
        .bearer_auth(&viewer_token)
        .send()
        .await
        .expect("replay access");
    assert_eq!(access.status(), 204);
    let cookie = access.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        cookie.contains(&format!("Path=/recordings/{event}/")) && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let by_cookie = browser.get(&file).send().await.expect("GET with cookie");
    assert_eq!(by_cookie.status(), 200);
}

#[tokio::test]
async fn h264_reaches_an_h264_only_viewer_and_its_keyframe_requests_reach_the_publisher() {
    let app = TestApp::spawn_with(AppOptions::default().config(MEDIA_CONFIG)).await;
    let (event, token) = setup(&app).await;
    let whip = app.url(&format!("/whip/{event}"));
    let whep = app.url(&format!("/whep/{event}"));
    let mut publisher = Peer::start("whip_publisher.py", &[&whip, &token, "14", "h264"]);
    let published = publisher.next(PEER_TIMEOUT).await.expect("publisher");
    assert_eq!(published["status"], 201, "{published}");
    let status = wait_status(&app, &event, |s| s["publishing"] == true).await;
    assert_eq!(status["publishing"], true, "{status}");

    let mut viewer = Peer::start(
        "whep_viewer.py",
        &[&whep, "10", "--codec", "h264", "--pli-every", "1"],
    );
    let answered = viewer.next(PEER_TIMEOUT).await.expect("viewer answered");
    assert_eq!(answered["status"], 201, "{answered}");
    // Several PLIs, at least a second apart: each is a separate coalescing window.
    let line = viewer_until(&mut viewer, |l| l["plis_sent"].as_u64() >= Some(4)).await;
    assert!(line["plis_sent"].as_u64() >= Some(4), "{line}");
    let received = event_metric(&app, "gongkai_media_viewer_keyframe_requests_total", &event).await;
    let sent = event_metric(&app, "gongkai_media_keyframe_requests_sent_total", &event).await;
    eprintln!("viewer PLIs received {received}, PLIs sent to the publisher {sent}");
    assert!(
        received >= 1.0,
        "the viewer's PLIs did not reach the SFU: {received}"
    );
    // The publisher's start and the viewer's join account for two; four viewer PLIs a
    // second apart fall into at least two further coalescing windows of 500 ms.
    assert!(sent >= 4.0, "PLIs sent to the publisher: {sent}");

    let lines = viewer.finish().await;
    let last = lines.last().expect("viewer output");
    // Decoded H.264 frames (the viewer offered nothing else).
    assert!(last["video_frames"].as_u64().unwrap_or(0) > 60, "{last}");
    let _ = publisher.finish().await;
}

#[tokio::test]
async fn the_broadcaster_pages_publish_credential_leaves_the_obs_token_working() {
    let app = TestApp::spawn_with(AppOptions::default().config(MEDIA_CONFIG)).await;
    let (event, obs_token) = setup(&app).await;
    let api = app.create_token("admin", "media-credential");
    let client = app.anonymous_client();
    let whip = app.url(&format!("/whip/{event}"));
    let offer = include_str!("../peers/sample_offer.sdp");
    let publish = |token: String| {
        let request = client
            .post(&whip)
            .bearer_auth(token)
            .header("content-type", "application/sdp")
            .body(offer);
        async move {
            let response = request.send().await.expect("WHIP");
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (status, location)
        }
    };
    let credential_url = app.url(&format!("/api/v1/events/{event}/publish-credential"));
    let anonymous = client
        .post(&credential_url)
        .send()
        .await
        .expect("credential");
    assert_eq!(anonymous.status(), 401);
    // What the broadcaster page does each time it is opened.
    for _ in 0..2 {
        let minted: Value = client
            .post(&credential_url)
            .bearer_auth(&api)
            .send()
            .await
            .expect("credential")
            .json()
            .await
            .expect("credential JSON");
        assert!(
            minted["token"]
                .as_str()
                .is_some_and(|t| t.starts_with("gks1.")),
            "{minted}"
        );
    }
    let credential: Value = client
        .post(&credential_url)
        .bearer_auth(&api)
        .send()
        .await
        .expect("credential")
        .json()
        .await
        .expect("credential JSON");
    let credential = credential["token"].as_str().expect("token").to_owned();

    // The page's credential publishes and ends its session ...
    let (status, location) = publish(credential.clone()).await;
    assert_eq!(status, 201);
    let ended = client
        .delete(app.url(&location.expect("Location")))
        .bearer_auth(&credential)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(ended.status(), 200);
    // ... and OBS's token, issued before the page was opened, still works.
    let (status, location) = publish(obs_token.clone()).await;
    assert_eq!(status, 201);
    let ended = client
        .delete(app.url(&location.expect("Location")))
        .bearer_auth(&obs_token)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(ended.status(), 200);

    // Forged, re-targeted or viewer-kind credentials are refused.
    let forged = format!(
        "gks1.99999999999.{}",
        &credential[credential.rfind('.').expect("tag") + 1..]
    );
    assert_eq!(publish(forged).await.0, 403);
    let viewer: Value = client
        .post(app.url(&format!("/api/v1/events/{event}/viewer-tokens")))
        .bearer_auth(&api)
        .send()
        .await
        .expect("viewer token")
        .json()
        .await
        .expect("viewer token JSON");
    let viewer = viewer["token"].as_str().expect("token").to_owned();
    assert_eq!(publish(viewer.replacen("gkv1", "gks1", 1)).await.0, 403);
    assert_eq!(publish(viewer).await.0, 403);
}

#[tokio::test]
async fn a_joining_chromium_viewer_decodes_at_once_even_when_the_publisher_ignores_keyframe_requests()
 {
    use crate::support::browser::BrowserOptions;

    let app = TestApp::spawn_with(AppOptions::default().config(MEDIA_CONFIG)).await;
    let (event, token) = setup(&app).await;
    let whip = app.url(&format!("/whip/{event}"));
    let page = app.url(&format!("/events/{event}"));
    let status_url = app.url(&format!("/api/v1/events/{event}/media"));
    let http = app.anonymous_client();
    Browser::run_with(
        "media_gop_cache",
        BrowserOptions { media: true },
        |browser| async move {
            // The browser is up before the publisher starts: the time from the publisher's
            // first frame to the viewer's join is the page's, not the browser's start-up.
            browser.goto("about:blank").await?;
            // The publisher's only keyframe for the next 100 s is its first frame, sent
            // before anyone watches: only the room's cached run since that keyframe can
            // start a decoder. Chromium shows nothing until it has a keyframe (aiortc's
            // decoder would count frames decoded from nothing, so it cannot tell).
            let mut publisher =
                Peer::start("whip_publisher.py", &[&whip, &token, "25", "--ignore-pli"]);
            let published = publisher.next(PEER_TIMEOUT).await;
            anyhow::ensure!(
                published.as_ref().is_some_and(|p| p["status"] == 201),
                "publisher: {published:?}"
            );
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let status: Value = http.get(&status_url).send().await?.json().await?;
                if status["publishing"] == true {
                    break;
                }
                anyhow::ensure!(tokio::time::Instant::now() < deadline, "{status}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The first keyframe is history when the viewer connects, yet the run since
            // it is short enough to be replayed (`GOP_MAX_REPLAY_TICKS`, 5 s).
            tokio::time::sleep(Duration::from_millis(500)).await;
            browser.goto(&page).await?;
            let frames = wait_frames_above(&browser, 0.0, Duration::from_secs(15)).await?;
            eprintln!("chromium viewer framesDecoded: {frames} (publisher ignores PLIs)");
            drop(publisher);
            Ok(())
        },
    )
    .await;
}

#[tokio::test]
async fn an_h264_only_publisher_is_decoded_by_the_chromium_player() {
    use crate::support::browser::BrowserOptions;

    let app = TestApp::spawn_with(AppOptions::default().config(MEDIA_CONFIG)).await;
    let (event, token) = setup(&app).await;
    let whip = app.url(&format!("/whip/{event}"));
    // The publisher offers H.264 only, so the SFU has nothing else to forward: frames the
    // player decodes are H.264 frames.
    let mut publisher = Peer::start("whip_publisher.py", &[&whip, &token, "20", "h264"]);
    let published = publisher.next(PEER_TIMEOUT).await.expect("publisher");
    assert_eq!(published["status"], 201, "{published}");
    let status = wait_status(&app, &event, |s| s["publishing"] == true).await;
    assert_eq!(status["publishing"], true, "{status}");
    let page = app.url(&format!("/events/{event}"));
    Browser::run_with(
        "media_h264_chromium",
        BrowserOptions { media: true },
        |browser| async move {
            browser.goto(&page).await?;
            let frames = wait_frames_above(&browser, 10.0, Duration::from_secs(20)).await?;
            eprintln!("chromium viewer framesDecoded: {frames} (H.264 publisher)");
            Ok(())
        },
    )
    .await;
    drop(publisher);
}
