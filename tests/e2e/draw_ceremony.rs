//! The draw ceremony end to end over the HTTP API and the event WebSocket, with the
//! notary's offline tools: applications (JSON and CSV), witnesses, announcement and
//! inclusion proofs, the live draw, lookups (uniform errors, rate limits), the notary's
//! countersignature, and the server killed (SIGKILL) between and during steps.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use lottery::{ChildId, DrawId, WitnessSecret};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::binary::Finished;
use crate::support::{AppOptions, TestApp, gongkai_command, run_with_timeout};

const WAIT: Duration = Duration::from_secs(30);

/// A client for one staff member's bearer token (or none), with a chosen client IP.
#[derive(Clone)]
struct Api {
    base: String,
    token: Option<String>,
    ip: String,
}

impl Api {
    fn new(app: &TestApp, token: Option<&str>) -> Api {
        Api {
            base: app.base_url.clone(),
            token: token.map(str::to_owned),
            ip: "198.51.100.1".into(),
        }
    }

    fn from(&self, ip: &str) -> Api {
        Api {
            ip: ip.to_owned(),
            ..self.clone()
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        let mut request = client
            .request(method, format!("{}{path}", self.base))
            .header("x-forwarded-for", &self.ip);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body, headers)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, body, _) = self
            .send(self.request(reqwest::Method::POST, path).json(&body))
            .await;
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, body, _) = self.send(self.request(reqwest::Method::GET, path)).await;
        (status, body)
    }

    async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("request sent");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    }
}

fn child_id(n: u32) -> String {
    ChildId::with_check_digit(&format!("1101052020{:07}", n))
        .expect("17 digits")
        .as_str()
        .to_owned()
}

/// The `transcript hash:` line of `gongkai draw verify`.
fn transcript_hash_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("transcript hash:"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|| panic!("no transcript hash in {stdout}"))
}

