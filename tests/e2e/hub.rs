//! The live-event hub end to end: real `gongkai serve` processes, real WebSockets
//! (`/ws/events/{id}`), one node on SQLite and two nodes on PostgreSQL + NATS.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::postgres::TestDatabase;
use crate::support::{AppOptions, PASSWORD, TestApp};

const WAIT: Duration = Duration::from_secs(15);

/// A WebSocket client that unpacks `batch` frames and remembers the highest seq.
struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: VecDeque<Value>,
    seq: u64,
    /// Every logged broadcast seen, by seq (to prove nothing arrives twice).
    seen: HashMap<u64, u32>,
    /// Chat message ids currently shown, to turn a re-sent snapshot into deletions.
    shown: Vec<Value>,
    snapshots: u32,
}

impl Ws {
    async fn connect(base_url: &str, event: &str, cookie: Option<&str>, since: Option<u64>) -> Ws {
        let mut url = format!(
            "{}/ws/events/{event}",
            base_url.replacen("http://", "ws://", 1)
        );
        if let Some(since) = since {
            url.push_str(&format!("?since={since}"));
        }
        let mut request = url.into_client_request().expect("ws request");
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("cookie", cookie.parse().expect("cookie header"));
        }
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connects");
        Ws {
            stream,
            pending: VecDeque::new(),
            seq: 0,
            seen: HashMap::new(),
            shown: Vec::new(),
            snapshots: 0,
        }
    }

    async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    async fn send_text(&mut self, text: String) {
        self.stream
            .send(Message::Text(text.into()))
            .await
            .expect("ws send");
    }

    /// The next server message (batches unpacked); panics after `WAIT`.
    async fn next(&mut self) -> Value {
        loop {
            if let Some(message) = self.pending.pop_front() {
                if let Some(seq) = message["seq"].as_u64() {
                    self.seq = self.seq.max(seq);
                    if message["type"] != "viewers" && message["type"] != "snapshot" {
                        *self.seen.entry(seq).or_default() += 1;
                    }
                }
                return message;
            }
            let frame = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a server message within the timeout")
                .expect("socket open")
                .expect("socket read");
            let Message::Text(text) = frame else {
                if let Message::Close(close) = frame {
                    panic!("socket closed unexpectedly: {close:?}");
                }
                continue;
            };
            let value: Value = serde_json::from_str(text.as_str()).expect("server sends JSON");
            if value["type"] == "batch" {
                self.pending
                    .extend(value["messages"].as_array().cloned().unwrap_or_default());
            } else if value["type"] == "snapshot" {
                let replay = self.replay(&value);
                self.pending.push_back(value);
                self.pending.extend(replay);
            } else {
                if value["type"] == "chat.message" {
                    self.shown.push(value["id"].clone());
                }
                self.pending.push_back(value);
            }
        }
    }

    /// A snapshot may replace broadcasts (the protocol sends a fresh one whenever a node
    /// resynchronises, e.g. a replica that saw a gap): restate its content as the
    /// broadcasts a waiting test looks for, marked `synthetic` and without `seq`, so the
    /// exactly-once bookkeeping only counts what was really broadcast.
    fn replay(&mut self, snapshot: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        let messages = snapshot["messages"].as_array().cloned().unwrap_or_default();
        let now: Vec<Value> = messages.iter().map(|m| m["id"].clone()).collect();
        self.snapshots += 1;
        if self.snapshots == 1 {
            // The connection's first snapshot is the starting state, not a replay.
            self.shown = now;
            return out;
        }
        for gone in self.shown.iter().filter(|id| !now.contains(id)) {
            out.push(json!({"type": "chat.deleted", "id": gone, "synthetic": true}));
        }
        self.shown = now;
        for m in messages {
            let mut m = m.clone();
            m["type"] = json!("chat.message");
            m["synthetic"] = json!(true);
            if let Some(obj) = m.as_object_mut() {
                obj.remove("seq");
            }
            out.push(m);
        }
        out.push(json!({"type": "likes", "total": snapshot["likes"], "synthetic": true}));
        for q in snapshot["questions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            out.push(json!({"type": "question.asked", "question": q, "synthetic": true}));
            out.push(json!({"type": "question.upvoted", "id": q["id"], "votes": q["votes"], "synthetic": true}));
        }
        for q in snapshot["answered"].as_array().cloned().unwrap_or_default() {
            out.push(json!({"type": "question.answered", "id": q["id"], "answer": q["answer"], "synthetic": true}));
        }
        out
    }

    /// Skips messages until one of `kind` satisfying `check` arrives.
    async fn until(&mut self, kind: &str, check: impl Fn(&Value) -> bool) -> Value {
        loop {
            let message = self.next().await;
            if message["type"] == kind && check(&message) {
                return message;
            }
        }
    }

    /// Everything that arrives within `window` (used to prove that nothing more comes).
    async fn drain(&mut self, window: Duration) -> Vec<Value> {
        let mut out: Vec<Value> = self.pending.drain(..).collect();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, self.stream.next()).await
        {
            if let Message::Text(text) = frame {
                let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if value["type"] == "batch" {
                    out.extend(value["messages"].as_array().cloned().unwrap_or_default());
                } else {
                    out.push(value);
                }
            }
        }
        for message in &out {
            if let Some(seq) = message["seq"].as_u64()
                && message["type"] != "viewers"
            {
                self.seq = self.seq.max(seq);
                *self.seen.entry(seq).or_default() += 1;
            }
        }
        out
    }

    /// Waits for the server's close frame and returns its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            let frame = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("close within the timeout");
            match frame {
                Some(Ok(Message::Close(Some(close)))) => return u16::from(close.code),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return 0,
                Some(Ok(_)) => {}
            }
        }
    }

    fn assert_no_duplicates(&self, who: &str) {
        let twice: Vec<_> = self.seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "{who} got seqs more than once: {twice:?}");
    }
}

