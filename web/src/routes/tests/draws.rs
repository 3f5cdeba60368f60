//! Router tests of the draw surface, on SQLite and PostgreSQL: what the public can learn
//! about a draft (nothing: an unknown draw's 404), and the CSV import's report.

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{app_on, login_as, send, with_session};
use crate::store::testing::TestStore;

struct DrawApp {
    app: axum::Router,
    /// alice, an administrator (who may organise draws): cookie and CSRF token.
    session: (String, String),
    t: TestStore,
    _dir: tempfile::TempDir,
}

async fn draw_app(t: TestStore) -> DrawApp {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let (app, _state, t) = app_on(
        t,
        &[
            ("GONGKAI_DATA_DIR", data.as_str()),
            ("GONGKAI_LOOKUP_PER_IP_PER_MINUTE", "1000"),
            ("GONGKAI_LOOKUP_PER_CHILD_PER_MINUTE", "1000"),
            ("GONGKAI_DRAW_APPLY_PER_IP_PER_MINUTE", "1000"),
            ("GONGKAI_DRAW_APPLY_PER_CHILD_PER_MINUTE", "1000"),
        ],
    )
    .await;
    let session = login_as(&app, "alice", "correct horse battery").await;
    DrawApp {
        app,
        session,
        t,
        _dir: dir,
    }
}

fn draw_body(draw_id: &str) -> Value {
    json!({
        "draw_id": draw_id,
        "title": "秘密的草稿派位",
        "draw_time": "2030-06-18T01:30:00Z",
        "kindergartens": [
            {"code": "KG-A", "name": "第一幼儿园", "seats": 3},
            {"code": "KG-B", "name": "第二幼儿园", "seats": 2}
        ],
        "mechanism": "deferred-acceptance",
        "multiples": "whole-or-skip",
        "witnesses": [
            {"name": "张公证员", "role": "notary"},
            {"name": "李家长", "role": "parent representative"}
        ],
        "beacon_source": null,
    })
}

fn child_id(n: u32) -> String {
    lottery::ChildId::with_check_digit(&format!("1101052020{n:07}"))
        .unwrap()
        .as_str()
        .to_owned()
}

impl DrawApp {
    async fn staff(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, body) =
            send(&self.app, with_session(&self.session, method, uri, body)).await;
        (status, body)
    }

    /// A draw in state `draft` with witness 0's link issued: its token.
    async fn draft(&self, draw_id: &str) -> String {
        let (status, body) = self
            .staff("POST", "/api/v1/draws", draw_body(draw_id))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["state"], "draft");
        let (status, link) = self
            .staff(
                "POST",
                &format!("/api/v1/draws/{draw_id}/witnesses/0/link"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{link}");
        link["token"].as_str().unwrap().to_owned()
    }
}