fn gongkai(args: &[&str]) -> Finished {
    let mut command = gongkai_command();
    command.args(args);
    run_with_timeout(command, None, Duration::from_secs(120))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

struct Staff {
    organiser: Api,
    organiser2: Api,
    notary: Api,
    public: Api,
}

fn staff(app: &TestApp) -> Staff {
    app.create_user("org", crate::support::PASSWORD, &["organiser"]);
    app.create_user("org2", crate::support::PASSWORD, &["organiser"]);
    app.create_user("notary", crate::support::PASSWORD, &["notary"]);
    Staff {
        organiser: Api::new(app, Some(&app.create_token("org", "api"))),
        organiser2: Api::new(app, Some(&app.create_token("org2", "api"))),
        notary: Api::new(app, Some(&app.create_token("notary", "api"))),
        public: Api::new(app, None),
    }
}

async fn create_event(organiser: &Api) -> String {
    let (status, event) = organiser
        .post(
            "/api/v1/events",
            json!({"kind": "draw", "title": "2027年公办幼儿园电脑派位",
                   "scheduled_start": "2027-06-18T09:30:00+08:00",
                   "scheduled_end": "2027-06-18T11:00:00+08:00"}),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    event["id"].as_str().expect("event id").to_owned()
}

fn draw_body(draw_id: &str, event_id: &str, beacon: bool) -> Value {
    json!({
        "draw_id": draw_id,
        "title": "2027年秋季公办幼儿园派位",
        "event_id": event_id,
        "kindergartens": [
            {"code": "KG-B", "name": "第二幼儿园", "seats": 2},
            {"code": "KG-A", "name": "第一幼儿园", "seats": 3},
            {"code": "KG-C", "name": "第三幼儿园", "seats": 1}
        ],
        "mechanism": "deferred-acceptance",
        "multiples": "whole-or-skip",
        "witnesses": [
            {"name": "张公证员", "role": "notary"},
            {"name": "李家长", "role": "parent representative"}
        ],
        "beacon_source": if beacon { json!("体育彩票第2027068期开奖号码") } else { Value::Null },
    })
}

fn application(n: u32, name: &str, choices: Value) -> Value {
    json!({"child_id": child_id(n), "child_name": name, "choices": choices})
}

async fn state_of(api: &Api, draw_id: &str) -> String {
    let (status, draw) = api.get(&format!("/api/v1/draws/{draw_id}")).await;
    assert_eq!(status, 200, "{draw}");
    draw["state"].as_str().expect("state").to_owned()
}

/// Waits until the draw reaches `state` (the play-out publishes in the background).
async fn wait_for_state(api: &Api, draw_id: &str, state: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if state_of(api, draw_id).await == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "draw {draw_id} did not reach {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn secret(byte: u8) -> WitnessSecret {
    WitnessSecret([byte; 32])
}

fn commitment(draw_id: &str, secret: &WitnessSecret) -> String {
    secret
        .commitment(&DrawId::parse(draw_id).expect("draw id"))
        .to_string()
}

/// Reads frames until `done` says so, collecting every `draw.*` message (batches unpacked).
async fn collect_draw_messages(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Vec<Value> {
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("draw.published arrives in time")
            .expect("socket open")
            .expect("frame");
        let Message::Text(text) = frame else { continue };
        let value: Value = serde_json::from_str(&text).expect("JSON frame");
        let members = if value["type"] == "batch" {
            value["messages"].as_array().cloned().unwrap_or_default()
        } else {
            vec![value]
        };
        for m in members {
            let kind = m["type"].as_str().unwrap_or("").to_owned();
            if kind.starts_with("draw.") {
                messages.push(m);
                if kind == "draw.published" {
                    return messages;
                }
            }
        }
    }
}

#[tokio::test]
async fn the_whole_ceremony_over_the_api() {
    let app = TestApp::spawn_with(
        AppOptions::default()
            .config("trust_forwarded_for = true\n[draw]\npace_ms = 5\n[lookup]\nper_ip_per_minute = 20\nper_child_per_minute = 4\n"),
    )
    .await;
    let s = staff(&app);
    let event_id = create_event(&s.organiser).await;
    let draw_id = "kg-2027-autumn";

    // Draft: bad input is named; parents cannot see or apply to a draft.
    let mut bad = draw_body(draw_id, &event_id, true);
    bad["mechanism"] = json!("boston");
    let (status, body) = s.organiser.post("/api/v1/draws", bad).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("mechanism")),
        "{body}"
    );
    let (status, body) = s
        .public
        .post("/api/v1/draws", draw_body(draw_id, &event_id, true))
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, draw) = s
        .organiser
        .post("/api/v1/draws", draw_body(draw_id, &event_id, true))
        .await;
    assert_eq!(status, 201, "{draw}");
    assert_eq!(draw["state"], "draft");
    let organiser_key = draw["organiser_public_key"]
        .as_str()
        .expect("key shown to staff")
        .to_owned();
    let (status, _) = s
        .organiser
        .post("/api/v1/draws", draw_body(draw_id, &event_id, true))
        .await;
    assert_eq!(status, 409, "draw ids are unique");
    assert_eq!(
        s.public.get(&format!("/api/v1/draws/{draw_id}")).await.0,
        404
    );
    let choices = json!([{"kg": "KG-A", "class": 1}, {"kg": "KG-B", "class": 2}]);
    let (status, _) = s
        .public
        .post(
            &format!("/api/v1/draws/{draw_id}/applications"),
            application(1, "王一", choices.clone()),
        )
        .await;
    assert_eq!(status, 404);

    // Open: parents apply (singles and twins together); one application per child.
    let (status, body) = s
        .organiser
        .post(&format!("/api/v1/draws/{draw_id}/open"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let apply = |api: Api, body: Value| {
        let path = format!("/api/v1/draws/{draw_id}/applications");
        async move { api.post(&path, body).await }
    };
    let mut receipts = Vec::new();
    let people = [
        (
            1,
            "王一",
            json!([{"kg": "KG-A", "class": 1}, {"kg": "KG-B", "class": 2}]),
        ),
        (2, "李二", json!([{"kg": "KG-A", "class": 2}])),
        (
            3,
            "张三",
            json!([{"kg": "KG-B", "class": 1}, {"kg": "KG-C", "class": 1}]),
        ),
        (
            4,
            "赵四",
            json!([{"kg": "KG-C", "class": 1}, {"kg": "KG-A", "class": 1}]),
        ),
        (5, "钱五", json!([{"kg": "KG-A", "class": 1}])),
    ];
    for (n, name, choices) in &people {
        let (status, receipt) =
            apply(s.public.clone(), application(*n, name, choices.clone())).await;
        assert_eq!(status, 201, "{receipt}");
        assert_eq!(receipt["draw_id"], draw_id);
        assert_eq!(receipt["app"].as_str().map(str::len), Some(10));
        assert_eq!(receipt["salt"].as_str().map(str::len), Some(32));
        receipts.push((*n, name.to_string(), receipt));
    }
    let (status, twins) = apply(
        s.public.clone(),
        json!({"children": [
                {"child_id": child_id(6), "child_name": "孙六甲"},
                {"child_id": child_id(7), "child_name": "孙六乙"}],
               "choices": [{"kg": "KG-B", "class": 1}, {"kg": "KG-A", "class": 2}]}),
    )
    .await;
    assert_eq!(status, 201, "{twins}");
    assert_eq!(twins["receipts"].as_array().map(Vec::len), Some(2));
    // The same child again is answered like any application (no oracle); the second
    // application is withdrawn with its receipt (its conflict is the subject of
    // `draw_review`).
    let (status, again) = apply(s.public.clone(), application(1, "王一", choices.clone())).await;
    assert_eq!(status, 201, "the same child twice: {again}");
    let (status, body) = s
        .public
        .post(
            &format!(
                "/api/v1/draws/{draw_id}/applications/{}/withdraw",
                again["app"].as_str().unwrap()
            ),
            json!({"salt": again["salt"], "child_id": child_id(1), "child_name": "王一"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = apply(
        s.public.clone(),
        json!({"child_id": "110105202000000000", "child_name": "错号", "choices": choices}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("child_id")),
        "{body}"
    );
    assert!(
        !body.to_string().contains("110105202000000000"),
        "IDs are never echoed: {body}"
    );
    let (status, body) = apply(
        s.public.clone(),
        application(8, "周八", json!([{"kg": "KG-Z", "class": 1}])),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("choices[0].kg")),
        "{body}"
    );

    // A correction and a withdrawal, proven with the receipt.
    let (n, name, receipt) = &receipts[1];
    let corrected = json!({"salt": receipt["salt"], "child_id": child_id(*n), "child_name": name,
                           "choices": [{"kg": "KG-A", "class": 2}, {"kg": "KG-C", "class": 3}]});
    let response = s
        .public
        .send(
            s.public
                .request(
                    reqwest::Method::PATCH,
                    &format!(
                        "/api/v1/draws/{draw_id}/applications/{}",
                        receipt["app"].as_str().unwrap()
                    ),
                )
                .json(&corrected),
        )
        .await;
    assert_eq!(response.0, 200, "{}", response.1);
    let mut wrong_salt = corrected.clone();
    wrong_salt["salt"] = json!("00".repeat(16));
    let response = s
        .public
        .send(
            s.public
                .request(
                    reqwest::Method::PATCH,
                    &format!(
                        "/api/v1/draws/{draw_id}/applications/{}",
                        receipt["app"].as_str().unwrap()
                    ),
                )
                .json(&wrong_salt),
        )
        .await;
    assert_eq!(response.0, 404, "a wrong receipt changes nothing");
    let (n, name, receipt) = receipts.remove(4);
    let (status, body) = s
        .public
        .post(
            &format!(
                "/api/v1/draws/{draw_id}/applications/{}/withdraw",
                receipt["app"].as_str().unwrap()
            ),
            json!({"salt": receipt["salt"], "child_id": child_id(n), "child_name": name}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // CSV import: every bad row named, nothing imported; then a good file.
    let import = |body: &'static str| {
        let api = s.organiser.clone();
        let path = format!("/api/v1/draws/{draw_id}/applications/import");
        async move {
            api.send(
                api.request(reqwest::Method::POST, &path)
                    .header("content-type", "text/csv")
                    .body(body),
            )
            .await
        }
    };
    let count = |api: Api| async move {
        api.get(&format!("/api/v1/draws/{draw_id}")).await.1["applications"]
            .as_u64()
            .expect("count")
    };
    assert_eq!(count(s.organiser.clone()).await, 6);
    let bad_csv: &'static str = Box::leak(
        format!(
            "child_id,child_name,choices,group\n{},吴九,KG-A:1,\n110105202000000000,郑十,KG-A:1,\n{},冯十一,KG-Q:1,\n",
            child_id(9),
            child_id(11)
        )
        .into_boxed_str(),
    );
    let (status, body, _) = import(bad_csv).await;
    assert_eq!(status, 422, "{body}");
    let lines: Vec<(u64, &str)> = body["error"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, vec![(3, "child_id"), (4, "choices")], "{body}");
    assert_eq!(count(s.organiser.clone()).await, 6, "nothing imported");
    let dup_csv: &'static str = Box::leak(
        format!(
            "child_id,child_name,choices,group\n{},吴九,KG-A:1,\n{},王一,KG-A:1,\n",
            child_id(9),
            child_id(1)
        )
        .into_boxed_str(),
    );
    let (status, body, _) = import(dup_csv).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["rows"][0]["line"], 3, "{body}");
    assert_eq!(count(s.organiser.clone()).await, 6);
    let good_csv: &'static str = Box::leak(
        format!(
            "\u{feff}child_id,child_name,choices,group\n{},吴九,KG-A:1;KG-C:2,\n{},郑十,KG-C:1,\n{},冯甲,KG-A:1;KG-B:1,T1\n{},冯乙,KG-A:1;KG-B:1,T1\n",
            child_id(9),
            child_id(10),
            child_id(12),
            child_id(13)
        )
        .into_boxed_str(),
    );
    let (status, body, _) = import(good_csv).await;
    assert_eq!((status, &body["imported"]), (200, &json!(4)), "{body}");
    let (status, _, _) = s
        .public
        .send(
            s.public
                .request(
                    reqwest::Method::POST,
                    &format!("/api/v1/draws/{draw_id}/applications/import"),
                )
                .header("content-type", "text/csv")
                .body(good_csv),
        )
        .await;
    assert_eq!(status, 401, "parents cannot import");

    // The organiser's review: every application verified.
    let (status, body) = s
        .organiser
        .post(
            &format!("/api/v1/draws/{draw_id}/review"),
            json!({"verify_all": true}),
        )
        .await;
    assert_eq!((status, &body["verified"]), (200, &json!(10)), "{body}");

    // Closed: no more applications. Witnesses commit (one with their link, one through
    // the organiser).
    let (status, _) = s
        .organiser
        .post(&format!("/api/v1/draws/{draw_id}/close"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = apply(s.public.clone(), application(20, "晚到", choices.clone())).await;
    assert_eq!(status, 409);
    let (status, body) = s
        .organiser
        .post(&format!("/api/v1/draws/{draw_id}/announce"), json!({}))
        .await;
    assert_eq!(status, 409, "witnesses have not committed: {body}");
    let (status, link) = s
        .organiser
        .post(
            &format!("/api/v1/draws/{draw_id}/witnesses/0/link"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{link}");
    let token = link["token"].as_str().expect("token").to_owned();
    assert!(link["url"].as_str().unwrap().contains(&format!("#{token}")));
    let witness = |index: u32, what: &str, token: Option<&str>, body: Value| {
        let api = if token.is_some() {
            s.public.clone()
        } else {
            s.organiser.clone()
        };
        let path = format!("/api/v1/draws/{draw_id}/witnesses/{index}/{what}");
        let token = token.map(str::to_owned);
        async move {
            let mut request = api.request(reqwest::Method::POST, &path).json(&body);
            if let Some(token) = token {
                request = request.header("x-witness-token", token);
            }
            let (status, body, _) = api.send(request).await;
            (status, body)
        }
    };
    let (status, _) = witness(
        0,
        "commitment",
        Some("wt_wrong"),
        json!({"commitment": commitment(draw_id, &secret(1))}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = witness(
        0,
        "commitment",
        Some(&token),
        json!({"commitment": commitment(draw_id, &secret(1))}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = witness(
        1,
        "commitment",
        None,
        json!({"commitment": commitment(draw_id, &secret(2))}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Announced: the signed announcement and each parent's inclusion proof are public.
    let (status, body) = s
        .organiser
        .post(&format!("/api/v1/draws/{draw_id}/announce"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, announcement) = s
        .public
        .get(&format!("/api/v1/draws/{draw_id}/announcement"))
        .await;
    assert_eq!(status, 200);
    let root = announcement["announcement"]["applications"]["root"]
        .as_str()
        .expect("root")
        .to_owned();
    assert_eq!(
        announcement["announcement"]["applications"]["tree_size"],
        10
    );
    assert_eq!(
        announcement["signatures"][0]["public_key"],
        json!(organiser_key)
    );
    let (n, name, receipt) = &receipts[0];
    let (status, proof) = s
        .public
        .post(
            &format!("/api/v1/draws/{draw_id}/proof"),
            json!({"app": receipt["app"], "child_id": child_id(*n), "child_name": name}),
        )
        .await;
    assert_eq!(status, 200, "{proof}");
    assert_eq!(proof["root"], json!(root));
    let leaf: lottery::Leaf = serde_json::from_value(proof["leaf"].clone()).expect("leaf");
    let inclusion = lottery::merkle::InclusionProof {
        leaf_index: proof["leaf_index"].as_u64().unwrap(),
        tree_size: proof["tree_size"].as_u64().unwrap(),
        path: serde_json::from_value(proof["audit_path"].clone()).expect("path"),
    };
    assert!(inclusion.verify(&leaf.hash(), &lottery::Digest::parse_hex(&root).unwrap()));
    let (status_wrong_name, body_wrong_name) = s
        .public
        .post(
            &format!("/api/v1/draws/{draw_id}/proof"),
            json!({"app": receipt["app"], "child_id": child_id(*n), "child_name": "别人"}),
        )
        .await;
    let (status_unknown, body_unknown) = s
        .public
        .from("198.51.100.2")
        .post(
            &format!("/api/v1/draws/{draw_id}/proof"),
            json!({"app": receipt["app"], "child_id": child_id(99), "child_name": name}),
        )
        .await;
    assert_eq!(
        (status_wrong_name, &body_wrong_name),
        (status_unknown, &body_unknown)
    );
    assert_eq!(status_unknown, 404);

    // Reveals: a wrong one is refused and recorded; a repeated one is harmless.
    let (status, _) = s
        .organiser
        .post(
            &format!("/api/v1/draws/{draw_id}/draw"),
            json!({"beacon_text": "03 15 22"}),
        )
        .await;
    assert_eq!(status, 409, "nobody revealed yet");
    let (status, body) = witness(
        0,
        "reveal",
        Some(&token),
        json!({"secret": secret(9).to_hex()}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("secret")),
        "{body}"
    );
    for _ in 0..2 {
        let (status, body) = witness(
            0,
            "reveal",
            Some(&token),
            json!({"secret": secret(1).to_hex()}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = witness(1, "reveal", None, json!({"secret": secret(2).to_hex()})).await;
    assert_eq!(status, 200, "{body}");

    // The live draw: a viewer watches; two organisers press "draw" at once.
    let ws_url = format!(
        "{}/ws/events/{event_id}",
        app.base_url.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("ws connects");
    let (status, body) = s
        .organiser
        .post(&format!("/api/v1/draws/{draw_id}/draw"), json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("beacon_text")),
        "{body}"
    );
    let draw_path = format!("/api/v1/draws/{draw_id}/draw");
    let (first, second) = tokio::join!(
        s.organiser
            .post(&draw_path, json!({"beacon_text": "03 15 22 27 31 + 08 11"})),
        s.organiser2
            .post(&draw_path, json!({"beacon_text": "03 15 22 27 31 + 08 11"})),
    );
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "one draw: {first:?} {second:?}");
    let messages = collect_draw_messages(&mut ws).await;
    wait_for_state(&s.public, draw_id, "published").await;

    // The published transcript verifies offline, and is what was shown live.
    let (status, transcript_text) = s
        .public
        .get_text(&format!("/api/v1/draws/{draw_id}/transcript"))
        .await;
    assert_eq!(status, 200);
    let transcript: Value = serde_json::from_str(&transcript_text).expect("transcript JSON");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("transcript.json");
    std::fs::write(&file, &transcript_text).expect("write transcript");
    let verified = gongkai(&[
        "draw",
        "verify",
        path(&file),
        "--organiser-key",
        &organiser_key,
    ]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}{}",
        verified.stdout,
        verified.stderr
    );
    assert!(verified.stdout.starts_with("valid"), "{}", verified.stdout);
    let lottery_order: Vec<&str> = transcript["transcript"]["lottery"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let shown: Vec<(u64, &str)> = messages
        .iter()
        .filter(|m| m["type"] == "draw.number")
        .map(|m| (m["number"].as_u64().unwrap(), m["unit"].as_str().unwrap()))
        .collect();
    let expected: Vec<(u64, &str)> = lottery_order
        .iter()
        .enumerate()
        .map(|(i, u)| (i as u64 + 1, *u))
        .collect();
    assert_eq!(shown, expected, "numbers shown live in order");
    assert_eq!(messages[0]["type"], "draw.seed");
    assert_eq!(messages[0]["seed"], transcript["transcript"]["seed"]);
    assert_eq!(
        messages
            .iter()
            .filter(|m| m["type"] == "draw.admitted")
            .count(),
        3
    );
    let published = messages.last().unwrap();
    assert_eq!(
        published["transcript_hash"].as_str().map(str::len),
        Some(64)
    );
    // A late viewer gets the whole play-out from the progress endpoint.
    let (_, progress) = s
        .public
        .get(&format!("/api/v1/draws/{draw_id}/progress"))
        .await;
    assert_eq!(
        progress["steps"].as_array().map(Vec::len),
        Some(1 + lottery_order.len() + 3)
    );

    // The notary checks the private file against the leaves.
    let (status, private) = s
        .notary
        .get_text(&format!("/api/v1/draws/{draw_id}/private"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.public
            .get_text(&format!("/api/v1/draws/{draw_id}/private"))
            .await
            .0,
        401
    );
    let private_file = dir.path().join("private.json");
    std::fs::write(&private_file, &private).expect("write private");
    let verified = gongkai(&[
        "draw",
        "verify",
        path(&file),
        "--private",
        path(&private_file),
    ]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}{}",
        verified.stdout,
        verified.stderr
    );

    // Lookups: the result, masked; unknown and wrong names look the same.
    let (n, name, receipt) = &receipts[0];
    let (status, result) = s
        .public
        .post(
            &format!("/api/v1/draws/{draw_id}/lookup"),
            json!({"child_id": child_id(*n), "child_name": name}),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["masked_name"], "王*");
    assert_eq!(result["app"], receipt["app"]);
    let unit_position = lottery_order
        .iter()
        .position(|u| *u == result["unit"].as_str().unwrap())
        .unwrap();
    assert_eq!(result["lottery_number"], json!(unit_position + 1));
    let receipt_check = gongkai(&[
        "draw",
        "check-receipt",
        path(&file),
        "--app",
        receipt["app"].as_str().unwrap(),
        "--salt",
        receipt["salt"].as_str().unwrap(),
        "--child-id",
        &child_id(*n),
        "--child-name",
        name,
    ]);
    assert_eq!(
        receipt_check.status.code(),
        Some(0),
        "{}",
        receipt_check.stderr
    );
    match result["result"]["status"].as_str().unwrap() {
        "admitted" => assert!(
            receipt_check
                .stdout
                .contains(result["result"]["kindergarten"]["code"].as_str().unwrap()),
            "{}",
            receipt_check.stdout
        ),
        other => assert!(["waitlisted", "not_admitted"].contains(&other)),
    }
    let lookup_path = format!("/api/v1/draws/{draw_id}/lookup");
    let wrong_name = s
        .public
        .from("203.0.113.1")
        .post(
            &lookup_path,
            json!({"child_id": child_id(*n), "child_name": "王二"}),
        )
        .await;
    let unknown = s
        .public
        .from("203.0.113.2")
        .post(
            &lookup_path,
            json!({"child_id": child_id(77), "child_name": "王一"}),
        )
        .await;
    let malformed = s
        .public
        .from("203.0.113.3")
        .post(
            &lookup_path,
            json!({"child_id": "12345", "child_name": "王一"}),
        )
        .await;
    assert_eq!(wrong_name.0, 404);
    assert_eq!(wrong_name, unknown);
    assert_eq!(unknown, malformed);
    // Per child: the 5th lookup of one child in a minute is refused, from any address.
    for i in 0..3 {
        let (status, _) = s
            .public
            .from(&format!("203.0.113.{}", 10 + i))
            .post(
                &lookup_path,
                json!({"child_id": child_id(3), "child_name": "张三"}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, body, headers) = s
        .public
        .from("203.0.113.20")
        .send(
            s.public
                .from("203.0.113.20")
                .request(reqwest::Method::POST, &lookup_path)
                .json(&json!({"child_id": child_id(3), "child_name": "张三"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body, headers2) = s
        .public
        .from("203.0.113.21")
        .send(
            s.public
                .from("203.0.113.21")
                .request(reqwest::Method::POST, &lookup_path)
                .json(&json!({"child_id": child_id(3), "child_name": "张三"})),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(headers2.get("retry-after").is_some());
    assert!(!body.to_string().contains(&child_id(3)));
    drop(headers);
    // Per address: 20 a minute, whatever children are asked about.
    let mut limited = false;
    for i in 0..21 {
        let (status, _) = s
            .public
            .from("192.0.2.50")
            .post(
                &lookup_path,
                json!({"child_id": child_id(200 + i), "child_name": "某某"}),
            )
            .await;
        if status == 429 {
            limited = true;
            break;
        }
        assert_eq!(status, 404);
    }
    assert!(limited, "the per-IP limit applies");
    let logs = app.stderr();
    for (n, name, _) in &receipts {
        assert!(
            !logs.contains(&child_id(*n)),
            "an ID number reached the log"
        );
        assert!(
            !logs.contains(name.as_str()),
            "a child's name reached the log"
        );
    }

    // Results per kindergarten, for the chart.
    let (status, results) = s
        .public
        .get(&format!("/api/v1/draws/{draw_id}/results"))
        .await;
    assert_eq!(status, 200);
    let admitted: u64 = results["kindergartens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["admitted"].as_u64().unwrap())
        .sum();
    assert!(admitted > 0 && admitted <= 6, "{results}");

    // The notary countersigns offline and uploads the signature.
    let key_file = dir.path().join("notary.key");
    let generated = gongkai(&["keys", "generate", "--out", path(&key_file)]);
    assert_eq!(generated.status.code(), Some(0), "{}", generated.stderr);
    let signed_file = dir.path().join("countersigned.json");
    let countersigned = gongkai(&[
        "draw",
        "countersign",
        path(&file),
        "--key",
        path(&key_file),
        "--out",
        path(&signed_file),
    ]);
    assert_eq!(
        countersigned.status.code(),
        Some(0),
        "{}{}",
        countersigned.stdout,
        countersigned.stderr
    );
    let signed: Value = serde_json::from_slice(&std::fs::read(&signed_file).unwrap()).unwrap();
    let notary_sig = signed["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "notary")
        .unwrap()
        .clone();
    assert!(
        countersigned.stdout.contains(&format!(
            "signature:        {}",
            notary_sig["signature"].as_str().unwrap()
        )),
        "the CLI prints what the notary uploads: {}",
        countersigned.stdout
    );
    let mut forged = notary_sig.clone();
    forged["signature"] = json!("00".repeat(64));
    let countersign_path = format!("/api/v1/draws/{draw_id}/countersignature");
    let (status, body) = s
        .notary
        .post(
            &countersign_path,
            json!({"public_key": forged["public_key"], "signature": forged["signature"]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("signature")),
        "{body}"
    );
    let (status, _) = s
        .organiser
        .post(
            &countersign_path,
            json!({"public_key": notary_sig["public_key"], "signature": notary_sig["signature"]}),
        )
        .await;
    assert_eq!(status, 403, "only notaries countersign");
    let (status, body) = s
        .notary
        .post(
            &countersign_path,
            json!({"public_key": notary_sig["public_key"], "signature": notary_sig["signature"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "countersigned");
    let (_, served) = s
        .public
        .get_text(&format!("/api/v1/draws/{draw_id}/transcript"))
        .await;
    assert_eq!(
        served.as_bytes(),
        std::fs::read(&signed_file).unwrap().as_slice(),
        "the published file is the notary's"
    );
    std::fs::write(&file, &served).unwrap();
    let verified = gongkai(&[
        "draw",
        "verify",
        path(&file),
        "--notary-key",
        notary_sig["public_key"].as_str().unwrap(),
    ]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}{}",
        verified.stdout,
        verified.stderr
    );

    // Anyone verifies the published file in the browser, fetched from the server.
    let base = app.base_url.clone();
    let hash = transcript_hash_of(&verified.stdout);
    crate::support::Browser::run("draw_ceremony_verify", |client| async move {
        client
            .goto(&format!("{base}/verify?lang=en&draw={draw_id}"))
            .await?;
        let result = client
            .wait()
            .at_most(Duration::from_secs(60))
            .for_element(fantoccini::Locator::Css(
                "#verify-result[data-state=valid], #verify-result[data-state=invalid], #verify-result[data-state=error]",
            ))
            .await?;
        let state = result.attr("data-state").await?.unwrap_or_default();
        anyhow::ensure!(state == "valid", "the page says {state}: {}", result.text().await?);
        let summary = client.find(fantoccini::Locator::Css("#verify-summary")).await?;
        let shown = summary.attr("data-transcript-hash").await?.unwrap_or_default();
        anyhow::ensure!(shown == hash, "page hash {shown} != CLI hash {hash}");
        Ok(())
    })
    .await;

    // Every step is in the audit trail, with who did it.
    let (status, audit) = s
        .notary
        .get(&format!("/api/v1/draws/{draw_id}/audit"))
        .await;
    assert_eq!(status, 200);
    let actions: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    for wanted in [
        "draw.create",
        "draw.open",
        "application.import",
        "draw.closed",
        "witness.commit",
        "draw.announced",
        "witness.reveal_refused",
        "witness.reveal",
        "draw.drawn",
        "draw.published",
        "private.download",
        "draw.countersigned",
    ] {
        assert!(
            actions.iter().any(|(a, _)| *a == wanted),
            "{wanted} missing from {actions:?}"
        );
    }
    assert!(actions.contains(&("draw.countersigned", "notary")));
    assert!(!audit.to_string().contains(&child_id(1)));
}

/// Sends `request` and SIGKILLs the server while it may still be running; after the
/// restart the step has either happened completely or not at all.
async fn kill_during(app: &mut TestApp, request: reqwest::RequestBuilder, after: Duration) {
    let in_flight = tokio::spawn(async move { request.send().await });
    tokio::time::sleep(after).await;
    app.kill_and_restart().await;
    let _ = in_flight.await;
}

#[tokio::test]
async fn a_killed_server_continues_the_draw_with_identical_bytes() {
    let mut app = TestApp::spawn_with(
        AppOptions::default().config("trust_forwarded_for = true\n[draw]\npace_ms = 60\n"),
    )
    .await;
    let s = staff(&app);
    let event_id = create_event(&s.organiser).await;
    let draw_id = "kg-crash";
    // Tokens and cookies survive restarts; only the address changes.
    let api = |app: &TestApp, api: &Api| Api {
        base: app.base_url.clone(),
        ..api.clone()
    };
    // Without a review step: every application counts.
    let mut body = draw_body(draw_id, &event_id, false);
    body["review"] = json!(false);
    let (status, body) = s.organiser.post("/api/v1/draws", body).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["review"], false, "{body}");
    app.kill_and_restart().await;
    let org = api(&app, &s.organiser);
    assert_eq!(state_of(&org, draw_id).await, "draft");

    assert_eq!(
        org.post(&format!("/api/v1/draws/{draw_id}/open"), json!({}))
            .await
            .0,
        200
    );
    app.kill_and_restart().await;
    let org = api(&app, &s.organiser);
    assert_eq!(state_of(&org, draw_id).await, "open");

    for n in 1..=4u32 {
        let (status, body) = api(&app, &s.public)
            .post(
                &format!("/api/v1/draws/{draw_id}/applications"),
                application(
                    n,
                    &format!("孩子{n}"),
                    json!([{"kg": "KG-A", "class": 1}, {"kg": "KG-B", "class": n % 2 + 1}]),
                ),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let csv = format!(
        "child_id,child_name,choices,group\n{},双甲,KG-B:1;KG-C:1,T\n{},双乙,KG-B:1;KG-C:1,T\n{},单丙,KG-C:1,\n",
        child_id(5),
        child_id(6),
        child_id(7)
    );
    let (status, body, _) = org
        .send(
            org.request(
                reqwest::Method::POST,
                &format!("/api/v1/draws/{draw_id}/applications/import"),
            )
            .header("content-type", "text/csv")
            .body(csv),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.kill_and_restart().await;
    let org = api(&app, &s.organiser);
    let (_, draw) = org.get(&format!("/api/v1/draws/{draw_id}")).await;
    assert_eq!(draw["applications"], 7, "{draw}");

    assert_eq!(
        org.post(&format!("/api/v1/draws/{draw_id}/close"), json!({}))
            .await
            .0,
        200
    );
    for (index, byte) in [(0, 1u8), (1, 2u8)] {
        let (status, body) = org
            .post(
                &format!("/api/v1/draws/{draw_id}/witnesses/{index}/commitment"),
                json!({"commitment": commitment(draw_id, &secret(byte))}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    app.kill_and_restart().await;
    let org = api(&app, &s.organiser);
    let (_, draw) = org.get(&format!("/api/v1/draws/{draw_id}")).await;
    assert_eq!(draw["state"], "closed");
    assert_eq!(
        draw["witnesses"][1]["commitment"],
        json!(commitment(draw_id, &secret(2)))
    );

    // Killed while announcing: announced completely or not at all.
    kill_during(
        &mut app,
        org.request(
            reqwest::Method::POST,
            &format!("/api/v1/draws/{draw_id}/announce"),
        )
        .json(&json!({})),
        Duration::from_millis(15),
    )
    .await;
    let org = api(&app, &s.organiser);
    match state_of(&org, draw_id).await.as_str() {
        "closed" => assert_eq!(
            org.post(&format!("/api/v1/draws/{draw_id}/announce"), json!({}))
                .await
                .0,
            200
        ),
        "announced" => {}
        other => panic!("unexpected state {other}"),
    }
    let (status, announcement) = org
        .get_text(&format!("/api/v1/draws/{draw_id}/announcement"))
        .await;
    assert_eq!(status, 200);
    app.kill_and_restart().await;
    let org = api(&app, &s.organiser);
    assert_eq!(
        org.get_text(&format!("/api/v1/draws/{draw_id}/announcement"))
            .await
            .1,
        announcement
    );

    for (index, byte) in [(0, 1u8), (1, 2u8)] {
        let (status, body) = org
            .post(
                &format!("/api/v1/draws/{draw_id}/witnesses/{index}/reveal"),
                json!({"secret": secret(byte).to_hex()}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    app.kill_and_restart().await;
    let org = api(&app, &s.organiser);
    let (_, draw) = org.get(&format!("/api/v1/draws/{draw_id}")).await;
    assert!(
        draw["witnesses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["revealed"] == true),
        "{draw}"
    );

    // Killed while drawing, then again during the live play-out.
    kill_during(
        &mut app,
        org.request(
            reqwest::Method::POST,
            &format!("/api/v1/draws/{draw_id}/draw"),
        )
        .json(&json!({})),
        Duration::from_millis(15),
    )
    .await;
    let org = api(&app, &s.organiser);
    if state_of(&org, draw_id).await == "announced" {
        let (status, body) = org
            .post(&format!("/api/v1/draws/{draw_id}/draw"), json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        state_of(&org, draw_id).await,
        "drawn",
        "still playing out when killed"
    );
    app.kill_and_restart().await;
    assert!(
        app.stderr().contains("resuming draw play-out"),
        "the restarted server resumes"
    );
    let public = api(&app, &s.public);
    wait_for_state(&public, draw_id, "published").await;
    let (status, served) = public
        .get_text(&format!("/api/v1/draws/{draw_id}/transcript"))
        .await;
    assert_eq!(status, 200);

    // What a run without any crash gives: the same inputs, drawn and signed afresh.
    let (status, private) = api(&app, &s.notary)
        .get_text(&format!("/api/v1/draws/{draw_id}/private"))
        .await;
    assert_eq!(status, 200);
    let mut applications = lottery::PrivateFile::parse(private.as_bytes())
        .expect("private file")
        .applications;
    let committed = lottery::commit::commit(&mut applications).expect("commits");
    let signed_announcement: lottery::SignedAnnouncement =
        serde_json::from_str(&announcement).expect("announcement");
    assert_eq!(
        signed_announcement.announcement.applications,
        committed.tree_head
    );
    let organiser =
        lottery::KeyFile::parse(&std::fs::read(app.data_dir.join("organiser.key")).unwrap())
            .unwrap();
    let drawn = lottery::draw::run_observed(
        lottery::DrawInputs {
            announcement: signed_announcement.announcement,
            announcement_signatures: signed_announcement.signatures,
            leaves: committed.leaves,
            reveals: vec![secret(1), secret(2)],
            beacon_text: None,
        },
        &mut |_| {},
    )
    .expect("draws");
    let signature = lottery::Signature::sign(
        organiser.signing_key(),
        lottery::Role::Organiser,
        lottery::signature::Signed::Transcript,
        &drawn.hash,
    );
    let expected =
        lottery::transcript::signed_transcript_json(&drawn.canonical.to_vec(), &[signature]);
    assert_eq!(
        served.as_bytes(),
        expected.as_slice(),
        "the transcript is byte for byte a crash-free run's"
    );

    let (_, audit) = api(&app, &s.notary)
        .get(&format!("/api/v1/draws/{draw_id}/audit"))
        .await;
    let count = |action: &str| {
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .count()
    };
    assert_eq!(
        (
            count("draw.announced"),
            count("draw.drawn"),
            count("draw.published")
        ),
        (1, 1, 1),
        "{audit}"
    );
    let (_, progress) = public
        .get(&format!("/api/v1/draws/{draw_id}/progress"))
        .await;
    assert_eq!(progress["played"], progress["total"]);
}

/// A witness who does not reveal voids the draw: it is announced again with new
/// commitments, and the draw then runs on the new round's reveals.
#[tokio::test]
async fn a_void_draw_is_announced_again_with_new_commitments() {
    let app = TestApp::spawn_with(AppOptions::default().config("[draw]\npace_ms = 0\n")).await;
    let s = staff(&app);
    let event_id = create_event(&s.organiser).await;
    let draw_id = "kg-void";
    let org = &s.organiser;
    let mut body = draw_body(draw_id, &event_id, false);
    body["review"] = json!(false);
    assert_eq!(org.post("/api/v1/draws", body).await.0, 201);
    assert_eq!(
        org.post(&format!("/api/v1/draws/{draw_id}/open"), json!({}))
            .await
            .0,
        200
    );
    for n in 1..=3u32 {
        let (status, body) = s
            .public
            .post(
                &format!("/api/v1/draws/{draw_id}/applications"),
                application(n, &format!("孩子{n}"), json!([{"kg": "KG-A", "class": 1}])),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(
        org.post(&format!("/api/v1/draws/{draw_id}/close"), json!({}))
            .await
            .0,
        200
    );
    let commit = |index: u32, byte: u8| async move {
        org.post(
            &format!("/api/v1/draws/{draw_id}/witnesses/{index}/commitment"),
            json!({"commitment": commitment(draw_id, &secret(byte))}),
        )
        .await
    };
    let reveal = |index: u32, byte: u8| async move {
        org.post(
            &format!("/api/v1/draws/{draw_id}/witnesses/{index}/reveal"),
            json!({"secret": secret(byte).to_hex()}),
        )
        .await
    };
    assert_eq!(commit(0, 1).await.0, 200);
    assert_eq!(commit(1, 2).await.0, 200);
    assert_eq!(
        org.post(&format!("/api/v1/draws/{draw_id}/announce"), json!({}))
            .await
            .0,
        200
    );
    let (_, first) = org
        .get_text(&format!("/api/v1/draws/{draw_id}/announcement"))
        .await;
    assert_eq!(reveal(0, 1).await.0, 200);
    // Witness 1 stays silent: no draw without every reveal; the organiser voids it.
    assert_eq!(
        org.post(&format!("/api/v1/draws/{draw_id}/draw"), json!({}))
            .await
            .0,
        409
    );
    let (status, body) = org
        .post(
            &format!("/api/v1/draws/{draw_id}/void"),
            json!({"reason": "witness 1 absent"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["state"], &body["round"]),
        (&json!("closed"), &json!(2))
    );
    assert!(
        body["witnesses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["commitment"].is_null())
    );
    assert_eq!(
        s.public
            .get(&format!("/api/v1/draws/{draw_id}/announcement"))
            .await
            .0,
        404
    );
    // The old secrets cannot be reused against the new round: new commitments, new
    // announcement, then the draw.
    assert_eq!(commit(0, 3).await.0, 200);
    assert_eq!(commit(1, 4).await.0, 200);
    assert_eq!(
        org.post(&format!("/api/v1/draws/{draw_id}/announce"), json!({}))
            .await
            .0,
        200
    );
    let (_, second) = org
        .get_text(&format!("/api/v1/draws/{draw_id}/announcement"))
        .await;
    assert_ne!(first, second);
    assert_eq!(
        reveal(0, 1).await.0,
        400,
        "a first-round secret does not match"
    );
    assert_eq!(reveal(0, 3).await.0, 200);
    assert_eq!(reveal(1, 4).await.0, 200);
    let (status, body) = org
        .post(&format!("/api/v1/draws/{draw_id}/draw"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for_state(&s.public, draw_id, "published").await;
    let (_, text) = s
        .public
        .get_text(&format!("/api/v1/draws/{draw_id}/transcript"))
        .await;
    let transcript: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        transcript["transcript"]["reveals"],
        json!([secret(3).to_hex(), secret(4).to_hex()])
    );
    let (_, audit) = s
        .notary
        .get(&format!("/api/v1/draws/{draw_id}/audit"))
        .await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "draw.void"
                && e["detail"].as_str().unwrap().contains("witness 1 absent"))
    );
}

/// One `draw.*` frame stream over a WebSocket that may be replaced (after a restart).
type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn draw_socket(app: &TestApp, event_id: &str, since: Option<u64>) -> Socket {
    let mut url = format!(
        "{}/ws/events/{event_id}",
        app.base_url.replacen("http://", "ws://", 1)
    );
    if let Some(since) = since {
        url.push_str(&format!("?since={since}"));
    }
    tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connects")
        .0
}

/// The next `draw.*` broadcast (batches unpacked), noting the highest seq seen for a
/// reconnection with `since`. `None` when the socket closes.
async fn next_draw_message(ws: &mut Socket, highest: &mut u64) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a draw step within the timeout");
        let Some(Ok(frame)) = frame else {
            return None;
        };
        let Message::Text(text) = frame else {
            if let Message::Close(_) = frame {
                return None;
            }
            continue;
        };
        let value: Value = serde_json::from_str(&text).expect("JSON frame");
        let members = if value["type"] == "batch" {
            value["messages"].as_array().cloned().unwrap_or_default()
        } else {
            vec![value]
        };
        for m in members {
            let kind = m["type"].as_str().unwrap_or("");
            let seq = m["seq"].as_u64();
            if matches!(kind, "snapshot" | "resumed") {
                *highest = (*highest).max(seq.unwrap_or(0));
                continue;
            }
            if !kind.starts_with("draw.") {
                continue;
            }
            let seq = seq.expect("a draw step carries a seq");
            *highest = (*highest).max(seq);
            return Some(m);
        }
    }
}

/// Issue 15 item 10: SIGKILL during the live play-out (right after a number was shown,
/// while the play-out paces), restart on the same data: the play-out resumes, and every
/// lottery number reaches the viewer exactly once.
#[tokio::test]
async fn a_play_out_killed_after_a_number_shows_each_number_once() {
    let mut app = TestApp::spawn_with(
        AppOptions::default().config("trust_forwarded_for = true\n[draw]\npace_ms = 400\n"),
    )
    .await;
    let s = staff(&app);
    let event_id = create_event(&s.organiser).await;
    let draw_id = "kg-kill-playout";
    // Every application counts (no review step): the play-out has numbers to show.
    let mut draw = draw_body(draw_id, &event_id, false);
    draw["review"] = json!(false);
    let (status, body) = s.organiser.post("/api/v1/draws", draw).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        s.organiser
            .post(&format!("/api/v1/draws/{draw_id}/open"), json!({}))
            .await
            .0,
        200
    );
    for n in 1..=6u32 {
        let (status, body) = s
            .public
            .from(&format!("198.51.100.{}", 10 + n))
            .post(
                &format!("/api/v1/draws/{draw_id}/applications"),
                application(
                    n,
                    &format!("孩子{n}"),
                    json!([{"kg": "KG-A", "class": 1}, {"kg": "KG-B", "class": n % 2 + 1}]),
                ),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(
        s.organiser
            .post(&format!("/api/v1/draws/{draw_id}/close"), json!({}))
            .await
            .0,
        200
    );
    for (index, byte) in [(0, 1u8), (1, 2u8)] {
        let (status, body) = s
            .organiser
            .post(
                &format!("/api/v1/draws/{draw_id}/witnesses/{index}/commitment"),
                json!({"commitment": commitment(draw_id, &secret(byte))}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = s
        .organiser
        .post(&format!("/api/v1/draws/{draw_id}/announce"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    for (index, byte) in [(0, 1u8), (1, 2u8)] {
        let (status, body) = s
            .organiser
            .post(
                &format!("/api/v1/draws/{draw_id}/witnesses/{index}/reveal"),
                json!({"secret": secret(byte).to_hex()}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    let mut highest = 0;
    let mut ws = draw_socket(&app, &event_id, None).await;
    let (status, body) = s
        .organiser
        .post(&format!("/api/v1/draws/{draw_id}/draw"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    let mut numbers: Vec<u64> = Vec::new();
    let mut shown: Vec<(u64, u64)> = Vec::new();
    let mut units = None;
    // Watch until the second number shows, then kill at once: the play-out is pacing.
    while numbers.len() < 2 {
        let m = next_draw_message(&mut ws, &mut highest)
            .await
            .expect("the socket stays open before the kill");
        match m["type"].as_str() {
            Some("draw.seed") => units = m["units"].as_u64(),
            Some("draw.number") => {
                numbers.push(m["number"].as_u64().expect("number"));
                shown.push((
                    m["seq"].as_u64().unwrap_or(0),
                    m["number"].as_u64().unwrap_or(0),
                ));
            }
            other => panic!("unexpected step before the numbers end: {other:?} {m}"),
        }
    }
    app.kill_and_restart().await;
    drop(ws);

    let mut ws = draw_socket(&app, &event_id, Some(highest)).await;
    loop {
        let Some(m) = next_draw_message(&mut ws, &mut highest).await else {
            panic!("the socket closed before draw.published");
        };
        match m["type"].as_str() {
            Some("draw.seed") => units = m["units"].as_u64(),
            Some("draw.number") => {
                numbers.push(m["number"].as_u64().expect("number"));
                shown.push((
                    m["seq"].as_u64().unwrap_or(0),
                    m["number"].as_u64().unwrap_or(0),
                ));
            }
            Some("draw.published") => break,
            _ => {}
        }
    }
    let units = units.expect("draw.seed was shown");
    assert!(units >= 3, "enough numbers to kill in between: {units}");
    assert_eq!(
        numbers,
        (1..=units).collect::<Vec<_>>(),
        "every lottery number exactly once, in order, across the restart; (seq, number) shown: {shown:?}"
    );
    let public = Api {
        base: app.base_url.clone(),
        ..s.public.clone()
    };
    let (_, progress) = public
        .get(&format!("/api/v1/draws/{draw_id}/progress"))
        .await;
    assert_eq!(progress["played"], progress["total"], "{progress}");
}
