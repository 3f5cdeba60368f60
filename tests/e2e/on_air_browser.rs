//! Issue 14's pages in real browsers: a broadcaster rehearses from the broadcaster page on
//! a scheduled event while a public viewer sees only the start time and a countdown (no
//! WHEP offer at all) and the staff event page's preview decodes; going live starts the
//! viewer's video without a reload; End, confirmed in the staff page's dialog, shows the
//! end on the broadcaster's page (its camera and microphone stopped) and the viewer's;
//! an administrator reopens the event from the staff page.
//!
//! Three Chromium sessions with the fake camera (`BrowserOptions { media: true }`); the
//! pages run in Chinese (`?lang=zh-CN`, remembered in a cookie). Every wait polls a
//! condition up to a deadline; nothing sleeps as synchronisation.

use std::time::Duration;

use anyhow::{Context, ensure};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::event_browser::{fill, text_of, wait_text};
use crate::support::browser::BrowserOptions;
use crate::support::{AppOptions, Browser, PASSWORD, TestApp};

/// Loopback only: the machine's other interfaces must not carry test traffic.
const MEDIA_CONFIG: &str = "[media]\nbind_ip = \"127.0.0.1\"\n";
/// Bound on a page reaching a state (Chromium's ICE and DTLS on a busy 2-core machine).
const WAIT: Duration = Duration::from_secs(30);
const TITLE: &str = "区长在线访谈：试播与开播";

/// The public player's decoded frames, as player.js publishes them.
const PLAYER_FRAMES: &str = "Number(document.getElementById('player').dataset.framesDecoded || 0)";
/// The staff preview's decoded frames.
const PREVIEW_FRAMES: &str =
    "Number(document.getElementById('preview-player').dataset.framesDecoded || 0)";
/// Whether every track of the broadcaster page's camera/microphone stream is stopped.
const TRACKS_ENDED: &str = "(() => { const s = document.getElementById('preview').srcObject; \
     return !!s && s.getTracks().length > 0 && s.getTracks().every(t => t.readyState === 'ended'); })()";