/// Status, content type and the exact body bytes.
async fn raw(app: &axum::Router, req: Request<Body>) -> (StatusCode, Option<String>, Bytes) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, bytes)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn json_request(method: &str, uri: &str, body: &Value, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header("x-witness-token", token);
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

/// Every public request about draw `id` (pages and API), as someone without an account
/// or with the witness link `token` would send it.
fn public_requests(id: &str, token: &str) -> Vec<(String, Request<Body>)> {
    let child = json!({"child_id": child_id(1), "child_name": "王小明"});
    let choices = json!([{"kg": "KG-A", "class": 1}]);
    let receipt = json!({"salt": "00".repeat(16), "child_id": child_id(1), "child_name": "王小明"});
    let mut corrected = receipt.clone();
    corrected["choices"] = choices.clone();
    let mut application = child.clone();
    application["choices"] = choices;
    let mut proof = child.clone();
    proof["app"] = json!("8XQ2M0T9KC");
    let commitment = json!({"commitment": "ab".repeat(32)});
    let secret = json!({"secret": "cd".repeat(32)});
    let api = format!("/api/v1/draws/{id}");
    let mut list: Vec<(String, Request<Body>)> = Vec::new();
    for page in [
        "",
        "/apply",
        "/application",
        "/witness/0",
        "/witness/1",
        "/witness/7",
        "/lookup",
        "/proof",
        "/results",
    ] {
        list.push((format!("page {page}"), get(&format!("/draws/{id}{page}"))));
        list.push((
            format!("page {page} (en)"),
            get(&format!("/draws/{id}{page}?lang=en")),
        ));
    }
    for path in ["", "/announcement", "/transcript", "/results", "/progress"] {
        list.push((format!("GET api {path}"), get(&format!("{api}{path}"))));
    }
    let posts = [
        ("/applications", application, None),
        ("/proof", proof, None),
        ("/lookup", child, None),
        ("/applications/8XQ2M0T9KC/withdraw", receipt.clone(), None),
        ("/applications/8XQ2M0T9KC/status", receipt, None),
        ("/witnesses/0/commitment", commitment.clone(), Some(token)),
        (
            "/witnesses/0/commitment",
            commitment.clone(),
            Some("wt_wrong"),
        ),
        ("/witnesses/0/commitment", commitment.clone(), None),
        ("/witnesses/1/commitment", commitment.clone(), Some(token)),
        ("/witnesses/7/commitment", commitment, Some(token)),
        ("/witnesses/0/reveal", secret.clone(), Some(token)),
        ("/witnesses/0/reveal", secret, None),
    ];
    for (path, body, token) in posts {
        list.push((
            format!("POST api {path} token {token:?}"),
            json_request("POST", &format!("{api}{path}"), &body, token),
        ));
    }
    list.push((
        "PATCH api application".into(),
        json_request(
            "PATCH",
            &format!("{api}/applications/8XQ2M0T9KC"),
            &corrected,
            None,
        ),
    ));
    list
}

/// Issue 15 item 15: for the public, a draft is exactly an unknown draw, on every page
/// and API answer (a witness link included); staff still see it.
async fn drafts_answer_like_unknown_draws(t: TestStore) {
    let d = draw_app(t).await;
    let token = d.draft("kg-draft").await;
    let drafts = public_requests("kg-draft", &token);
    let unknown = public_requests("kg-nowhere", &token);
    for ((label, draft), (_, nowhere)) in drafts.into_iter().zip(unknown) {
        let seen = raw(&d.app, draft).await;
        let expected = raw(&d.app, nowhere).await;
        assert_eq!(seen.0, StatusCode::NOT_FOUND, "{label}");
        assert_eq!(
            seen, expected,
            "{label}: a draft must answer like an unknown draw"
        );
        let text = String::from_utf8_lossy(&seen.2);
        for secret in ["秘密", "张公证员", "kg-draft", "draft"] {
            assert!(!text.contains(secret), "{label} shows {secret}: {text}");
        }
    }
    let (_, _, list) = send(&d.app, get("/api/v1/draws")).await;
    assert_eq!(list["draws"], json!([]), "{list}");

    // Staff still see the draft, its witness page, and commit for a witness.
    let (status, body) = d.staff("GET", "/api/v1/draws/kg-draft", Value::Null).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("draft"))
    );
    let page = Request::get("/draws/kg-draft/witness/0")
        .header(header::COOKIE, &d.session.0)
        .body(Body::empty())
        .unwrap();
    let (status, _, page) = raw(&d.app, page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page).contains("张公证员"));
    let (status, body) = d
        .staff(
            "POST",
            "/api/v1/draws/kg-draft/witnesses/1/commitment",
            json!({"commitment": "ef".repeat(32)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Once open, the draw is public and the witness link works.
    let (status, body) = d
        .staff("POST", "/api/v1/draws/kg-draft/open", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = send(
        &d.app,
        json_request(
            "POST",
            "/api/v1/draws/kg-draft/witnesses/0/commitment",
            &json!({"commitment": "ab".repeat(32)}),
            Some(&token),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = raw(&d.app, get("/draws/kg-draft/witness/0")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(
        &d.app,
        json_request(
            "POST",
            "/api/v1/draws/kg-draft/witnesses/0/commitment",
            &json!({"commitment": "ab".repeat(32)}),
            Some("wt_wrong"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    d.t.cleanup().await;
}

#[tokio::test]
async fn drafts_answer_like_unknown_draws_on_sqlite() {
    drafts_answer_like_unknown_draws(TestStore::sqlite().await).await;
}

#[tokio::test]
async fn drafts_answer_like_unknown_draws_on_postgres() {
    drafts_answer_like_unknown_draws(TestStore::postgres().await).await;
}

/// Issue 15 item 17: new names of nothing visible are refused (API and CSV), and a CSV
/// with several kinds of bad rows is answered with every one of them, children who
/// already applied included, in one 422; nothing is stored.
async fn a_csv_report_names_every_bad_row(t: TestStore) {
    let d = draw_app(t).await;
    d.draft("kg-csv").await;
    let (status, body) = d
        .staff("POST", "/api/v1/draws/kg-csv/open", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let apply =
        |body: Value| json_request("POST", "/api/v1/draws/kg-csv/applications", &body, None);
    let choices = json!([{"kg": "KG-A", "class": 1}]);
    for n in [1, 4] {
        let (status, _, body) = send(
            &d.app,
            apply(json!({"child_id": child_id(n), "child_name": "王小明", "choices": choices})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for (body, field) in [
        (
            json!({"child_id": child_id(2), "child_name": "\u{0}\u{202E}\u{200B}", "choices": choices}),
            "child_name",
        ),
        (
            json!({"child_id": child_id(2), "child_name": "王\u{200B}明", "choices": choices}),
            "child_name",
        ),
        (
            json!({"children": [{"child_id": child_id(2), "child_name": "赵一"},
                                {"child_id": child_id(3), "child_name": "赵\u{202E}二"}],
                   "choices": choices}),
            "children[1].child_name",
        ),
    ] {
        let (status, _, answer) = send(&d.app, apply(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }

    let csv = format!(
        "child_id,child_name,choices,group\n\
         {},李一,KG-A:1,\n\
         {},\"\u{0}\u{202E}\u{200B}\",KG-A:1,\n\
         {},张三,KG-Z:1,\n\
         {},李二,KG-A:1,\n\
         {},王\u{200B}四,KG-A:1,\n\
         {},\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",KG-A:1,\n",
        child_id(1),
        child_id(2),
        child_id(3),
        child_id(2),
        child_id(4),
        child_id(5),
    );
    let request = Request::post("/api/v1/draws/kg-csv/applications/import")
        .header(header::COOKIE, &d.session.0)
        .header("x-csrf-token", &d.session.1)
        .header("content-type", "text/csv")
        .body(Body::from(csv))
        .unwrap();
    let (status, _, body) = send(&d.app, request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_rows", "{body}");
    let rows: Vec<(u64, String, String)> = body["error"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["field"].as_str().unwrap().to_owned(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(u64, String, String)> = [
        (2, "child_id", "already_applied"),
        (3, "child_name", "child_name_invisible"),
        (4, "choices", "choices"),
        (5, "child_id", "child_id_repeated"),
        (6, "child_id", "already_applied"),
        (6, "child_name", "child_name_invisible"),
    ]
    .into_iter()
    .map(|(line, field, code)| (line, field.to_owned(), code.to_owned()))
    .collect();
    assert_eq!(rows, expected, "{body}");
    assert!(
        !body.to_string().contains(&child_id(1)) && !body.to_string().contains("李一"),
        "no child's data in the report: {body}"
    );
    let (_, draw) = d.staff("GET", "/api/v1/draws/kg-csv", Value::Null).await;
    assert_eq!(draw["applications"], 2, "nothing stored: {draw}");
    d.t.cleanup().await;
}

#[tokio::test]
async fn a_csv_report_names_every_bad_row_on_sqlite() {
    a_csv_report_names_every_bad_row(TestStore::sqlite().await).await;
}

#[tokio::test]
async fn a_csv_report_names_every_bad_row_on_postgres() {
    a_csv_report_names_every_bad_row(TestStore::postgres().await).await;
}
