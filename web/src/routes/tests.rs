//! Router tests: the whole app in process (`oneshot`), on a temporary SQLite store.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::auth::{Role, hash_password};
use crate::config::{ConfigArgs, Settings};
use crate::state::AppState;
use crate::store::testing::TestStore;

mod draws;

async fn app() -> (axum::Router, AppState, TestStore) {
    app_with(&[]).await
}

async fn app_with(env: &[(&str, &str)]) -> (axum::Router, AppState, TestStore) {
    app_on(TestStore::sqlite().await, env).await
}

/// The app over the given store (SQLite or PostgreSQL), with `alice` an administrator.
async fn app_on(t: TestStore, env: &[(&str, &str)]) -> (axum::Router, AppState, TestStore) {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    }
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let settings = Settings::load_from(&ConfigArgs::default(), &env).unwrap();
    let state = AppState::new(
        settings,
        t.store.clone(),
        crate::viewer::ViewerKey::new("test"),
        CancellationToken::new(),
    )
    .unwrap();
    let hash = hash_password("correct horse battery").unwrap();
    t.store
        .create_user("alice", &hash, &[Role::Admin], 1)
        .await
        .unwrap();
    (super::router(state.clone()), state, t)
}

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

fn json_post(uri: &str, body: Value) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn cookies_of(headers: &axum::http::HeaderMap) -> String {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn errors_have_the_json_shape() {
    let (app, _, _t) = app().await;
    let (status, _, body) = send(
        &app,
        Request::get("/api/v1/nope").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");

    let req = Request::post("/api/v1/session")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON")
    );

    let (status, _, body) = send(
        &app,
        json_post("/api/v1/session", json!({"username": "alice"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "password");

    let (status, _, body) = send(
        &app,
        json_post("/api/v1/session", json!({"username": 3, "password": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "username");

    let big = "x".repeat(2 * 1024 * 1024);
    let (status, _, body) = send(
        &app,
        json_post("/api/v1/session", json!({"username": big, "password": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "payload_too_large");

    let req = Request::post("/api/v1/session")
        .body(Body::from("username=a"))
        .unwrap();
    let (status, _, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn session_login_csrf_and_logout() {
    let (app, _, _t) = app().await;
    let (status, _, body) = send(
        &app,
        json_post(
            "/api/v1/session",
            json!({"username": "alice", "password": "wrong password"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_credentials");

    let (status, headers, body) = send(
        &app,
        json_post(
            "/api/v1/session",
            json!({"username": "alice", "password": "correct horse battery"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["roles"], json!(["admin"]));
    let set_cookie: Vec<_> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("gongkai_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    assert!(
        !session.contains("Secure"),
        "plain http public URL: no Secure"
    );
    let cookie = cookies_of(&headers);
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();

    let me = Request::get("/api/v1/me")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (status, me_headers, body) = send(&app, me).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["username"], "alice");
    // Staff JSON (here with the CSRF token) is never kept by a browser or proxy.
    assert_eq!(me_headers[header::CACHE_CONTROL], "no-store");

    // A state change with the cookie but without the CSRF header is refused.
    let req = Request::post("/api/v1/tokens")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"name": "ci"}).to_string()))
        .unwrap();
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "csrf");

    let req = Request::post("/api/v1/tokens")
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"name": "ci"}).to_string()))
        .unwrap();
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();

    // The bearer token needs no CSRF and carries the user's roles.
    let req = Request::get("/api/v1/users")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, users_headers, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(users_headers[header::CACHE_CONTROL], "no-store");
    let list = Request::get("/api/v1/tokens")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = send(&app, list).await;
    assert!(
        !body.to_string().contains(&token),
        "listing never shows the secret"
    );

    let logout = Request::delete("/api/v1/session")
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(&app, logout).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let me = Request::get("/api/v1/me")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(&app, me).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_is_rate_limited_per_username() {
    // One attempt per minute: the bucket cannot refill during the test, however slow the
    // machine is.
    let (app, state, _t) = app_with(&[("GONGKAI_AUTH_LOGIN_PER_USER_PER_MINUTE", "1")]).await;
    let limit = state.settings.auth.login_per_user_per_minute;
    for _ in 0..limit {
        let (status, _, _) = send(
            &app,
            json_post(
                "/api/v1/session",
                json!({"username": "alice", "password": "wrong password"}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, body) = send(
        &app,
        json_post(
            "/api/v1/session",
            json!({"username": "alice", "password": "correct horse battery"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "rate_limited");
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
}

#[tokio::test]
async fn pages_carry_csp_and_language() {
    let (app, _, _t) = app().await;
    let (status, headers, body) = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(body.as_str().unwrap().contains("lang=\"zh-CN\""));
    let req = Request::get("/")
        .header(header::ACCEPT_LANGUAGE, "en-US,en;q=0.9")
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = send(&app, req).await;
    assert!(body.as_str().unwrap().contains("lang=\"en\""));
    let (_, _, body) = send(
        &app,
        Request::get("/login?lang=en").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(body.as_str().unwrap().contains("id=\"username\""));
    let (status, headers, _) = send(
        &app,
        Request::get("/assets/app.css").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let (status, _, _) = send(
        &app,
        Request::get("/no/such/page").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn verify_page_and_its_scripts() {
    let (app, _, _t) = app().await;
    let page = |uri: &'static str| {
        let app = app.clone();
        async move {
            let (status, _, body) =
                send(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            body.as_str().unwrap().to_owned()
        }
    };
    let plain = page("/verify").await;
    assert!(plain.contains("id=\"transcript-file\""));
    assert!(plain.contains("src=\"/assets/verify-page.js\""));
    assert!(!plain.contains("data-draw="));
    // A draw id is handed to the page's fetch only when it is a valid one.
    assert!(
        page("/verify?draw=DRAW-2026-1")
            .await
            .contains("data-draw=\"DRAW-2026-1\"")
    );
    assert!(!page("/verify?draw=..%2Fx").await.contains("data-draw="));
    // Every page links to the verifier.
    assert!(page("/").await.contains("href=\"/verify\""));
    for script in [
        "draw-core.js",
        "draw-verify.js",
        "verify-worker.js",
        "verify-page.js",
    ] {
        let uri = format!("/assets/{script}");
        let (status, headers, _) = send(
            &app,
            Request::get(uri.as_str()).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
    }
}

#[tokio::test]
async fn probes_and_metrics() {
    let (app, _, _t) = app().await;
    let (status, _, _) = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A made-up method adds no series of its own.
    let made_up = axum::http::Method::from_bytes("Z".repeat(206).as_bytes()).unwrap();
    send(
        &app,
        Request::builder()
            .method(made_up)
            .uri("/healthz")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let (_, _, body) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = body.as_str().unwrap();
    assert!(!text.contains("ZZZZ"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(text.contains("gongkai_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/readyz\""), "{text}");
    assert!(text.contains("gongkai_db_pool_connections"), "{text}");
}

#[tokio::test]
async fn the_login_page_never_sends_anyone_to_another_site() {
    let (app, _, _t) = app().await;
    for next in [
        "/%09/evil.example",
        "/%0a/x",
        "//evil.example",
        "/%5Cevil.example",
    ] {
        let (status, _, body) = send(
            &app,
            Request::get(format!("/login?next={next}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{next}");
        let html = body.as_str().unwrap_or_default();
        assert!(!html.contains("evil.example"), "{next}: {html}");
        let field = html
            .split(r#"name="next" value=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        // minijinja escapes `/` as `&#x2f;`.
        assert_eq!(field.replace("&#x2f;", "/"), "/staff", "{next}");
    }
}

#[tokio::test]
async fn metrics_may_require_a_bearer_token() {
    let token = "scraper-secret-0123456789";
    let (app, _, _t) = app_with(&[("GONGKAI_METRICS_TOKEN", token)]).await;
    let (status, _, body) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = Request::get("/metrics")
        .header(header::AUTHORIZATION, "Bearer scraper-secret-9876543210")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, wrong).await.0, StatusCode::UNAUTHORIZED);
    let right = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&app, right).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_str()
            .unwrap()
            .contains("gongkai_db_pool_connections")
    );
}

#[tokio::test]
async fn events_api_lifecycle() {
    let (app, state, _t) = app().await;
    let (_, headers, body) = send(
        &app,
        json_post(
            "/api/v1/session",
            json!({"username": "alice", "password": "correct horse battery"}),
        ),
    )
    .await;
    let cookie = cookies_of(&headers);
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let authed = |method: &str, uri: &str, body: Option<Value>| {
        let b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf);
        match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        }
    };
    let new_event = json!({
        "kind": "interview", "title": "区长在线访谈", "topic": "老旧小区改造", "summary": "…",
        "scheduled_start": "2026-12-01T09:30:00+08:00", "scheduled_end": "2026-12-01T11:00:00+08:00",
        "guests": [{"name": "王某", "title": "区长", "organisation": "区政府"}], "form": "video", "visibility": "public"
    });
    let (status, _, body) = send(
        &app,
        authed("POST", "/api/v1/events", Some(new_event.clone())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["status"], "scheduled");

    // Anonymous users may read but not write.
    let (status, _, body) = send(
        &app,
        Request::get("/api/v1/events?status=scheduled")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"][0]["id"], id.as_str());
    // Staff login names (half a login) are not shown to the public; staff see them.
    assert!(body["events"][0].get("moderators").is_none(), "{body}");
    assert!(body["events"][0].get("broadcasters").is_none(), "{body}");
    let (_, _, public) = send(
        &app,
        Request::get(format!("/api/v1/events/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(public.get("moderators").is_none(), "{public}");
    let (_, _, staff) = send(&app, authed("GET", &format!("/api/v1/events/{id}"), None)).await;
    assert_eq!(staff["moderators"], json!([]), "{staff}");
    let (status, _, _) = send(&app, json_post("/api/v1/events", new_event.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(
        &app,
        Request::get("/api/v1/events?status=bogus")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("status"))
    );

    let (status, _, body) = send(
        &app,
        authed(
            "PATCH",
            &format!("/api/v1/events/{id}"),
            Some(json!({"title": "新标题"})),
        ),
    )
    .await;
    assert_eq!(
        (status, body["title"].as_str()),
        (StatusCode::OK, Some("新标题"))
    );
    let (status, _, body) = send(
        &app,
        authed(
            "PATCH",
            &format!("/api/v1/events/{id}"),
            Some(json!({"moderators": ["ghost"]})),
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("moderators")),
        "{body}"
    );

    let (status, _, body) = send(
        &app,
        authed("POST", &format!("/api/v1/events/{id}/publish-token"), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let token = body["token"].as_str().unwrap().to_owned();
    let (_, _, body2) = send(
        &app,
        authed("POST", &format!("/api/v1/events/{id}/publish-token"), None),
    )
    .await;
    assert_ne!(
        body2["token"].as_str().unwrap(),
        token,
        "calling again rotates"
    );
    let stored = state
        .store
        .publish_token_hash(&crate::domain::event::EventId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored,
        crate::auth::secret_hash(body2["token"].as_str().unwrap()),
        "stored hashed"
    );

    let (status, _, _) = send(
        &app,
        authed("POST", &format!("/api/v1/events/{id}/end"), None),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "cannot end a scheduled event");
    let (status, _, body) = send(
        &app,
        authed("POST", &format!("/api/v1/events/{id}/start"), None),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("live"))
    );
    let (status, _, _) = send(
        &app,
        authed("DELETE", &format!("/api/v1/events/{id}"), None),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a live event cannot be cancelled"
    );
    let (status, _, body) = send(
        &app,
        authed("POST", &format!("/api/v1/events/{id}/end"), None),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ended"))
    );
    let (status, _, _) = send(
        &app,
        Request::get("/api/v1/events/doesnotexist")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Logs in; the session cookie and the CSRF token.
async fn login_as(app: &axum::Router, username: &str, password: &str) -> (String, String) {
    let (status, headers, body) = send(
        app,
        json_post(
            "/api/v1/session",
            json!({"username": username, "password": password}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "login as {username}: {body}");
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    (cookies_of(&headers), csrf)
}

fn with_session(session: &(String, String), method: &str, uri: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::COOKIE, &session.0)
        .header("x-csrf-token", &session.1)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn an_administrator_resets_a_staff_password() {
    let (app, _state, _t) = app().await;
    let alice = login_as(&app, "alice", "correct horse battery").await;
    let create =
        json!({"username": "bob", "password": "bob's first password", "roles": ["moderator"]});
    let (status, _, body) = send(&app, with_session(&alice, "POST", "/api/v1/users", create)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bob = login_as(&app, "bob", "bob's first password").await;

    let reset = |who: &str, password: &str| {
        with_session(
            &alice,
            "PUT",
            &format!("/api/v1/users/{who}/password"),
            json!({ "password": password }),
        )
    };
    let (status, _, body) = send(&app, reset("bob", "short")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "password", "{body}");
    let (status, _, _) = send(&app, reset("nobody", "a long enough password")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = send(&app, reset("bob", "bob's second password")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Bob's session ended with the old password; only the new one logs in.
    let me = Request::get("/api/v1/me")
        .header(header::COOKIE, &bob.0)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, me).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        &app,
        json_post(
            "/api/v1/session",
            json!({"username": "bob", "password": "bob's first password"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bob = login_as(&app, "bob", "bob's second password").await;

    // A moderator may not reset anyone's password.
    let attempt = with_session(
        &bob,
        "PUT",
        "/api/v1/users/alice/password",
        json!({"password": "taken over at last"}),
    );
    assert_eq!(send(&app, attempt).await.0, StatusCode::FORBIDDEN);
    login_as(&app, "alice", "correct horse battery").await;
}

#[tokio::test]
async fn a_staff_member_changes_their_own_password() {
    let (app, _state, _t) = app().await;
    let alice = login_as(&app, "alice", "correct horse battery").await;
    let change = |current: &str, new: &str| {
        with_session(
            &alice,
            "PUT",
            "/api/v1/me/password",
            json!({"current_password": current, "new_password": new}),
        )
    };
    let (status, _, body) = send(&app, change("not my password", "a brand new password")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "current_password", "{body}");
    let (status, _, body) = send(&app, change("correct horse battery", "short")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "new_password", "{body}");

    let (status, headers, _) = send(
        &app,
        change("correct horse battery", "a brand new password"),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cleared = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("gongkai_session=") && c.contains("Max-Age=0"));
    assert!(cleared, "the session cookie is cleared: {headers:?}");
    let me = Request::get("/api/v1/me")
        .header(header::COOKIE, &alice.0)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&app, me).await.0,
        StatusCode::UNAUTHORIZED,
        "sessions end"
    );
    login_as(&app, "alice", "a brand new password").await;
}
