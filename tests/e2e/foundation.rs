//! The foundation: probes, CLI, configuration errors, staff login, CSRF, API
//! tokens, the error shape, pages, shutdown; on SQLite and PostgreSQL.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::postgres::TestDatabase;
use crate::support::{
    AppOptions, PASSWORD, TestApp, gongkai_command, run_with_timeout, send_oversized_body,
};

// ---------------------------------------------------------------- probes, CLI

#[tokio::test]
async fn the_data_directory_and_database_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    // The harness made the data directory under the usual umask (0755); the server
    // tightens it and creates the database files for its user only.
    let app = TestApp::spawn().await;
    // A write, so the WAL and its index exist.
    app.create_user("admin", PASSWORD, &["admin"]);
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&app.data_dir), 0o700, "data directory");
    for file in ["gongkai.db", "gongkai.db-wal", "gongkai.db-shm"] {
        assert_eq!(mode(&app.data_dir.join(file)), 0o600, "{file}");
    }
}

#[tokio::test]
async fn health_ready_and_metrics_answer() {
    let app = TestApp::spawn().await;

    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let me = app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(me.status(), 401);

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let content_type = header(metrics.headers(), "content-type");
    assert!(
        content_type.starts_with("text/plain"),
        "metrics content-type {content_type:?}"
    );
    let text = metrics.text().await.unwrap();
    let healthz_sample = text.lines().find(|line| {
        line.starts_with("gongkai_http_requests_total{")
            && line.contains("route=\"/healthz\"")
            && line.contains("status=\"200\"")
    });
    assert!(
        healthz_sample.is_some(),
        "no gongkai_http_requests_total{{route=\"/healthz\",status=\"200\"}} sample in:\n{text}"
    );
    let unauthorized_sample = text.lines().any(|line| {
        line.starts_with("gongkai_http_requests_total{") && line.contains("status=\"401\"")
    });
    assert!(unauthorized_sample, "401 responses not counted:\n{text}");
    for name in [
        "gongkai_http_request_duration_seconds",
        "gongkai_websockets_open",
        "gongkai_db_pool_connections",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(name)),
            "metric {name} missing:\n{text}"
        );
    }
}

#[test]
fn version_names_semver_and_commit() {
    let out = run_with_timeout(
        {
            let mut command = gongkai_command();
            command.arg("--version");
            command
        },
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "--version failed: {}", out.stderr);
    let line = out.stdout.trim();
    let expected_prefix = format!("gongkai {} (", env!("CARGO_PKG_VERSION"));
    assert!(
        line.starts_with(&expected_prefix) && line.ends_with(')'),
        "`gongkai --version` printed {line:?}, expected `{expected_prefix}<commit>)`"
    );
    let commit = &line[expected_prefix.len()..line.len() - 1];
    assert!(!commit.trim().is_empty(), "empty commit in {line:?}");
}

#[test]
fn bad_configuration_is_refused_naming_the_key() {
    struct Case {
        toml: &'static str,
        env: Option<(&'static str, &'static str)>,
        key: &'static str,
    }
    let cases = [
        Case {
            toml: "log_format = \"text\"\nlisten_adress = \"127.0.0.1:0\"\n",
            env: None,
            key: "listen_adress",
        },
        Case {
            toml: "[auth]\nsession_hour = 3\n",
            env: None,
            key: "session_hour",
        },
        Case {
            toml: "log_format = \"yaml\"\n",
            env: None,
            key: "log_format",
        },
        Case {
            toml: "[auth]\nlogin_per_ip_per_minute = \"lots\"\n",
            env: None,
            key: "login_per_ip_per_minute",
        },
        Case {
            toml: "",
            env: Some(("GONGKAI_LOG_FORMAT", "yaml")),
            key: "log_format",
        },
        Case {
            toml: "",
            env: Some(("GONGKAI_LISTN", "127.0.0.1:0")),
            key: "gongkai_listn",
        },
        Case {
            toml: "[media]\nudp_port = 40000\nudp_port_min = 41000\nudp_port_max = 41999\n",
            env: None,
            key: "media.udp_port",
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gongkai.toml");
        std::fs::write(&config, case.toml).unwrap();
        let mut command = gongkai_command();
        command
            .current_dir(dir.path())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path().join("data"));
        if let Some((key, value)) = case.env {
            command.env(key, value);
        }
        let out = run_with_timeout(command, None, Duration::from_secs(30));
        assert_eq!(
            out.status.code(),
            Some(2),
            "config {:?} env {:?}: expected exit code 2, got {}; stderr:\n{}",
            case.toml,
            case.env,
            out.status,
            out.stderr
        );
        assert!(
            out.stderr.to_lowercase().contains(case.key),
            "config {:?} env {:?}: stderr does not name `{}`:\n{}",
            case.toml,
            case.env,
            case.key,
            out.stderr
        );
        assert!(
            !out.stdout.contains("listening on"),
            "the server started despite bad config {:?}",
            case.toml
        );
    }
}