/// `name=value` of a Set-Cookie header.
fn cookie_named(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_owned()
}

async fn viewer_cookie(app: &TestApp, nickname: &str) -> String {
    let response = app
        .anonymous_client()
        .post(app.url("/api/v1/viewer"))
        .json(&json!({ "nickname": nickname }))
        .send()
        .await
        .expect("POST /api/v1/viewer");
    assert_eq!(response.status(), 200);
    cookie_named(&response, "gongkai_viewer")
}

/// (session cookie, CSRF token) of a fresh login.
pub(crate) async fn staff_session(app: &TestApp, username: &str) -> (String, String) {
    let response = app
        .anonymous_client()
        .post(app.url("/api/v1/session"))
        .json(&json!({ "username": username, "password": PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200);
    let cookie = cookie_named(&response, "gongkai_session");
    let body: Value = response.json().await.expect("login JSON");
    (
        cookie,
        body["csrf_token"].as_str().expect("csrf").to_owned(),
    )
}

async fn staff_post(
    app: &TestApp,
    session: &(String, String),
    path: &str,
    body: Value,
) -> (u16, Value) {
    let response = app
        .anonymous_client()
        .post(app.url(path))
        .header("cookie", &session.0)
        .header("X-CSRF-Token", &session.1)
        .json(&body)
        .send()
        .await
        .expect("staff POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An admin's live interview; returns its id.
pub(crate) async fn live_event(app: &TestApp, admin: &(String, String)) -> String {
    live_event_moderated_by(app, admin, &[]).await
}

/// A live event whose assigned moderators are `moderators` (moderators are staff only in
/// the events they are assigned to).
pub(crate) async fn live_event_moderated_by(
    app: &TestApp,
    admin: &(String, String),
    moderators: &[&str],
) -> String {
    let (status, event) = staff_post(
        app,
        admin,
        "/api/v1/events",
        json!({"kind": "interview", "title": "区长在线访谈",
               "scheduled_start": "2030-01-01T09:30:00+08:00",
               "scheduled_end": "2030-01-01T11:00:00+08:00",
               "moderators": moderators}),
    )
    .await;
    assert_eq!(status, 201, "{event}");
    let id = event["id"].as_str().expect("id").to_owned();
    let (status, _) =
        staff_post(app, admin, &format!("/api/v1/events/{id}/start"), json!({})).await;
    assert_eq!(status, 200);
    id
}

async fn record(app: &TestApp, event: &str) -> Value {
    let response = app
        .anonymous_client()
        .get(app.url(&format!("/api/v1/events/{event}/record")))
        .send()
        .await
        .expect("GET record");
    assert_eq!(response.status(), 200);
    response.json().await.expect("record JSON")
}

/// Polls the record until `check` holds (the room writes asynchronously).
async fn record_until(app: &TestApp, event: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = record(app, event).await;
        if check(&r) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "record never matched: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn error_code(message: &Value) -> &str {
    message["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn one_node_chat_qa_moderation_replay_record_and_shutdown() {
    let mut app =
        TestApp::spawn_with(AppOptions::default().env("GONGKAI_HUB_ROOM_IDLE_SECS", "1")).await;
    app.create_user("admin", PASSWORD, &["admin"]);
    app.create_user("mod", PASSWORD, &["moderator"]);
    let admin = staff_session(&app, "admin").await;
    let moderator = staff_session(&app, "mod").await;
    let event = live_event_moderated_by(&app, &admin, &["mod"]).await;

    // Unknown events are a JSON 404, before any upgrade.
    let missing = app
        .anonymous_client()
        .get(app.url("/ws/events/nosuchevent"))
        .send()
        .await
        .expect("GET ws");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("404 JSON");
    assert!(body["error"]["code"].is_string(), "{body}");

    let jia = viewer_cookie(&app, "甲").await;
    let yi = viewer_cookie(&app, "乙").await;
    let mut a = Ws::connect(&app.base_url, &event, Some(&jia), None).await;
    let mut b = Ws::connect(&app.base_url, &event, Some(&yi), None).await;
    let mut m = Ws::connect(&app.base_url, &event, Some(&moderator.0), None).await;
    let snapshot = a.until("snapshot", |_| true).await;
    assert_eq!(snapshot["event"]["status"], "live");
    assert_eq!(snapshot["you"]["nickname"], "甲");
    b.until("snapshot", |_| true).await;
    let staff = m.until("snapshot", |_| true).await;
    assert_eq!(staff["you"]["role"], "moderator");

    // Chat, likes, questions, votes.
    a.send(json!({"type": "chat.send", "text": "区长好！", "ref": "c1"}))
        .await;
    let chat = b.until("chat.message", |_| true).await;
    assert_eq!(chat["text"], "区长好！");
    assert_eq!(chat["author"]["nickname"], "甲");
    let first_id = chat["id"].as_u64().expect("id");
    b.send(json!({"type": "like", "count": 3})).await;
    let likes = a.until("likes", |_| true).await;
    assert_eq!(likes["total"], 3);
    a.send(json!({"type": "question.ask", "text": "加装电梯的补贴什么时候发放？"}))
        .await;
    let asked = b.until("question.asked", |_| true).await;
    let question = asked["question"]["id"].as_u64().expect("question id");
    b.send(json!({"type": "question.upvote", "question_id": question}))
        .await;
    let upvoted = a.until("question.upvoted", |_| true).await;
    assert_eq!(upvoted["votes"], 1);
    a.send(json!({"type": "question.ask", "text": "老旧小区改造有时间表吗？"}))
        .await;
    let later = b.until("question.asked", |_| true).await["question"]["id"]
        .as_u64()
        .expect("id");

    // Bad input: an error to the sender, nothing for anyone else.
    let seq_before = b.seq;
    a.send_text(format!(
        r#"{{"type":"chat.send","text":"{}"}}"#,
        "x".repeat(5000)
    ))
    .await;
    assert_eq!(
        error_code(&a.until("error", |_| true).await),
        "frame_too_large"
    );
    a.send_text("{not json".into()).await;
    assert_eq!(error_code(&a.until("error", |_| true).await), "bad_json");
    a.send(json!({"type": "chat.shout", "ref": "u1"})).await;
    let unknown = a.until("error", |_| true).await;
    assert_eq!(
        (error_code(&unknown), &unknown["ref"]),
        ("unknown_type", &json!("u1"))
    );
    a.send(json!({"type": "chat.send", "text": "长".repeat(501)}))
        .await;
    assert_eq!(error_code(&a.until("error", |_| true).await), "too_long");
    a.send(json!({"type": "chat.delete", "message_id": first_id}))
        .await;
    assert_eq!(error_code(&a.until("error", |_| true).await), "forbidden");
    let quiet = b.drain(Duration::from_millis(500)).await;
    assert!(
        quiet.iter().all(|m| m["type"] == "viewers"),
        "bad input changed something: {quiet:?}"
    );
    assert_eq!(b.seq, seq_before);

    // Moderation: delete, slow mode, ban.
    m.send(json!({"type": "chat.delete", "message_id": first_id, "ref": "d1"}))
        .await;
    assert_eq!(m.until("ack", |_| true).await["ref"], "d1");
    let deleted = a.until("chat.deleted", |_| true).await;
    assert_eq!(deleted["id"], first_id);
    m.send(json!({"type": "chat.slow_mode", "seconds": 60}))
        .await;
    m.until("ack", |_| true).await;
    b.until("chat.settings", |s| s["slow_mode_secs"] == 60)
        .await;
    b.send(json!({"type": "chat.send", "text": "第一条"})).await;
    let yi_message = a.until("chat.message", |_| true).await["id"]
        .as_u64()
        .expect("id");
    b.send(json!({"type": "chat.send", "text": "第二条"})).await;
    assert_eq!(error_code(&b.until("error", |_| true).await), "slow_mode");
    m.send(json!({"type": "viewer.ban", "message_id": yi_message, "duration_secs": 3600}))
        .await;
    m.until("ack", |a| a["action"] == "viewer.ban").await;
    b.send(json!({"type": "like"})).await;
    assert_eq!(error_code(&b.until("error", |_| true).await), "banned");
    b.send(json!({"type": "question.ask", "text": "还能问吗"}))
        .await;
    assert_eq!(error_code(&b.until("error", |_| true).await), "banned");

    // Answer live over the socket.
    m.send(
        json!({"type": "question.answer", "question_id": question, "answer": "年底前发放到位。"}),
    )
    .await;
    m.until("ack", |a| a["action"] == "question.answer").await;
    let answered = a.until("question.answered", |_| true).await;
    assert_eq!(answered["answer"], "年底前发放到位。");

    // A viewer without a nickname watches but may not interact.
    let mut watcher = Ws::connect(&app.base_url, &event, None, None).await;
    watcher.until("snapshot", |_| true).await;
    watcher
        .send(json!({"type": "chat.send", "text": "hi", "ref": "w1"}))
        .await;
    let refused = watcher.until("error", |_| true).await;
    assert_eq!(
        (error_code(&refused), &refused["ref"]),
        ("nickname_required", &json!("w1"))
    );
    watcher.send(json!({"type": "ping", "t": 5})).await;
    assert_eq!(watcher.until("pong", |_| true).await["t"], 5);

    // Reconnect with since: exactly the missed broadcasts, then `resumed`.
    let since = a.seq;
    drop(a);
    m.send(json!({"type": "chat.send", "text": "你错过的消息"}))
        .await;
    m.until("chat.message", |c| c["text"] == "你错过的消息")
        .await;
    let mut a = Ws::connect(&app.base_url, &event, Some(&jia), Some(since)).await;
    let missed = a.until("chat.message", |_| true).await;
    assert_eq!(missed["text"], "你错过的消息");
    assert_eq!(missed["author"]["role"], "moderator");
    let resumed = a.until("resumed", |_| true).await;
    assert!(resumed["replayed"].as_u64() >= Some(1), "{resumed}");

    // The event ends: everyone is told; the record has the answer and the chat.
    let (status, _) = staff_post(
        &app,
        &admin,
        &format!("/api/v1/events/{event}/end"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    a.until("event.status", |s| s["status"] == "ended").await;
    b.send(json!({"type": "chat.send", "text": "结束了吗"}))
        .await;
    let after = b.until("error", |_| true).await;
    assert!(
        ["event_ended", "banned"].contains(&error_code(&after)),
        "{after}"
    );
    let r = record_until(&app, &event, |r| {
        r["answered"].as_array().is_some_and(|a| !a.is_empty())
            && r["chat"].as_array().is_some_and(|c| c.len() == 2)
    })
    .await;
    assert_eq!(r["answered"][0]["answer"], "年底前发放到位。");
    assert_eq!(r["answered"][0]["votes"], 1);
    assert_eq!(r["likes"], 3);
    let texts: Vec<&str> = r["chat"]
        .as_array()
        .expect("chat")
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["第一条", "你错过的消息"],
        "deleted chat stays out of the record"
    );
    assert_eq!(r["chat"][1]["staff_role"], "moderator");

    // Answering after the event, through the API: the room is still open here.
    let (status, body) = staff_post(
        &app,
        &moderator,
        &format!("/api/v1/events/{event}/questions/{later}/answer"),
        json!({"answer": "明年开工。"}),
    )
    .await;
    assert_eq!(
        (status, body["via"].as_str()),
        (200, Some("room")),
        "{body}"
    );
    let viewers_cannot = staff_post(
        &app,
        &("gongkai_session=nope".into(), "x".into()),
        &format!("/api/v1/events/{event}/questions/{later}/answer"),
        json!({"answer": "x"}),
    )
    .await;
    assert_eq!(viewers_cannot.0, 401);

    // Everyone leaves; the idle room closes; an answer then goes straight to the record.
    drop((a, b, m, watcher));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = staff_post(
        &app,
        &moderator,
        &format!("/api/v1/events/{event}/questions/{later}/answer"),
        json!({"answer": "明年三月开工。"}),
    )
    .await;
    assert_eq!(
        (status, body["via"].as_str()),
        (200, Some("record")),
        "{body}"
    );
    let (status, _) = staff_post(
        &app,
        &moderator,
        &format!("/api/v1/events/{event}/questions/99999/answer"),
        json!({"answer": "?"}),
    )
    .await;
    assert_eq!(status, 404);
    let r = record(&app, &event).await;
    assert_eq!(r["answered"][1]["answer"], "明年三月开工。", "{r}");

    // A new room starts from the database: seq continues, chat and answers are there.
    let mut c = Ws::connect(&app.base_url, &event, Some(&jia), None).await;
    let snapshot = c.until("snapshot", |_| true).await;
    assert!(snapshot["seq"].as_u64() >= Some(since), "{snapshot}");
    assert_eq!(snapshot["event"]["status"], "ended");
    assert_eq!(snapshot["messages"].as_array().map(Vec::len), Some(2));

    // SIGTERM: open sockets are closed with 1001 (going away).
    let (stopped, code) = tokio::join!(
        tokio::task::spawn_blocking(move || {
            let status = app.terminate(Duration::from_secs(15));
            (status, app)
        }),
        c.close_code()
    );
    let (status, _app) = stopped.expect("terminate");
    assert_eq!(code, u16::from(CloseCode::Away));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit: {status:?}"
    );
}

/// What the WebSocket layer itself owes a client: a JSON error for a request that is not
/// an upgrade, pongs, a close for an oversized message, and a reply to the client's close.
#[tokio::test]
async fn the_websocket_layer_answers_pings_oversized_messages_and_closes() {
    let app = TestApp::spawn_with(AppOptions::default()).await;
    app.create_user("admin", PASSWORD, &["admin"]);
    let admin = staff_session(&app, "admin").await;
    let event = live_event(&app, &admin).await;

    let plain = app
        .anonymous_client()
        .get(app.url(&format!("/ws/events/{event}")))
        .send()
        .await
        .expect("plain GET");
    assert_eq!(plain.status(), 400);
    let body: Value = plain.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.to_lowercase().contains("upgrade")),
        "{body}"
    );

    let jia = viewer_cookie(&app, "甲").await;
    let mut a = Ws::connect(&app.base_url, &event, Some(&jia), None).await;
    a.until("snapshot", |_| true).await;
    a.stream
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .expect("ping");
    let pong = loop {
        let frame = tokio::time::timeout(WAIT, a.stream.next())
            .await
            .expect("pong within the timeout")
            .expect("open")
            .expect("read");
        if let Message::Pong(payload) = frame {
            break payload;
        }
    };
    assert_eq!(&pong[..], b"are you there");
    // Still a working socket after the pong: chat goes through.
    a.send(json!({"type": "chat.send", "text": "还在"})).await;
    a.until("chat.message", |m| m["text"] == "还在").await;

    // Over the 16 KiB message limit: the connection ends with 1009.
    a.send_text("x".repeat(20 * 1024)).await;
    assert_eq!(a.close_code().await, u16::from(CloseCode::Size));

    // Binary frames count against the frame limit like text frames: a flood of them
    // closes the socket with 1008 (policy) instead of keeping it open.
    let mut flood = Ws::connect(&app.base_url, &event, Some(&jia), None).await;
    flood.until("snapshot", |_| true).await;
    for _ in 0..2000 {
        if flood
            .stream
            .send(Message::Binary(b"\x00".to_vec().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(flood.close_code().await, u16::from(CloseCode::Policy));

    // The client closes: the server answers with its own close frame.
    let mut b = Ws::connect(&app.base_url, &event, Some(&jia), None).await;
    b.until("snapshot", |_| true).await;
    b.stream
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .expect("close");
    assert_eq!(b.close_code().await, u16::from(CloseCode::Normal));
}

#[tokio::test]
async fn two_nodes_share_one_room_over_nats() {
    let nats = std::env::var("GONGKAI_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let database = TestDatabase::create().await;
    let options = AppOptions::default()
        .database_url(&database.url)
        .arg("--nats-url")
        .arg(&nats);
    let one = TestApp::spawn_with(options.clone()).await;
    let two = TestApp::spawn_with(options).await;
    one.create_user("admin", PASSWORD, &["admin"]);
    one.create_user("mod", PASSWORD, &["moderator"]);
    let admin = staff_session(&one, "admin").await;
    let moderator = staff_session(&two, "mod").await;
    let event = live_event_moderated_by(&one, &admin, &["mod"]).await;

    let jia = viewer_cookie(&one, "甲").await;
    let yi = viewer_cookie(&two, "乙").await;
    let mut a = Ws::connect(&one.base_url, &event, Some(&jia), None).await;
    a.until("snapshot", |_| true).await;
    let mut b = Ws::connect(&two.base_url, &event, Some(&yi), None).await;
    b.until("snapshot", |_| true).await;
    let mut m = Ws::connect(&two.base_url, &event, Some(&moderator.0), None).await;
    m.until("snapshot", |_| true).await;

    // One viewer count across both nodes.
    a.until("viewers", |v| v["current"] == 3).await;
    b.until("viewers", |v| v["current"] == 3).await;

    a.send(json!({"type": "chat.send", "text": "一号节点"}))
        .await;
    b.send(json!({"type": "chat.send", "text": "二号节点"}))
        .await;
    let from_a = b.until("chat.message", |c| c["text"] == "一号节点").await;
    a.until("chat.message", |c| c["text"] == "二号节点").await;
    b.send(json!({"type": "like", "count": 4})).await;
    a.until("likes", |l| l["total"] == 4).await;
    a.send(json!({"type": "question.ask", "text": "问题一"}))
        .await;
    let question = b.until("question.asked", |_| true).await["question"]["id"]
        .as_u64()
        .expect("id");
    b.send(json!({"type": "question.upvote", "question_id": question}))
        .await;
    a.until("question.upvoted", |q| q["votes"] == 1).await;
    m.send(json!({"type": "chat.delete", "message_id": from_a["id"]}))
        .await;
    a.until("chat.deleted", |d| d["id"] == from_a["id"]).await;
    b.until("chat.deleted", |d| d["id"] == from_a["id"]).await;
    m.send(json!({"type": "question.answer", "question_id": question, "answer": "答复"}))
        .await;
    a.until("question.answered", |q| q["id"] == question).await;
    b.until("question.answered", |q| q["id"] == question).await;

    // Exactly once: each chat message once per socket, no seq twice.
    let rest_a = a.drain(Duration::from_millis(1500)).await;
    let rest_b = b.drain(Duration::from_millis(300)).await;
    for (who, ws, rest) in [("node 1", &a, &rest_a), ("node 2", &b, &rest_b)] {
        ws.assert_no_duplicates(who);
        assert!(
            rest.iter().all(|m| m["type"] == "viewers"
                || m["type"] == "likes"
                || m["type"] == "snapshot"
                || m["synthetic"] == true),
            "{who} got more than expected: {rest:?}"
        );
    }
    assert_eq!(a.seq, b.seq, "both nodes are at the same seq");

    // Written once to the shared database.
    let r = record_until(&one, &event, |r| {
        r["answered"].as_array().is_some_and(|a| a.len() == 1)
            && r["chat"].as_array().is_some_and(|c| c.len() == 1)
    })
    .await;
    assert_eq!(r["chat"][0]["text"], "二号节点");
    assert_eq!(r["likes"], 4);
}

/// Moderators moderate only the events they are assigned to (administrators everywhere);
/// a page on another site cannot open an event's socket with a visitor's cookies.
#[tokio::test]
async fn moderation_needs_the_assignment_and_sockets_need_our_origin() {
    let app = TestApp::spawn().await;
    app.create_user("admin", PASSWORD, &["admin"]);
    app.create_user("mod", PASSWORD, &["moderator"]);
    app.create_user("other", PASSWORD, &["moderator"]);
    let admin = staff_session(&app, "admin").await;
    let other = staff_session(&app, "other").await;
    let event = live_event_moderated_by(&app, &admin, &["mod"]).await;

    let jia = viewer_cookie(&app, "甲").await;
    let mut a = Ws::connect(&app.base_url, &event, Some(&jia), None).await;
    a.until("snapshot", |_| true).await;
    a.send(json!({"type": "chat.send", "text": "你好"})).await;
    let message = a.until("chat.message", |_| true).await;
    let id = message["id"].as_u64().expect("id");
    let question = {
        a.send(json!({"type": "question.ask", "text": "什么时候开工？"}))
            .await;
        a.until("question.asked", |_| true).await["question"]["id"]
            .as_u64()
            .expect("question id")
    };

    // A moderator of other events is no staff here: no role, no moderation.
    let mut o = Ws::connect(&app.base_url, &event, Some(&other.0), None).await;
    let snapshot = o.until("snapshot", |_| true).await;
    assert!(snapshot["you"].get("role").is_none(), "{snapshot}");
    o.send(json!({"type": "chat.delete", "message_id": id}))
        .await;
    let refused = o.until("error", |_| true).await;
    assert!(
        ["forbidden", "nickname_required"].contains(&error_code(&refused)),
        "{refused}"
    );
    o.send(json!({"type": "chat.slow_mode", "seconds": 30}))
        .await;
    o.until("error", |_| true).await;
    let (status, body) = staff_post(
        &app,
        &other,
        &format!("/api/v1/events/{event}/questions/{question}/answer"),
        json!({"answer": "明天"}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let quiet = a.drain(Duration::from_millis(500)).await;
    assert!(
        quiet.iter().all(|m| m["type"] != "chat.deleted"
            && m["type"] != "chat.settings"
            && m["type"] != "question.answered"),
        "an unassigned moderator changed the room: {quiet:?}"
    );

    // The socket from another site's page is refused before the upgrade; our own
    // origin is fine.
    let ws_url = |origin: &str| {
        let mut request = format!(
            "{}/ws/events/{event}",
            app.base_url.replacen("http://", "ws://", 1)
        )
        .into_client_request()
        .expect("request");
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("origin"));
        request
    };
    let refused = tokio_tungstenite::connect_async(ws_url("http://evil.example")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("a foreign origin was not refused: {other:?}"),
    }
    let own = tokio_tungstenite::connect_async(ws_url(&app.base_url)).await;
    assert!(own.is_ok(), "our own origin was refused: {:?}", own.err());
}

/// What one viewer's socket delivered: chat by id (broadcasts and snapshot restatements
/// apart) and errors by `ref`.
#[derive(Default)]
struct Delivered {
    /// Ids of `chat.message` broadcasts, in arrival order.
    broadcast: Vec<u64>,
    /// Every chat id the viewer has been shown (broadcast or in a snapshot).
    shown: std::collections::BTreeSet<u64>,
    errors: HashMap<String, String>,
}

impl Delivered {
    fn note(&mut self, m: &Value) {
        match m["type"].as_str() {
            Some("chat.message") => {
                let id = m["id"].as_u64().expect("chat id");
                if m["synthetic"] != true {
                    self.broadcast.push(id);
                }
                self.shown.insert(id);
            }
            Some("snapshot") => {
                for message in m["messages"].as_array().into_iter().flatten() {
                    self.shown.insert(message["id"].as_u64().expect("chat id"));
                }
            }
            Some("error") => {
                if let Some(reference) = m["ref"].as_str() {
                    self.errors
                        .insert(reference.to_owned(), error_code(m).to_owned());
                }
            }
            _ => {}
        }
    }

    /// Every `required` message shown, each broadcast at most once and in seq order, and
    /// nothing shown that was not `stored`.
    fn assert_matches(
        &self,
        who: &str,
        required: &std::collections::BTreeSet<u64>,
        stored: &std::collections::BTreeSet<u64>,
    ) {
        let missing: Vec<_> = required.difference(&self.shown).collect();
        assert!(
            missing.is_empty(),
            "{who} never got stored chat {missing:?}"
        );
        let extra: Vec<_> = self.shown.difference(stored).collect();
        assert!(
            extra.is_empty(),
            "{who} got chat that was never stored: {extra:?}"
        );
        assert!(
            self.broadcast.windows(2).all(|w| w[0] < w[1]),
            "{who} got chat twice or out of seq order: {:?}",
            self.broadcast
        );
    }
}

/// Reads `ws` until `done` holds (or panics at `deadline`), noting what it delivers.
async fn read_until(
    ws: &mut Ws,
    got: &mut Delivered,
    deadline: tokio::time::Instant,
    done: impl Fn(&Delivered) -> bool,
) {
    while !done(got) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; shown so far {:?}",
            got.shown
        );
        let step = deadline.min(tokio::time::Instant::now() + Duration::from_secs(5));
        if let Ok(m) = tokio::time::timeout_at(step, ws.next()).await {
            got.note(&m);
        }
    }
}

/// `/readyz`: (status, body).
async fn readyz(app: &TestApp) -> (u16, Value) {
    match app
        .anonymous_client()
        .get(app.url("/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Issue 15 item 9: the bus (a NATS server of the test's own) is killed mid-chat for a
/// few seconds and restarted. Every stored message reaches every viewer on both nodes
/// once, in seq order (also a viewer reconnecting with `since`), a message is either
/// stored or refused to its sender (never silently lost), and `/readyz` reports the
/// lost bus.
#[tokio::test]
async fn a_bus_outage_loses_no_chat_between_nodes() {
    let mut nats = crate::support::nats::NatsServer::start();
    let database = TestDatabase::create().await;
    let options = AppOptions::default()
        .database_url(&database.url)
        .arg("--nats-url")
        .arg(&nats.url());
    let one = TestApp::spawn_with(options.clone()).await;
    let two = TestApp::spawn_with(options).await;
    one.create_user("admin", PASSWORD, &["admin"]);
    let admin = staff_session(&one, "admin").await;
    let event = live_event(&one, &admin).await;
    assert_eq!(readyz(&one).await.0, 200);

    // Node one opens the room first and so sequences it; node two follows.
    let jia = viewer_cookie(&one, "甲").await;
    let yi = viewer_cookie(&two, "乙").await;
    let mut a = Ws::connect(&one.base_url, &event, Some(&jia), None).await;
    let mut got_a = Delivered::default();
    got_a.note(&a.until("snapshot", |_| true).await);
    a.send(json!({"type": "chat.send", "text": "开始", "ref": "start"}))
        .await;
    let first = a.until("chat.message", |c| c["text"] == "开始").await;
    got_a.note(&first);
    let mut b = Ws::connect(&two.base_url, &event, Some(&yi), None).await;
    let mut got_b = Delivered::default();
    got_b.note(&b.until("snapshot", |_| true).await);
    b.send(json!({"type": "chat.send", "text": "乙到了", "ref": "hello"}))
        .await;
    got_a.note(&a.until("chat.message", |c| c["text"] == "乙到了").await);
    got_b.note(&b.until("chat.message", |c| c["text"] == "乙到了").await);
    let before_outage = b.seq;

    // Chat on both nodes once a second; the bus is down from the 3rd to the 7th second.
    let mut sent: Vec<(char, String, String)> = Vec::new();
    let mut down_seen = [false, false];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for i in 0..10u32 {
        tick.tick().await;
        if i == 2 {
            nats.kill();
        }
        if i == 6 {
            nats.restart();
        }
        for (who, ws) in [('a', &mut a), ('b', &mut b)] {
            let text = format!("{who}{i}");
            let reference = format!("{who}-{i}");
            ws.send(json!({"type": "chat.send", "text": text, "ref": reference}))
                .await;
            sent.push((who, text, reference));
        }
        if (3..6).contains(&i) {
            for (n, app) in [&one, &two].into_iter().enumerate() {
                let (status, body) = readyz(app).await;
                if status == 503 && body.to_string().contains("bus") {
                    down_seen[n] = true;
                }
            }
        }
        // Whatever arrives meanwhile, without waiting for anything in particular.
        let soon = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(m) = tokio::time::timeout_at(soon, a.next()).await {
            got_a.note(&m);
        }
        let soon = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(m) = tokio::time::timeout_at(soon, b.next()).await {
            got_b.note(&m);
        }
    }

    // The bus is back: a last message from node one marks the end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let ready = [readyz(&one).await, readyz(&two).await];
        if ready.iter().all(|(status, _)| *status == 200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never recovered after the bus came back: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.send(json!({"type": "chat.send", "text": "结束", "ref": "end"}))
        .await;
    let r = record_until(&one, &event, |r| {
        r["chat"]
            .as_array()
            .is_some_and(|c| c.iter().any(|m| m["text"] == "结束"))
    })
    .await;
    let stored: std::collections::BTreeSet<u64> = r["chat"]
        .as_array()
        .expect("chat")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    let stored_texts: Vec<&str> = r["chat"]
        .as_array()
        .expect("chat")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    let everything = |got: &Delivered| stored.is_subset(&got.shown);
    read_until(&mut a, &mut got_a, deadline, everything).await;
    read_until(&mut b, &mut got_b, deadline, everything).await;

    // A message sent is stored or was refused to its sender: never silently lost.
    for (who, text, reference) in &sent {
        let refused = match who {
            'a' => got_a.errors.get(reference),
            _ => got_b.errors.get(reference),
        };
        assert!(
            stored_texts.contains(&text.as_str()) || refused.is_some(),
            "{text} from {who} was neither stored nor refused (stored: {stored_texts:?})"
        );
    }
    got_a.assert_matches("the viewer on node one", &stored, &stored);
    got_b.assert_matches("the viewer on node two", &stored, &stored);
    a.assert_no_duplicates("node one");
    b.assert_no_duplicates("node two");

    // A viewer reconnecting to node two with `since` from before the outage.
    let mut c = Ws::connect(&two.base_url, &event, Some(&yi), Some(before_outage)).await;
    let mut got_c = Delivered::default();
    let after: std::collections::BTreeSet<u64> = stored
        .iter()
        .copied()
        .filter(|seq| *seq > before_outage)
        .collect();
    read_until(&mut c, &mut got_c, deadline, |got| {
        after.is_subset(&got.shown)
    })
    .await;
    let resumed = c.drain(Duration::from_millis(300)).await;
    for m in &resumed {
        got_c.note(m);
    }
    got_c.assert_matches("a viewer back on node two with since", &after, &stored);

    assert_eq!(
        down_seen,
        [true, true],
        "/readyz answers 503 naming the bus while it is down"
    );
    let (_, body) = readyz(&two).await;
    assert_eq!(body["bus"], "connected", "{body}");
}

/// Sends a `ping` and returns the error codes that arrived before its `pong`: the answers
/// to everything this socket sent before (the room handles a socket's frames in order).
async fn errors_until_pong(ws: &mut Ws, t: u64) -> Vec<String> {
    ws.send(json!({"type": "ping", "t": t})).await;
    let mut errors = Vec::new();
    loop {
        let message = ws.next().await;
        match message["type"].as_str() {
            Some("pong") if message["t"] == t => return errors,
            Some("error") => errors.push(error_code(&message).to_owned()),
            _ => {}
        }
    }
}

/// Issue 15 item 5: per-viewer limits bypassed by minting identities. From one address
/// (every client here is 127.0.0.1): fresh cookies voting and liking, fresh cookies under
/// slow mode, and a banned viewer's new cookie. All refused now.
#[tokio::test]
async fn fresh_identities_from_one_address_do_not_bypass_viewer_limits() {
    let app = TestApp::spawn_with(
        AppOptions::default().env("GONGKAI_LIMITS_VIEWER_IDENTITIES_PER_IP_PER_HOUR", "60"),
    )
    .await;
    app.create_user("admin", PASSWORD, &["admin"]);
    let admin = staff_session(&app, "admin").await;
    let event = live_event(&app, &admin).await;
    let mut m = Ws::connect(&app.base_url, &event, Some(&admin.0), None).await;
    m.until("snapshot", |_| true).await;
    let asker = viewer_cookie(&app, "提问者").await;
    let mut q = Ws::connect(&app.base_url, &event, Some(&asker), None).await;
    q.until("snapshot", |_| true).await;
    q.send(json!({"type": "question.ask", "text": "加装电梯补贴？"}))
        .await;
    let question = m.until("question.asked", |_| true).await["question"]["id"]
        .as_u64()
        .expect("question id");
    let mut minted = Vec::new();
    for i in 0..20 {
        let cookie = viewer_cookie(&app, &format!("网友{i}")).await;
        let mut ws = Ws::connect(&app.base_url, &event, Some(&cookie), None).await;
        ws.until("snapshot", |_| true).await;
        minted.push(ws);
    }

    // The report: 20 cookies voted one question to 20.
    let mut votes = 0;
    for ws in &mut minted {
        ws.send(json!({"type": "question.upvote", "question_id": question}))
            .await;
        let errors = errors_until_pong(ws, 1).await;
        assert!(errors.iter().all(|e| e == "already_voted"), "{errors:?}");
        votes += usize::from(errors.is_empty());
    }
    assert_eq!(votes, 3, "one address gives one question at most 3 votes");

    // The report: the same cookies added 2,000 likes in 3 s.
    let started = tokio::time::Instant::now();
    let mut likes = 0;
    for ws in &mut minted {
        for _ in 0..4 {
            ws.send(json!({"type": "like", "count": 25})).await;
        }
        let errors = errors_until_pong(ws, 2).await;
        assert!(errors.iter().all(|e| e == "rate_limited"), "{errors:?}");
        likes += 25 * (4 - errors.len());
    }
    let elapsed = started.elapsed().as_secs_f64();
    // A burst of 200 per address, then 40 per second.
    let most = 200.0 + 40.0 * (elapsed + 1.0);
    assert!(
        (likes as f64) <= most,
        "{likes} of 2,000 likes from one address taken in {elapsed:.1} s (at most {most})"
    );

    // The report: with 60 s slow mode, 25 fresh cookies posted 25 messages in 2 s.
    m.send(json!({"type": "chat.slow_mode", "seconds": 60}))
        .await;
    m.until("ack", |a| a["action"] == "chat.settings").await;
    let mut posted = 0;
    for (i, ws) in minted.iter_mut().enumerate() {
        ws.send(json!({"type": "chat.send", "text": format!("刷屏{i}")}))
            .await;
        let errors = errors_until_pong(ws, 3).await;
        assert!(errors.iter().all(|e| e == "slow_mode"), "{errors:?}");
        posted += usize::from(errors.is_empty());
    }
    assert_eq!(
        posted, 3,
        "one address posts 3 messages per slow-mode interval"
    );

    // The report: bans are escaped with a new cookie. A ban by message, without
    // `by_ip`, now binds the address too.
    let troll_message = m.until("chat.message", |c| c["text"] == "刷屏0").await["id"]
        .as_u64()
        .expect("message id");
    m.send(json!({"type": "viewer.ban", "message_id": troll_message, "duration_secs": 3600}))
        .await;
    m.until("ack", |a| a["action"] == "viewer.ban").await;
    let new_cookie = viewer_cookie(&app, "换个马甲").await;
    let mut again = Ws::connect(&app.base_url, &event, Some(&new_cookie), None).await;
    let snapshot = again.until("snapshot", |_| true).await;
    assert!(
        snapshot["you"]["banned_until"].is_u64(),
        "a fresh cookie from the banned address is told at join: {snapshot}"
    );
    assert!(
        !snapshot.to_string().contains("127.0.0.1"),
        "addresses never reach clients"
    );
    again
        .send(json!({"type": "chat.send", "text": "我又来了"}))
        .await;
    assert_eq!(errors_until_pong(&mut again, 4).await, vec!["banned"]);
}
