//! Opening day of applications against the real server, on SQLite and PostgreSQL: eight
//! tabs apply for one child at once (all kept, in conflict, resolved by the organiser's
//! review), then 200 parents apply at once and the organiser closes once half of them are
//! answered. No request fails with a 5xx, every 201 is stored, and nothing is stored once
//! the close has been answered.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures::future::join_all;
use lottery::ChildId;
use serde_json::{Value, json};

use crate::support::{AppOptions, TestApp};

const PARENTS: u32 = 200;
const SAME_CHILD: u32 = 8;

fn child_id(n: u32) -> String {
    ChildId::with_check_digit(&format!("1101052021{n:07}"))
        .expect("17 digits")
        .as_str()
        .to_owned()
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
}

async fn opening_day(options: AppOptions) {
    // Every request comes from 127.0.0.1: the limits per IP and per child are raised.
    let app = TestApp::spawn_with(
        options
            .config("[draw]\napply_per_ip_per_minute = 10000\napply_per_child_per_minute = 100\n"),
    )
    .await;
    app.create_user("org", crate::support::PASSWORD, &["organiser"]);
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client"),
        base: app.base_url.clone(),
        token: app.create_token("org", "api"),
    };
    let draw_id = "kg-rush";
    let (status, body) = client
        .post(
            "/api/v1/draws",
            json!({
                "draw_id": draw_id,
                "title": "2027年秋季公办幼儿园派位",
                "kindergartens": [{"code": "KG-A", "name": "第一幼儿园", "seats": 30}],
                "mechanism": "deferred-acceptance",
                "multiples": "whole-or-skip",
                "witnesses": [{"name": "张公证员", "role": "notary"}],
                "draw_time": "2027-06-18T09:30:00Z",
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = client
        .post(&format!("/api/v1/draws/{draw_id}/open"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    let path = format!("/api/v1/draws/{draw_id}/applications");
    let apply = |n: u32| {
        let (client, path) = (&client, &path);
        async move {
            client
                .post(
                    path,
                    json!({"child_id": child_id(n), "child_name": format!("孩子{n}"),
                           "choices": [{"kg": "KG-A", "class": 1}]}),
                )
                .await
        }
    };
    // Eight tabs for one child at once: every one stored (the answer does not tell a
    // second application from a first), all in conflict; the organiser keeps one.
    let same = join_all((0..SAME_CHILD).map(|_| apply(PARENTS + 1))).await;
    for (status, body) in &same {
        assert_eq!(*status, 201, "one child, several tabs: {body}");
    }
    let (status, conflicts) = client
        .get(&format!(
            "/api/v1/draws/{draw_id}/applications?status=conflict"
        ))
        .await;
    assert_eq!(status, 200, "{conflicts}");
    assert_eq!(conflicts["total"], SAME_CHILD, "{conflicts}");
    let apps: Vec<&str> = same.iter().filter_map(|(_, b)| b["app"].as_str()).collect();
    let rejected: Vec<Value> = apps[1..]
        .iter()
        .map(|app| json!({"app": app, "reason": "重复申请"}))
        .collect();
    let (status, body) = client
        .post(
            &format!("/api/v1/draws/{draw_id}/review"),
            json!({"verified": [apps[0]], "rejected": rejected}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let same_created = same.len();

    let answered = AtomicUsize::new(0);
    let half = tokio::sync::Notify::new();
    let parent = |n: u32| {
        let (answered, half) = (&answered, &half);
        async move {
            let answer = apply(n).await;
            if answered.fetch_add(1, SeqCst) + 1 == PARENTS as usize / 2 {
                half.notify_one();
            }
            answer
        }
    };
    let close = async {
        half.notified().await;
        let closed = client
            .post(&format!("/api/v1/draws/{draw_id}/close"), json!({}))
            .await;
        let (_, draw) = client.get(&format!("/api/v1/draws/{draw_id}")).await;
        (closed, draw["applications"].as_u64())
    };
    let (parents, (closed, count_at_close)) =
        tokio::join!(join_all((1..=PARENTS).map(parent)), close);

    let statuses = |answers: &[(u16, Value)]| {
        let mut counts = std::collections::BTreeMap::<u16, usize>::new();
        for (status, _) in answers {
            *counts.entry(*status).or_default() += 1;
        }
        counts
    };
    let failed: Vec<&(u16, Value)> = parents
        .iter()
        .chain(&same)
        .filter(|(status, _)| *status >= 500)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} applications failed: parents {:?}, one child {:?}, e.g. {:?}",
        failed.len(),
        parents.len() + same.len(),
        statuses(&parents),
        statuses(&same),
        failed.first()
    );
    assert_eq!(closed.0, 200, "the close: {}", closed.1);
    for (status, body) in parents.iter().chain(&same) {
        assert!(
            *status == 201 || *status == 409,
            "an application answered {status}: {body}"
        );
    }
    let created = parents.iter().filter(|(status, _)| *status == 201).count();
    assert!(
        created >= PARENTS as usize / 2,
        "the close came once half were answered: {created} created"
    );

    let (_, draw) = client.get(&format!("/api/v1/draws/{draw_id}")).await;
    assert_eq!(draw["state"], "closed", "{draw}");
    let stored = draw["applications"].as_u64().expect("count") as usize;
    assert_eq!(
        stored,
        created + same_created,
        "every 201 is stored, nothing else"
    );
    assert_eq!(
        count_at_close,
        Some(stored as u64),
        "nothing was stored after the close was answered"
    );
    let (status, audit) = client.get(&format!("/api/v1/draws/{draw_id}/audit")).await;
    assert_eq!(status, 200, "{audit}");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    let close_at = actions
        .iter()
        .position(|a| *a == "draw.closed")
        .expect("the close is audited");
    assert!(
        !actions[close_at..].contains(&"application.create"),
        "applications audited after the close: {:?}",
        &actions[close_at..]
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "application.create")
            .count(),
        stored,
        "one audit entry per application"
    );
    assert!(
        !app.stderr().contains("database is locked"),
        "the server logged `database is locked`"
    );
}

#[tokio::test]
async fn opening_day_applications_never_fail_sqlite() {
    opening_day(AppOptions::default()).await;
}

#[tokio::test]
async fn opening_day_applications_never_fail_postgres() {
    opening_day(AppOptions::postgres()).await;
}