/// Polls `script` (a JS expression) in `client` until `done(value)`, at most `timeout`.
async fn wait_js(
    client: &Client,
    script: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let value = client.execute(&format!("return {script};"), vec![]).await?;
        if done(&value) {
            return Ok(value);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {script}: last {value}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn js(client: &Client, script: &str) -> anyhow::Result<Value> {
    Ok(client.execute(&format!("return {script};"), vec![]).await?)
}

/// Logs `username` in through the login form (Chinese pages from then on).
async fn login(client: &Client, base: &str, username: &str) -> anyhow::Result<()> {
    client.goto(&format!("{base}/login?lang=zh-CN")).await?;
    fill(client, "#username", username).await?;
    fill(client, "#password", PASSWORD).await?;
    client
        .find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_js(client, "location.pathname", WAIT, |v| {
        v.as_str().is_some_and(|p| p.starts_with("/staff"))
    })
    .await
    .context("login did not reach the dashboard")?;
    Ok(())
}

/// `method path` with the API token; (status, JSON body or null).
async fn api(app: &TestApp, token: &str, method: &str, path: &str) -> (u16, Value) {
    let client = app.anonymous_client();
    let url = app.url(path);
    let request = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    let response = request
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A scheduled video event (no follow-publisher: publishing before the start is a
/// rehearsal) starting 2030-01-01 09:30 Beijing time, with `bo` as its broadcaster.
async fn scheduled_event(app: &TestApp, token: &str) -> String {
    let response = app
        .anonymous_client()
        .post(app.url("/api/v1/events"))
        .bearer_auth(token)
        .json(&json!({"kind": "interview", "title": TITLE,
                      "scheduled_start": "2030-01-01T09:30:00+08:00",
                      "scheduled_end": "2030-01-01T11:00:00+08:00",
                      "follow_publisher": false, "broadcasters": ["bo"]}))
        .send()
        .await
        .expect("create event");
    assert_eq!(response.status(), 201, "create event");
    let event: Value = response.json().await.expect("event JSON");
    event["id"].as_str().expect("event id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearsal_go_live_end_and_reopen_in_browsers() {
    let app = TestApp::spawn_with(AppOptions::default().config(MEDIA_CONFIG)).await;
    app.create_user("ada", PASSWORD, &["admin"]);
    app.create_user("bo", PASSWORD, &["broadcaster"]);
    let token = app.create_token("ada", "on-air-pages");
    let event = scheduled_event(&app, &token).await;

    let media = BrowserOptions { media: true };
    let viewer = Browser::start(media).await;
    let staff = Browser::start(media).await;
    let broadcaster = Browser::start(media).await;
    let outcome = flow(
        &app,
        &token,
        &event,
        &viewer.client,
        &staff.client,
        &broadcaster.client,
    )
    .await;
    if outcome.is_err() {
        for (name, b) in [
            ("on_air_viewer", &viewer),
            ("on_air_staff", &staff),
            ("on_air_broadcaster", &broadcaster),
        ] {
            b.save_failure_artifacts(name).await;
        }
        eprintln!("server log:\n{}", app.stderr());
    }
    viewer.close().await;
    staff.close().await;
    broadcaster.close().await;
    if let Err(e) = outcome {
        panic!("on-air flow failed: {e:#}");
    }
}

async fn flow(
    app: &TestApp,
    token: &str,
    event: &str,
    viewer: &Client,
    staff: &Client,
    broadcaster: &Client,
) -> anyhow::Result<()> {
    let base = app.url("");
    let base = base.trim_end_matches('/');

    // A public viewer waits on the scheduled event's page: the start in Beijing time
    // (whatever the browser's zone) and a countdown.
    viewer
        .goto(&format!("{base}/events/{event}?lang=zh-CN"))
        .await?;
    wait_text(viewer, "#player-start", "2030年1月1日 09:30").await?;
    wait_text(viewer, "#player-countdown", "距开始还有").await?;

    // The broadcaster rehearses from the broadcaster page.
    login(broadcaster, base, "ada").await?;
    broadcaster
        .goto(&format!("{base}/staff/events/{event}/broadcast"))
        .await?;
    wait_js(
        broadcaster,
        "!!document.getElementById('preview').srcObject",
        WAIT,
        |v| v == &Value::Bool(true),
    )
    .await
    .context("the broadcaster page never showed the camera")?;
    broadcaster
        .find(Locator::Css("#start"))
        .await?
        .click()
        .await?;
    wait_js(
        broadcaster,
        "document.getElementById('broadcast-state').dataset.state",
        WAIT,
        |v| v == "rehearsal",
    )
    .await
    .context("publishing on a scheduled event is not shown as a rehearsal")?;
    wait_text(broadcaster, "#broadcast-state", "试播中（观众看不到）").await?;

    // Staff watch the rehearsal on the staff event page's preview.
    login(staff, base, "ada").await?;
    staff.goto(&format!("{base}/staff/events/{event}")).await?;
    let previewed = wait_js(staff, PREVIEW_FRAMES, WAIT, |v| {
        v.as_f64().is_some_and(|n| n > 0.0)
    })
    .await
    .context("the staff preview decoded nothing during the rehearsal")?;
    eprintln!("staff preview framesDecoded during the rehearsal: {previewed}");

    // The public sees none of it: no WHEP offer, no frame, no public viewer session
    // (the staff preview is the only one the SFU may count).
    let (status, media) = api(app, token, "GET", &format!("/api/v1/events/{event}/media")).await;
    ensure!(status == 200, "media status: {status} {media}");
    ensure!(
        media["publishing"] == true,
        "the rehearsal is not publishing: {media}"
    );
    ensure!(media["on_air"] != true, "a rehearsal is on air: {media}");
    ensure!(
        media["viewers"].as_u64().is_some_and(|n| n <= 1),
        "public viewers during a rehearsal: {media}"
    );
    let player = js(
        viewer,
        "[document.getElementById('player').dataset.state, \
          document.getElementById('player').dataset.whep, \
          Number(document.getElementById('player').dataset.framesDecoded || 0)]",
    )
    .await?;
    ensure!(
        player == json!(["scheduled", "0", 0]),
        "the public player during the rehearsal (state, WHEP offers, frames): {player}"
    );
    wait_text(viewer, "#player-countdown", "距开始还有").await?;

    // Go live (the API, as another manager's device would): the waiting viewer's video
    // starts by itself, the broadcaster page says it is public.
    let went_live = Instant::now();
    let (status, body) = api(app, token, "POST", &format!("/api/v1/events/{event}/start")).await;
    ensure!(status == 200, "go live: {status} {body}");
    let frames = wait_js(viewer, PLAYER_FRAMES, WAIT, |v| {
        v.as_f64().is_some_and(|n| n > 0.0)
    })
    .await
    .context("the waiting viewer's video did not start after going live")?;
    eprintln!(
        "public viewer decoding {:?} after go-live (framesDecoded {frames})",
        went_live.elapsed()
    );
    wait_js(
        broadcaster,
        "document.getElementById('broadcast-state').dataset.state",
        WAIT,
        |v| v == "live",
    )
    .await?;
    wait_text(broadcaster, "#broadcast-state", "直播中").await?;

    // End from the staff page (reloaded by its socket on going live): a dialog naming the
    // event asks first; cancelling ends nothing.
    let end_button = staff
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#event-end"))
        .await
        .context("no End button on the live event's staff page")?;
    end_button.click().await?;
    wait_js(
        staff,
        "document.getElementById('end-dialog').open",
        WAIT,
        |v| v == &Value::Bool(true),
    )
    .await
    .context("End did not open its confirmation dialog")?;
    let question = text_of(staff, "#end-dialog-text").await?;
    ensure!(
        question.contains(&format!("确定结束“{TITLE}”吗")),
        "the dialog does not name the event: {question:?}"
    );
    staff
        .find(Locator::Css("#end-cancel"))
        .await?
        .click()
        .await?;
    wait_js(
        staff,
        "document.getElementById('end-dialog').open",
        WAIT,
        |v| v == &Value::Bool(false),
    )
    .await
    .context("cancel did not close the dialog")?;
    let (_, after_cancel) = api(app, token, "GET", &format!("/api/v1/events/{event}")).await;
    ensure!(
        after_cancel["status"] == "live",
        "cancel ended the event: {after_cancel}"
    );
    staff
        .find(Locator::Css("#event-end"))
        .await?
        .click()
        .await?;
    wait_js(
        staff,
        "document.getElementById('end-dialog').open",
        WAIT,
        |v| v == &Value::Bool(true),
    )
    .await?;
    let ended_at = Instant::now();
    staff
        .find(Locator::Css("#end-confirm"))
        .await?
        .click()
        .await?;

    // The broadcaster's page shows the end and has released the camera and microphone.
    wait_js(
        broadcaster,
        "document.getElementById('broadcast-state').dataset.state",
        WAIT,
        |v| v == "ended",
    )
    .await
    .context("the broadcaster page did not notice the end")?;
    eprintln!(
        "broadcaster page ended {:?} after the confirm",
        ended_at.elapsed()
    );
    wait_text(broadcaster, "#broadcast-state", "直播已结束").await?;
    wait_js(broadcaster, TRACKS_ENDED, WAIT, |v| v == &Value::Bool(true))
        .await
        .context("the broadcaster page's camera/microphone tracks are not stopped")?;
    let start_disabled = js(broadcaster, "document.getElementById('start').disabled").await?;
    ensure!(
        start_disabled == true,
        "start is still enabled after the end"
    );

    // The viewer's page shows the end with the way to the replay.
    wait_js(
        viewer,
        "document.getElementById('player').dataset.state",
        WAIT,
        |v| v == "ended",
    )
    .await
    .context("the public player did not show the end")?;
    eprintln!(
        "public player ended {:?} after the confirm",
        ended_at.elapsed()
    );
    wait_text(viewer, "#player-state", "直播已结束").await?;
    let replay = js(
        viewer,
        "(() => { const a = document.getElementById('player-replay'); \
          return a && !a.hidden ? a.getAttribute('href') : null; })()",
    )
    .await?;
    ensure!(
        replay == json!(format!("/events/{event}")),
        "no replay link after the end: {replay}"
    );
    let (_, media) = api(app, token, "GET", &format!("/api/v1/events/{event}/media")).await;
    ensure!(
        media["publishing"] == false,
        "still publishing after the end: {media}"
    );

    // Only managers are offered Reopen: the event's broadcaster is not.
    app.login_ok("bo", PASSWORD).await;
    let page = app
        .client
        .get(app.url(&format!("/staff/events/{event}")))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        page.contains(TITLE) && !page.contains("id=\"event-reopen\""),
        "the broadcaster's staff page offers Reopen (or is not the event's page)"
    );

    // The administrator reopens within the window: the staff page shows it live again,
    // and so does the viewer's page.
    let reopen = staff
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#event-reopen"))
        .await
        .context("no Reopen button after the end")?;
    wait_text(staff, "#reopen-until", "北京时间").await?;
    reopen.click().await?;
    wait_text(staff, "#staff-event-status", "直播中")
        .await
        .context("the staff page does not show the reopened event live")?;
    let (_, reopened) = api(app, token, "GET", &format!("/api/v1/events/{event}")).await;
    ensure!(
        reopened["status"] == "live",
        "not live after reopening: {reopened}"
    );
    wait_js(
        viewer,
        "document.getElementById('event').dataset.status",
        WAIT,
        |v| v == "live",
    )
    .await
    .context("the viewer's page did not follow the reopen")?;
    Ok(())
}

/// A draw event's page carries the draw: the play-out panel with a prominent link to the
/// draw's page while it is on, and after the end the record links to the draw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draw_events_page_shows_the_draw_and_its_record_links_to_it() {
    let app = TestApp::spawn().await;
    app.create_user("ada", PASSWORD, &["admin", "organiser"]);
    let token = app.create_token("ada", "draw-event");
    let http = app.anonymous_client();
    let event: Value = http
        .post(app.url("/api/v1/events"))
        .bearer_auth(&token)
        .json(&json!({"kind": "draw", "title": "2030年公办幼儿园电脑派位",
                      "scheduled_start": "2030-06-18T09:30:00+08:00",
                      "scheduled_end": "2030-06-18T11:00:00+08:00"}))
        .send()
        .await
        .expect("create event")
        .json()
        .await
        .expect("event JSON");
    let event = event["id"].as_str().expect("event id").to_owned();
    let draw = json!({
        "draw_id": "2030-autumn", "title": "2030年秋季公办幼儿园派位", "event_id": event,
        "kindergartens": [{"code": "KG-A", "name": "第一幼儿园", "seats": 3}],
        "mechanism": "deferred-acceptance", "multiples": "whole-or-skip",
        "witnesses": [{"name": "张公证员", "role": "notary"}],
    });
    let created = http
        .post(app.url("/api/v1/draws"))
        .bearer_auth(&token)
        .json(&draw)
        .send()
        .await
        .expect("create draw");
    assert_eq!(
        created.status(),
        201,
        "{}",
        created.text().await.unwrap_or_default()
    );
    let page = |lang: &str| {
        let url = app.url(&format!("/events/{event}?lang={lang}"));
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .expect("event page")
                .text()
                .await
                .expect("HTML")
        }
    };
    // A draft is nobody's business yet.
    assert!(!page("zh-CN").await.contains("/draws/2030-autumn"));

    let opened = http
        .post(app.url("/api/v1/draws/2030-autumn/open"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("open draw");
    assert_eq!(opened.status(), 200);
    let live = page("zh-CN").await;
    assert!(
        live.contains("id=\"draw-live\"")
            && live.contains("id=\"draw-link\" href=\"/draws/2030-autumn\"")
            && live.contains("打开抽签页面"),
        "the draw event's page lacks the play-out and the link to the draw"
    );
    assert!(live.contains("/assets/draw-live.js"));

    for step in ["start", "end"] {
        let response = http
            .post(app.url(&format!("/api/v1/events/{event}/{step}")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("event step");
        assert_eq!(response.status(), 200, "{step}");
    }
    let record = page("zh-CN").await;
    assert!(
        record.contains("id=\"draw-record-link\"")
            && record.contains("href=\"/draws/2030-autumn\""),
        "the record of the ended draw event does not link to the draw"
    );
    assert!(
        !record.contains("id=\"draw-live\""),
        "the play-out stays after the end"
    );
    // Not published yet: the record says where results and verification will be.
    assert!(
        record.contains("抽签结果公布后"),
        "no note about the results to come"
    );
}
