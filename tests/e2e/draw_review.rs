//! The application endpoint is no oracle, and organisers review applications (资格审核)
//! before they count, against the real server: a second application for a child gets the
//! same answer as a first and both are in conflict; the close is refused while a conflict
//! remains; the organiser verifies, rejects with a reason and verifies all; only verified
//! applications are in the announced leaves; the parent sees the review with the receipt;
//! applying is limited per IP and per child; every application write is audited without
//! the child's data.

use std::collections::BTreeSet;
use std::time::Duration;

use lottery::{ChildId, DrawId, WitnessSecret};
use serde_json::{Value, json};

use crate::support::{AppOptions, TestApp};

const DRAW: &str = "kg-review";
const WAIT: Duration = Duration::from_secs(60);

fn child_id(n: u32) -> String {
    ChildId::with_check_digit(&format!("1101052022{n:07}"))
        .expect("17 digits")
        .as_str()
        .to_owned()
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    ip: String,
}

impl Api {
    fn from(&self, ip: &str) -> Api {
        Api {
            ip: ip.to_owned(),
            ..self.clone()
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-forwarded-for", &self.ip);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body, headers)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, body, _) = self.send(reqwest::Method::POST, path, Some(body)).await;
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, body, _) = self.send(reqwest::Method::GET, path, None).await;
        (status, body)
    }

    async fn apply(&self, n: u32, name: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        self.send(
            reqwest::Method::POST,
            &format!("/api/v1/draws/{DRAW}/applications"),
            Some(json!({"child_id": child_id(n), "child_name": name,
                        "choices": [{"kg": "KG-A", "class": 1}]})),
        )
        .await
    }

    async fn review(&self, body: Value) -> (u16, Value) {
        self.post(&format!("/api/v1/draws/{DRAW}/review"), body)
            .await
    }