/// The shared media port is bound at start, so a port already taken stops the server
/// with a message naming it instead of failing the first publisher.
#[test]
fn a_media_port_in_use_stops_the_start_naming_it() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gongkai.toml");
    std::fs::write(
        &config,
        format!("[media]\nbind_ip = \"127.0.0.1\"\nudp_port = {port}\n"),
    )
    .unwrap();
    let mut command = gongkai_command();
    command
        .current_dir(dir.path())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let out = run_with_timeout(command, None, Duration::from_secs(30));
    assert!(
        !out.status.success(),
        "started on a taken port: {}",
        out.stdout
    );
    assert!(!out.stdout.contains("listening on"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains(&format!("media UDP port 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    drop(taken);
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut app = TestApp::spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let started = std::time::Instant::now();
    let status = app
        .terminate(Duration::from_secs(10))
        .expect("gongkai did not exit within 10 s of SIGTERM");
    assert!(
        status.success(),
        "gongkai exited with {status} after SIGTERM; stderr:\n{}",
        app.stderr()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Scripts (and this harness) send SIGTERM as soon as they have seen the ready
/// line, so by then the signal must already be handled.
#[tokio::test]
async fn sigterm_right_after_the_ready_line_is_graceful() {
    for attempt in 1..=5 {
        let mut app = TestApp::spawn().await;
        let status = app
            .terminate(Duration::from_secs(10))
            .expect("gongkai did not exit within 10 s of SIGTERM");
        assert!(
            status.success(),
            "attempt {attempt}: SIGTERM right after `gongkai listening on` ended the process \
             with {status}: the signal handler must be installed before the line is printed"
        );
    }
}

#[tokio::test]
async fn logs_are_json_on_stderr_without_secrets() {
    let mut app = TestApp::spawn_with(AppOptions::default().arg("--log-format").arg("json")).await;
    app.create_user("olga", PASSWORD, &["admin"]);
    let wrong_password = "hunter2 is not it";
    assert_eq!(app.login("olga", wrong_password).await.status(), 401);
    let csrf = app.login_ok("olga", PASSWORD).await;
    let token: Value = app
        .client
        .post(app.url("/api/v1/tokens"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({ "name": "log-check" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().expect("token").to_owned();
    let me = app
        .anonymous_client()
        .get(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let status = app.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );

    let stdout = app.stdout_lines();
    assert_eq!(
        stdout.len(),
        1,
        "stdout must hold only the listening line: {stdout:?}"
    );
    let stderr = app.stderr();
    assert!(!stderr.trim().is_empty(), "no logs on stderr");
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(
            parsed.as_ref().is_ok_and(Value::is_object),
            "--log-format json wrote a non-JSON line: {line}"
        );
    }
    for secret in [PASSWORD, wrong_password, csrf.as_str(), token.as_str()] {
        assert!(!stderr.contains(secret), "a secret was logged:\n{stderr}");
    }
}

// ---------------------------------------------------------------- staff login

#[tokio::test]
async fn login_sets_hardened_cookies_and_logout_ends_the_session() {
    let app = TestApp::spawn().await;
    app.create_user("alice", PASSWORD, &["admin", "organiser"]);

    let response = app.login("alice", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let session = cookie(response.headers(), "gongkai_session")
        .expect("login sets the gongkai_session cookie");
    let lower = session.to_lowercase();
    assert!(
        lower.contains("httponly"),
        "session cookie not HttpOnly: {session}"
    );
    assert!(
        lower.contains("samesite=strict"),
        "session cookie not SameSite=Strict: {session}"
    );
    assert!(
        !lower.contains("; secure"),
        "Secure cookie although public_url is http: {session}"
    );
    let csrf_cookie = cookie(response.headers(), "gongkai_csrf")
        .expect("login sets the readable gongkai_csrf cookie");
    assert!(
        !csrf_cookie.to_lowercase().contains("httponly"),
        "gongkai_csrf must be readable by scripts: {csrf_cookie}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["username"], "alice", "{body}");
    assert_eq!(roles(&body["user"]), ["admin", "organiser"], "{body}");
    let csrf = body["csrf_token"].as_str().unwrap_or_default().to_owned();
    assert!(!csrf.is_empty(), "no csrf_token: {body}");
    assert!(
        !body.to_string().contains(PASSWORD),
        "the password is echoed: {body}"
    );

    let me = app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    let user = if me.get("user").is_some() {
        &me["user"]
    } else {
        &me
    };
    assert_eq!(user["username"], "alice", "{me}");
    assert_eq!(roles(user), ["admin", "organiser"], "{me}");

    let logout = app
        .client
        .delete(app.url("/api/v1/session"))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert!(logout.status().is_success(), "logout: {}", logout.status());
    let me = app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    expect_error(me, 401, None).await;
}

#[tokio::test]
async fn wrong_credentials_are_rejected_alike() {
    let app = TestApp::spawn().await;
    app.create_user("bob", PASSWORD, &["moderator"]);

    let wrong_password = app.login("bob", "not the password").await;
    let body = expect_error(wrong_password, 401, Some("invalid_credentials")).await;
    let unknown_user = app.login("nobody", PASSWORD).await;
    let unknown = expect_error(unknown_user, 401, Some("invalid_credentials")).await;
    assert_eq!(
        body["error"]["message"], unknown["error"]["message"],
        "the messages reveal whether the user exists"
    );
    let me = app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(me.status(), 401);
}

#[tokio::test]
async fn session_cookie_is_secure_when_public_url_is_https() {
    let app = TestApp::spawn_with(
        AppOptions::default()
            .arg("--public-url")
            .arg("https://gongkai.example"),
    )
    .await;
    app.create_user("carol", PASSWORD, &["broadcaster"]);
    let response = app.login("carol", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let session = cookie(response.headers(), "gongkai_session").expect("session cookie");
    assert!(
        session.to_lowercase().contains("secure"),
        "session cookie lacks Secure behind an https public URL: {session}"
    );
}

#[tokio::test]
async fn reset_password_replaces_the_old_one() {
    let app = TestApp::spawn().await;
    app.create_user("dave", PASSWORD, &["notary"]);
    let new_password = "a different long passphrase 7";
    app.reset_password("dave", new_password);
    let old = app.login("dave", PASSWORD).await;
    assert_eq!(old.status(), 401);
    app.login_ok("dave", new_password).await;
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_username() {
    // One attempt a minute: the second is refused for the next ~60 s, long
    // enough that nothing below races the limiter's refill.
    let app = TestApp::spawn_with(
        AppOptions::default().config("[auth]\nlogin_per_user_per_minute = 1\n"),
    )
    .await;
    app.create_user("erin", PASSWORD, &["admin"]);
    app.create_user("fred", PASSWORD, &["admin"]);

    let limited = attempts_until_429(&app, 5, |_| ("erin".to_owned(), None)).await;
    let limited = limited.expect("5 wrong passwords for one username were never answered with 429");
    limited.assert_limit(1);
    let retry_after = check_too_many_requests(limited.response).await;
    assert!(
        retry_after > 1,
        "Retry-After {retry_after} with a 60 s refill"
    );

    // The limit protects the account: the right password does not get through either.
    let right = app.login("erin", PASSWORD).await;
    assert_eq!(
        right.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the correct password got through a locked username"
    );
    // Other accounts are not affected.
    app.login_ok("fred", PASSWORD).await;
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_ip_and_forwarded_for_is_not_trusted_by_default() {
    let app =
        TestApp::spawn_with(AppOptions::default().config("[auth]\nlogin_per_ip_per_minute = 3\n"))
            .await;
    // Different usernames, and a different forged X-Forwarded-For each time:
    // all from one real address.
    let limited = attempts_until_429(&app, 8, |i| {
        (format!("guess{i}"), Some(format!("198.51.100.{i}")))
    })
    .await;
    let limited = limited.unwrap_or_else(|| {
        panic!("8 failed logins from one IP were never answered with 429 (limit 3)")
    });
    limited.assert_limit(3);
    check_too_many_requests(limited.response).await;
}

#[tokio::test]
async fn forwarded_for_separates_clients_behind_a_trusted_proxy() {
    let app = TestApp::spawn_with(
        AppOptions::default()
            .config("trust_forwarded_for = true\n[auth]\nlogin_per_ip_per_minute = 3\n"),
    )
    .await;
    let limited = attempts_until_429(&app, 8, |i| {
        (format!("guess{i}"), Some("198.51.100.7".to_owned()))
    })
    .await;
    let limited = limited.expect("one forwarded client was never limited");
    limited.assert_limit(3);
    // Another client behind the same proxy is not affected.
    let other = app
        .anonymous_client()
        .post(app.url("/api/v1/session"))
        .header("X-Forwarded-For", "198.51.100.8")
        .json(&json!({ "username": "someone", "password": "wrong password" }))
        .send()
        .await
        .unwrap();
    expect_error(other, 401, Some("invalid_credentials")).await;
}

/// Failed guesses from one address cannot lock a moderator out during a live event: the
/// per-username limit counts per address; only a softer ceiling counts every address.
#[tokio::test]
async fn failed_logins_from_one_address_do_not_lock_the_user_out_elsewhere() {
    let app = TestApp::spawn_with(AppOptions::default().config(
        "trust_forwarded_for = true\n[auth]\nlogin_per_user_per_minute = 3\nlogin_per_account_per_minute = 6\n",
    ))
    .await;
    app.create_user("moderator", PASSWORD, &["moderator"]);
    let attacker = attempts_until_429(&app, 8, |_| {
        ("moderator".to_owned(), Some("198.51.100.66".to_owned()))
    })
    .await
    .expect("the attacker's address was never limited");
    attacker.assert_limit(3);
    let from = |address: &str, password: &str| {
        app.anonymous_client()
            .post(app.url("/api/v1/session"))
            .header("X-Forwarded-For", address.to_owned())
            .json(&json!({ "username": "moderator", "password": password }))
            .send()
    };
    // The real user, elsewhere, logs in.
    let real = from("203.0.113.5", PASSWORD).await.unwrap();
    assert_eq!(real.status(), 200);
    // Guessing from many addresses still meets the account's ceiling.
    let mut limited = false;
    for i in 0..10 {
        let response = from(&format!("192.0.2.{i}"), "wrong password")
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
        assert_eq!(response.status(), 401);
    }
    assert!(limited, "no ceiling over all addresses");
}

// ---------------------------------------------------------------- CSRF, tokens

#[tokio::test]
async fn csrf_is_required_for_cookie_sessions_but_not_for_bearer_tokens() {
    let app = TestApp::spawn().await;
    app.create_user("frank", PASSWORD, &["admin"]);
    let csrf = app.login_ok("frank", PASSWORD).await;

    let missing = app
        .client
        .post(app.url("/api/v1/tokens"))
        .json(&json!({ "name": "no-csrf" }))
        .send()
        .await
        .unwrap();
    expect_error(missing, 403, Some("csrf")).await;
    let wrong = app
        .client
        .post(app.url("/api/v1/tokens"))
        .header("X-CSRF-Token", format!("{csrf}x"))
        .json(&json!({ "name": "wrong-csrf" }))
        .send()
        .await
        .unwrap();
    expect_error(wrong, 403, Some("csrf")).await;
    let logout_without_csrf = app
        .client
        .delete(app.url("/api/v1/session"))
        .send()
        .await
        .unwrap();
    expect_error(logout_without_csrf, 403, Some("csrf")).await;

    let created = app
        .client
        .post(app.url("/api/v1/tokens"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({ "name": "automation" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["name"], "automation", "{created}");
    let token = created["token"].as_str().expect("token shown once");

    // A bearer token needs no CSRF header, and carries the user.
    let bearer = app.anonymous_client();
    let via_token = bearer
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(token)
        .json(&json!({ "name": "made-by-token" }))
        .send()
        .await
        .unwrap();
    assert_eq!(via_token.status(), 201);
    let me = bearer
        .get(app.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert!(me.text().await.unwrap().contains("frank"));
}

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_can_be_revoked() {
    let app = TestApp::spawn().await;
    app.create_user("grace", PASSWORD, &["organiser"]);
    let cli_token = app.create_token("grace", "from-cli");
    let csrf = app.login_ok("grace", PASSWORD).await;
    let created: Value = app
        .client
        .post(app.url("/api/v1/tokens"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({ "name": "from-api" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api_token = created["token"].as_str().expect("token").to_owned();
    let api_token_id = id_string(&created["id"]);

    let listing = app
        .client
        .get(app.url("/api/v1/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 200);
    let text = listing.text().await.unwrap();
    assert!(
        !text.contains(&api_token) && !text.contains(&cli_token),
        "token secrets are listed: {text}"
    );
    let listing: Value = serde_json::from_str(&text).unwrap();
    let names = token_names(&listing);
    assert!(
        names.iter().any(|n| n == "from-cli") && names.iter().any(|n| n == "from-api"),
        "listing {listing}"
    );

    let bearer = app.anonymous_client();
    for token in [&cli_token, &api_token] {
        let me = bearer
            .get(app.url("/api/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200, "a fresh token is refused");
    }

    let revoked = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{api_token_id}")))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert!(
        revoked.status().is_success(),
        "revoke: {}",
        revoked.status()
    );
    let me = bearer
        .get(app.url("/api/v1/me"))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap();
    expect_error(me, 401, None).await;
    let still = bearer
        .get(app.url("/api/v1/me"))
        .bearer_auth(&cli_token)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200, "revoking one token revoked another");
    let garbage = bearer
        .get(app.url("/api/v1/me"))
        .bearer_auth("gk_not-a-real-token")
        .send()
        .await
        .unwrap();
    expect_error(garbage, 401, None).await;

    let listing: Value = app
        .client
        .get(app.url("/api/v1/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names = token_names(&listing);
    assert_eq!(names, ["from-cli"], "listing after revoke {listing}");
}

// ---------------------------------------------------------------- error shape

#[tokio::test]
async fn api_errors_are_json_with_the_right_status() {
    let app = TestApp::spawn().await;

    let unknown = app
        .client
        .get(app.url("/api/v1/no-such-thing"))
        .send()
        .await
        .unwrap();
    expect_error(unknown, 404, None).await;

    let invalid_json = app
        .client
        .post(app.url("/api/v1/session"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    expect_error(invalid_json, 400, None).await;

    let missing_field = app
        .client
        .post(app.url("/api/v1/session"))
        .json(&json!({ "username": "someone" }))
        .send()
        .await
        .unwrap();
    let body = expect_error(missing_field, 400, None).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("password")),
        "the validation error does not name the field: {body}"
    );

    let too_large = send_oversized_body(&app.base_url, "POST", "/api/v1/session", 8 << 20).await;
    assert_eq!(too_large.status, 413, "{too_large:?}");
    let body: Value = serde_json::from_str(&too_large.body)
        .unwrap_or_else(|e| panic!("413 body is not JSON ({e}): {too_large:?}"));
    assert_error_shape(&body);
}

// ---------------------------------------------------------------- pages

#[tokio::test]
async fn pages_send_csp_and_switch_language() {
    let app = TestApp::spawn().await;
    let client = app.anonymous_client();

    let home = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(header(home.headers(), "content-type").starts_with("text/html"));
    let csp = header(home.headers(), "content-security-policy");
    assert!(
        csp.contains("default-src"),
        "missing or weak Content-Security-Policy on /: {csp:?}"
    );
    let html = home.text().await.unwrap();
    assert!(
        html.contains("lang=\"zh-CN\""),
        "default language is not zh-CN"
    );
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http://") && !html.contains("//cdn"),
        "the page loads something from another origin"
    );

    // Every asset the page references is served by the binary.
    let assets = asset_paths(&html);
    assert!(!assets.is_empty(), "the home page references no /assets/");
    for asset in assets {
        let response = client.get(app.url(&asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "asset {asset}");
    }

    let english = client.get(app.url("/?lang=en")).send().await.unwrap();
    assert!(
        english.text().await.unwrap().contains("lang=\"en\""),
        "?lang=en ignored"
    );
    let english = client
        .get(app.url("/"))
        .header("Accept-Language", "en-GB,en;q=0.9")
        .send()
        .await
        .unwrap();
    assert!(
        english.text().await.unwrap().contains("lang=\"en\""),
        "Accept-Language: en ignored"
    );
    let chinese = client
        .get(app.url("/"))
        .header("Accept-Language", "zh-CN,zh;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    assert!(chinese.text().await.unwrap().contains("lang=\"zh-CN\""));

    let login = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(login.status(), 200);
    assert!(
        header(login.headers(), "content-security-policy").contains("default-src"),
        "no CSP on /login"
    );
    let html = login.text().await.unwrap();
    for needle in ["id=\"username\"", "id=\"password\"", "type=\"password\""] {
        assert!(html.contains(needle), "/login lacks {needle}");
    }
}

// ---------------------------------------------------------------- PostgreSQL

#[tokio::test]
async fn login_and_tokens_work_on_postgres() {
    let app = TestApp::spawn_with(AppOptions::postgres()).await;
    assert!(app.database_url.starts_with("postgres"));
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    app.create_user("heidi", PASSWORD, &["admin", "notary"]);
    let wrong = app.login("heidi", "nope").await;
    expect_error(wrong, 401, Some("invalid_credentials")).await;
    let csrf = app.login_ok("heidi", PASSWORD).await;
    let me: Value = app
        .client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(me.to_string().contains("heidi"), "{me}");

    let created = app
        .client
        .post(app.url("/api/v1/tokens"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({ "name": "pg" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let cli_token = app.create_token("heidi", "pg-cli");
    let me = app
        .anonymous_client()
        .get(app.url("/api/v1/me"))
        .bearer_auth(&cli_token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}

// ---------------------------------------------------------------- infra/

#[tokio::test]
async fn the_single_node_example_config_is_accepted() {
    // Paths and addresses are overridden by the harness's flags; every other
    // key in the example must be one the binary knows.
    let app = TestApp::spawn_with(AppOptions::default().config(&infra_file("gongkai.toml"))).await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.create_user("kim", PASSWORD, &["admin"]);
    let response = app.login("kim", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let session = cookie(response.headers(), "gongkai_session").expect("session cookie");
    assert!(
        session.to_lowercase().contains("secure"),
        "the example's https public_url must make the cookie Secure: {session}"
    );
}

/// The two-node example: both nodes on one PostgreSQL database (and the local
/// NATS), a session made on one node is valid on the other.
#[tokio::test]
async fn two_nodes_from_the_example_share_users_and_sessions() {
    let database = TestDatabase::create().await;
    let node = |file: &str| {
        AppOptions::default()
            .config(&infra_file(file))
            .database_url(&database.url)
    };
    let a = TestApp::spawn_with(node("multi-node/node-a.toml")).await;
    let b = TestApp::spawn_with(node("multi-node/node-b.toml")).await;
    a.create_user("lee", PASSWORD, &["moderator"]);

    // The example's public_url is https, so the session cookie is Secure and a
    // cookie store would not send it over http: carry it by hand.
    let client = a.anonymous_client();
    let login = client
        .post(b.url("/api/v1/session"))
        .json(&json!({ "username": "lee", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "login on node b");
    let session = cookie(login.headers(), "gongkai_session").expect("session cookie");
    let session = session.split(';').next().unwrap_or_default().to_owned();
    let body: Value = login.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap_or_default().to_owned();

    let me_on_a = client
        .get(a.url("/api/v1/me"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        me_on_a.status(),
        200,
        "node a does not know node b's session"
    );

    let logout_on_a = client
        .delete(a.url("/api/v1/session"))
        .header("Cookie", &session)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert!(logout_on_a.status().is_success(), "logout on node a");
    let me_on_b = client
        .get(b.url("/api/v1/me"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        me_on_b.status(),
        401,
        "a session ended on node a lives on on node b"
    );
    drop((a, b));
    drop(database);
}

// ---------------------------------------------------------------- helpers

/// A file under `infra/` in the source tree.
fn infra_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../infra")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Asserts `status` and the `{"error":{"code","message"}}` shape (and `code`
/// when given); returns the body.
async fn expect_error(response: reqwest::Response, status: u16, code: Option<&str>) -> Value {
    let actual = response.status();
    let url = response.url().clone();
    let content_type = header(response.headers(), "content-type");
    let text = response.text().await.unwrap_or_default();
    assert_eq!(actual, status, "{url}: body {text}");
    assert!(
        content_type.starts_with("application/json"),
        "{url}: error content-type {content_type:?}, body {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{url}: error body is not JSON ({e}): {text}"));
    assert_error_shape(&body);
    if let Some(code) = code {
        assert_eq!(body["error"]["code"], code, "{url}: {body}");
    }
    body
}

fn assert_error_shape(body: &Value) {
    let code = body["error"]["code"].as_str().unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && !message.is_empty(),
        "not an {{\"error\":{{\"code\",\"message\"}}}} body: {body}"
    );
}

/// The first 429 of a series of failed logins.
struct Limited {
    /// 1-based number of the attempt answered with 429.
    attempts: usize,
    /// Time from the first attempt to the 429.
    elapsed: Duration,
    response: reqwest::Response,
}

impl Limited {
    /// Checks the 429 came when a limit of `per_minute` (a burst of that size,
    /// then one more every 60/`per_minute` s) says it should, however slow the
    /// attempts were.
    fn assert_limit(&self, per_minute: u32) {
        let refill = Duration::from_secs(60) / per_minute;
        let refilled = (self.elapsed.as_secs_f64() / refill.as_secs_f64()).floor() as usize;
        let burst = per_minute as usize;
        assert!(
            self.attempts > burst && self.attempts <= burst + 1 + refilled,
            "limit {per_minute}/min: first 429 at attempt {} after {:?}",
            self.attempts,
            self.elapsed
        );
    }
}

/// Tries wrong passwords until a 429 arrives; attempt `i` uses the username
/// and optional `X-Forwarded-For` that `attempt(i)` returns.
async fn attempts_until_429(
    app: &TestApp,
    max: usize,
    attempt: impl Fn(usize) -> (String, Option<String>),
) -> Option<Limited> {
    let client = app.anonymous_client();
    let started = std::time::Instant::now();
    for i in 0..max {
        let (username, forwarded_for) = attempt(i);
        let mut request = client
            .post(app.url("/api/v1/session"))
            .json(&json!({ "username": username, "password": "wrong password" }));
        if let Some(address) = forwarded_for {
            request = request.header("X-Forwarded-For", address);
        }
        let response = request.send().await.unwrap();
        match response.status() {
            StatusCode::TOO_MANY_REQUESTS => {
                return Some(Limited {
                    attempts: i + 1,
                    elapsed: started.elapsed(),
                    response,
                });
            }
            StatusCode::UNAUTHORIZED => {}
            other => panic!("attempt {i}: unexpected status {other}"),
        }
    }
    None
}

/// Checks a 429 (Retry-After in seconds, JSON error); returns Retry-After.
async fn check_too_many_requests(response: reqwest::Response) -> u64 {
    let retry_after = header(response.headers(), "retry-after");
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not delta-seconds: {retry_after:?}"));
    assert!(seconds >= 1, "Retry-After: {seconds}");
    expect_error(response, 429, None).await;
    seconds
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The full `Set-Cookie` header that sets `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// Sorted role names of a `{"roles": [...]}` user object.
fn roles(user: &Value) -> Vec<String> {
    let mut roles: Vec<String> = user["roles"]
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    roles
}

/// Names in a token listing: a bare array or `{"tokens": [...]}`.
fn token_names(listing: &Value) -> Vec<String> {
    let items = listing
        .as_array()
        .or_else(|| listing["tokens"].as_array())
        .unwrap_or_else(|| panic!("token listing is not a list: {listing}"));
    items
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

/// An id as it appears in a URL, whether JSON gave a number or a string.
fn id_string(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("token id {other} is neither a string nor a number"),
    }
}

/// `/assets/...` paths referenced by `src="..."` or `href="..."` in `html`.
fn asset_paths(html: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (start, _) in html.match_indices(attribute) {
            let rest = &html[start + attribute.len()..];
            if let Some(end) = rest.find('"') {
                let value = &rest[..end];
                if value.starts_with("/assets/") {
                    paths.push(value.to_owned());
                }
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
}