    /// The parent's view of the review, with the receipt.
    async fn status(&self, receipt: &Value, n: u32, name: &str) -> (u16, Value) {
        self.post(
            &format!(
                "/api/v1/draws/{DRAW}/applications/{}/status",
                receipt["app"].as_str().expect("app")
            ),
            json!({"salt": receipt["salt"], "child_id": child_id(n), "child_name": name}),
        )
        .await
    }
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn app_of(receipt: &Value) -> String {
    receipt["app"].as_str().expect("app").to_owned()
}

fn secret(byte: u8) -> WitnessSecret {
    WitnessSecret([byte; 32])
}

async fn review_flow(options: AppOptions) {
    let app = TestApp::spawn_with(options.config(
        "trust_forwarded_for = true\n[draw]\npace_ms = 0\napply_per_ip_per_minute = 6\napply_per_child_per_minute = 3\n",
    ))
    .await;
    app.create_user("org", crate::support::PASSWORD, &["organiser"]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let org = Api {
        http: http.clone(),
        base: app.base_url.clone(),
        token: Some(app.create_token("org", "api")),
        ip: "192.0.2.1".into(),
    };
    let public = Api {
        token: None,
        ..org.clone()
    };
    let (status, draw) = org
        .post(
            "/api/v1/draws",
            json!({
                "draw_id": DRAW,
                "title": "2027年秋季公办幼儿园派位",
                "kindergartens": [{"code": "KG-A", "name": "第一幼儿园", "seats": 2}],
                "mechanism": "deferred-acceptance",
                "multiples": "whole-or-skip",
                "witnesses": [{"name": "张公证员", "role": "notary"}],
                "draw_time": "2027-06-18T09:30:00Z",
            }),
        )
        .await;
    assert_eq!(status, 201, "{draw}");
    assert_eq!(draw["review"], true, "review is on by default: {draw}");
    let (status, body) = org
        .post(&format!("/api/v1/draws/{DRAW}/open"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    // The real parent applies for child 1; someone else applies first with the same ID
    // number and a wrong name. Both get the same answer: no oracle, no squatting.
    let (s1, squat, _) = public.from("203.0.113.2").apply(1, "李四").await;
    let (s2, real, _) = public.from("203.0.113.1").apply(1, "王小明").await;
    let (s3, other, _) = public.from("203.0.113.3").apply(2, "张三").await;
    assert_eq!((s1, s2, s3), (201, 201, 201), "{squat} {real} {other}");
    assert_eq!(keys(&squat), keys(&other), "same shape: {squat} / {other}");
    assert_eq!(keys(&real), keys(&other), "same shape: {real} / {other}");
    for r in [&squat, &real, &other] {
        assert_eq!(r["app"].as_str().map(str::len), Some(10), "{r}");
        assert_eq!(r["salt"].as_str().map(str::len), Some(32), "{r}");
        assert_eq!(r["receipts"].as_array().map(Vec::len), Some(1), "{r}");
    }
    let (s4, third, _) = public.from("203.0.113.3").apply(3, "赵五").await;
    let (s5, fourth, _) = public.from("203.0.113.3").apply(4, "钱六").await;
    assert_eq!((s4, s5), (201, 201));
    // A correction (audited).
    let (status, _, _) = public
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/draws/{DRAW}/applications/{}", app_of(&other)),
            Some(
                json!({"salt": other["salt"], "child_id": child_id(2), "child_name": "张三",
                        "choices": [{"kg": "KG-A", "class": 2}]}),
            ),
        )
        .await;
    assert_eq!(status, 200);

    // Both applications for child 1 are in conflict, for the organiser only, masked.
    let path = format!("/api/v1/draws/{DRAW}/applications?status=conflict");
    assert_eq!(public.get(&path).await.0, 401, "organisers only");
    let (status, list) = org.get(&path).await;
    assert_eq!(status, 200, "{list}");
    let conflicted: BTreeSet<&str> = list["applications"]
        .as_array()
        .expect("applications")
        .iter()
        .map(|a| a["app"].as_str().unwrap())
        .collect();
    assert_eq!(
        conflicted,
        BTreeSet::from([app_of(&real).as_str(), app_of(&squat).as_str()]),
        "{list}"
    );
    assert_eq!(list["counts"]["conflict"], 2, "{list}");
    assert_eq!(list["counts"]["pending"], 3, "{list}");
    let text = list.to_string();
    assert!(
        text.contains("王*") && text.contains("李*"),
        "masked: {list}"
    );
    for secret in ["王小明", "李四", &child_id(1)] {
        assert!(!text.contains(secret), "no child data in the list: {list}");
    }
    let real_entry = list["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == real["app"])
        .unwrap();
    assert_eq!(real_entry["conflicts_with"], json!([app_of(&squat)]));
    let (status, bad) = org
        .get(&format!("/api/v1/draws/{DRAW}/applications?status=maybe"))
        .await;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (400, Some("status"))
    );
    // The parent sees "pending": a conflict is the organiser's business.
    let (status, seen) = public.status(&real, 1, "王小明").await;
    assert_eq!(
        (status, &seen["status"]),
        (200, &json!("pending")),
        "{seen}"
    );
    let (status, _) = public.status(&real, 1, "李四").await;
    assert_eq!(status, 404, "the receipt and the child's data must match");

    // No close while a conflict remains.
    let (status, body) = org
        .post(&format!("/api/v1/draws/{DRAW}/close"), json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflicts_unresolved")),
        "{body}"
    );

    // The review: verifying one of two conflicting applications alone is refused; with
    // the other rejected (in the same review) it goes through.
    let (status, body) = org.review(json!({"verified": [app_of(&real)]})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("in_conflict")),
        "{body}"
    );
    let (status, body) = org
        .review(json!({"rejected": [{"app": app_of(&squat), "reason": ""}]}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("rejected[0].reason")),
        "{body}"
    );
    let (status, body) = org
        .review(json!({
            "verified": [app_of(&real), app_of(&other)],
            "rejected": [{"app": app_of(&squat), "reason": "身份证明材料与申请不符"},
                         {"app": app_of(&fourth), "reason": "不在招生范围"}],
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["verified"], &body["rejected"]),
        (&json!(2), &json!(2))
    );
    let (status, body) = org.review(json!({"verify_all": true})).await;
    assert_eq!((status, &body["verified"]), (200, &json!(1)), "{body}");
    let (_, seen) = public.status(&real, 1, "王小明").await;
    assert_eq!(seen["status"], "verified", "{seen}");
    let (_, seen) = public.status(&squat, 1, "李四").await;
    assert_eq!(
        (&seen["status"], &seen["reason"]),
        (&json!("rejected"), &json!("身份证明材料与申请不符")),
        "{seen}"
    );

    // Limits: per IP ...
    let flood = public.from("203.0.113.9");
    let mut late = Vec::new();
    for n in 10..16 {
        let (status, receipt, _) = flood.apply(n, &format!("孩子{n}")).await;
        assert_eq!(status, 201, "{receipt}");
        late.push((n, receipt));
    }
    let (status, body, headers) = flood.apply(16, "孩子16").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    // ... and per child, whatever the IP.
    let mut same = Vec::new();
    for i in 0..3 {
        let (status, receipt, _) = public
            .from(&format!("198.51.100.{i}"))
            .apply(20, "周七")
            .await;
        assert_eq!(status, 201, "{receipt}");
        same.push(app_of(&receipt));
    }
    let (status, body, headers) = public.from("198.51.100.9").apply(20, "周七").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    assert!(headers.contains_key("retry-after"));
    // Those three are in conflict: rejected in bulk. One late application is withdrawn
    // (audited), the others stay pending and so are left out of the draw.
    let rejected: Vec<Value> = same
        .iter()
        .map(|app| json!({"app": app, "reason": "重复申请"}))
        .collect();
    let (status, body) = org.review(json!({"rejected": rejected})).await;
    assert_eq!((status, &body["rejected"]), (200, &json!(3)), "{body}");
    let (n, receipt) = &late[0];
    let (status, body) = flood
        .post(
            &format!(
                "/api/v1/draws/{DRAW}/applications/{}/withdraw",
                app_of(receipt)
            ),
            json!({"salt": receipt["salt"], "child_id": child_id(*n), "child_name": format!("孩子{n}")}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, seen) = flood
        .status(&late[1].1, late[1].0, &format!("孩子{}", late[1].0))
        .await;
    assert_eq!(seen["status"], "pending", "{seen}");

    let (status, body) = org
        .post(&format!("/api/v1/draws/{DRAW}/close"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    // Announce and draw: only the verified applications are leaves.
    let draw_id = DrawId::parse(DRAW).unwrap();
    let (status, body) = org
        .post(
            &format!("/api/v1/draws/{DRAW}/witnesses/0/commitment"),
            json!({"commitment": secret(7).commitment(&draw_id).to_string()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = org
        .post(&format!("/api/v1/draws/{DRAW}/announce"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = org.review(json!({"verify_all": true})).await;
    assert_eq!(status, 409, "no review after the announcement: {body}");
    let (status, body) = org
        .post(
            &format!("/api/v1/draws/{DRAW}/witnesses/0/reveal"),
            json!({"secret": secret(7).to_hex()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The inclusion proof finds the verified application of child 1 among the two.
    let (status, proof) = public
        .from("203.0.113.1")
        .post(
            &format!("/api/v1/draws/{DRAW}/proof"),
            json!({"app": app_of(&real), "child_id": child_id(1), "child_name": "王小明"}),
        )
        .await;
    assert_eq!(status, 200, "{proof}");
    assert_eq!(proof["tree_size"], 3, "{proof}");
    let (status, body) = org
        .post(&format!("/api/v1/draws/{DRAW}/draw"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, draw) = public.get(&format!("/api/v1/draws/{DRAW}")).await;
        if draw["state"] == "published" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not published: {draw}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, signed) = public
        .get(&format!("/api/v1/draws/{DRAW}/transcript"))
        .await;
    assert_eq!(status, 200);
    let leaves: BTreeSet<&str> = signed["transcript"]["leaves"]
        .as_array()
        .expect("leaves")
        .iter()
        .map(|l| l["app"].as_str().unwrap())
        .collect();
    assert_eq!(
        leaves,
        BTreeSet::from([
            app_of(&real).as_str(),
            app_of(&other).as_str(),
            app_of(&third).as_str()
        ]),
        "only verified applications are announced"
    );
    let (status, found) = public
        .from("203.0.113.1")
        .post(
            &format!("/api/v1/draws/{DRAW}/lookup"),
            json!({"child_id": child_id(1), "child_name": "王小明"}),
        )
        .await;
    assert_eq!((status, &found["app"]), (200, &real["app"]), "{found}");
    let (status, _) = public
        .from("203.0.113.2")
        .post(
            &format!("/api/v1/draws/{DRAW}/lookup"),
            json!({"child_id": child_id(1), "child_name": "李四"}),
        )
        .await;
    assert_eq!(status, 404, "a rejected application is in no result");

    // Every create, correction, withdrawal and review is audited, without child data.
    let (status, audit) = org.get(&format!("/api/v1/draws/{DRAW}/audit")).await;
    assert_eq!(status, 200);
    let entries = audit["entries"].as_array().expect("entries");
    let count = |action: &str| entries.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("application.create"), 5 + 6 + 3, "{audit}");
    assert_eq!(count("application.correct"), 1, "{audit}");
    assert_eq!(count("application.withdraw"), 1, "{audit}");
    assert_eq!(count("application.review"), 3, "{audit}");
    assert!(
        entries
            .iter()
            .filter(|e| e["action"] == "application.create")
            .any(|e| e["detail"].as_str().unwrap().contains(&app_of(&squat))),
        "the squatting application is traceable by its code: {audit}"
    );
    let text = audit.to_string();
    for secret in [
        "王小明",
        "李四",
        "身份证明材料",
        &child_id(1),
        &child_id(20),
    ] {
        assert!(!text.contains(secret), "{secret} in the audit log: {audit}");
    }
    for secret in ["王小明", "李四", &child_id(1)] {
        assert!(!app.stderr().contains(secret), "{secret} in the server log");
    }
}

#[tokio::test]
async fn draw_review_squatting_and_limits_sqlite() {
    review_flow(AppOptions::default()).await;
}

#[tokio::test]
async fn draw_review_squatting_and_limits_postgres() {
    review_flow(AppOptions::postgres()).await;
}
