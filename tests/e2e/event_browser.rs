//! Issue 4's acceptance flow in real browsers: an admin schedules an interview on the
//! staff pages, it shows on the home page, two viewers chat and like, the admin (who
//! moderates) deletes a message and bans a viewer, a question is asked, upvoted and
//! answered, the event ends and its page shows the text record and the viewer chart.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use fantoccini::{Client, Locator};
use serde_json::json;

use crate::support::browser::BrowserOptions;
use crate::support::{Browser, PASSWORD, TestApp};

const WAIT: Duration = Duration::from_secs(20);

/// A viewer's socket that goes silent (here: the server frozen with SIGSTOP, as a
/// network that drops a connection without a word) is noticed by the page's pings and
/// reopened; the page is live again once the server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_page_notices_a_silent_socket_and_reconnects() {
    let app = TestApp::spawn_with(
        crate::support::AppOptions::default().env("GONGKAI_HUB_CLIENT_PING_SECS", "1"),
    )
    .await;
    app.create_user("ada", PASSWORD, &["admin"]);
    let admin = crate::hub::staff_session(&app, "ada").await;
    let event = crate::hub::live_event(&app, &admin).await;
    let page = app.url(&format!("/events/{event}?lang=en"));
    let app = &app;

    Browser::run(
        "the_event_page_notices_a_silent_socket",
        |browser| async move {
            browser.goto(&page).await?;
            wait_text(&browser, "#connection", "Connected").await?;
            // Pings are answered: still connected after several ping intervals.
            tokio::time::sleep(Duration::from_secs(4)).await;
            ensure!(
                text_of(&browser, "#connection").await? == "Connected",
                "a live socket was given up"
            );
            app.pause();
            let noticed = wait_text(&browser, "#connection", "Connecting").await;
            app.resume();
            noticed.context("the page never noticed its socket had gone silent")?;
            wait_text(&browser, "#connection", "Connected").await?;
            Ok(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interview_from_schedule_to_text_record_in_browsers() {
    let app = TestApp::spawn().await;
    app.create_user("ada", PASSWORD, &["admin"]);
    let base = app.url("");

    // Three independent browsers: the admin and two viewers with their own cookies.
    let admin = Browser::start(BrowserOptions::default()).await;
    let viewer_b = Browser::start(BrowserOptions::default()).await;
    let viewer_c = Browser::start(BrowserOptions::default()).await;
    let clients = [
        admin.client.clone(),
        viewer_b.client.clone(),
        viewer_c.client.clone(),
    ];
    let outcome = flow(&base, &clients[0], &clients[1], &clients[2]).await;
    if outcome.is_err() {
        for (name, b) in [
            ("event_flow_admin", &admin),
            ("event_flow_viewer_b", &viewer_b),
            ("event_flow_viewer_c", &viewer_c),
        ] {
            b.save_failure_artifacts(name).await;
        }
        eprintln!("server log:\n{}", app.stderr());
    }
    admin.close().await;
    viewer_b.close().await;
    viewer_c.close().await;
    if let Err(e) = outcome {
        panic!("event flow failed: {e:#}");
    }
}

async fn flow(base: &str, admin: &Client, b: &Client, c: &Client) -> anyhow::Result<()> {
    // The admin schedules an interview through the staff page.
    admin.goto(&format!("{base}/login")).await?;
    fill(admin, "#username", "ada").await?;
    fill(admin, "#password", PASSWORD).await?;
    admin
        .find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_path(admin, "/staff").await?;
    admin.goto(&format!("{base}/staff/events")).await?;
    admin
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#event-form"))
        .await?;
    fill(admin, "#ev-title", "区长在线访谈：老旧小区改造").await?;
    fill(admin, "#ev-topic", "加装电梯").await?;
    fill(admin, "#ev-guests", "王某 | 区长 | 区人民政府").await?;
    // datetime-local inputs are set through script: typing into them is locale-dependent.
    admin
        .execute(
            "document.getElementById('ev-start').value = '2030-06-18T09:30'; document.getElementById('ev-end').value = '2030-06-18T11:00';",
            vec![],
        )
        .await?;
    admin
        .find(Locator::Css("#event-save"))
        .await?
        .click()
        .await?;
    let event_id = wait_for(WAIT, || async {
        let path = admin.current_url().await?.path().to_owned();
        Ok(path
            .strip_prefix("/staff/events/")
            .filter(|id| !id.is_empty())
            .map(str::to_owned))
    })
    .await
    .context("creating the event did not lead to its staff page")?;

    // It is announced on the home page, then goes live.
    b.goto(&format!("{base}/")).await?;
    wait_text(b, "#upcoming", "区长在线访谈")
        .await
        .context("the interview is not in the upcoming list")?;
    admin
        .find(Locator::Css("#event-start"))
        .await?
        .click()
        .await?;
    wait_text(admin, "#staff-event-status", "").await?;
    wait_for(WAIT, || async {
        Ok(admin
            .find(Locator::Css("#event-end"))
            .await
            .ok()
            .map(|_| ()))
    })
    .await
    .context("no end button after going live")?;
    b.goto(&format!("{base}/")).await?;
    wait_text(b, "#live-now", "区长在线访谈")
        .await
        .context("the interview is not live on the home page")?;

    // Two viewers join with nicknames; the admin watches the same page as moderator.
    let page = format!("{base}/events/{event_id}");
    for (client, nick) in [(b, "网友甲"), (c, "网友乙")] {
        client.goto(&page).await?;
        choose_nickname(client, nick).await?;
    }
    admin.goto(&page).await?;
    admin
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#moderation:not([hidden])"))
        .await
        .context("the admin sees no moderation panel")?;

    send_chat(b, "大家好，我是甲").await?;
    wait_text(c, "#chat-messages", "大家好，我是甲")
        .await
        .context("viewer C did not get B's message")?;
    send_chat(c, "广告广告加微信").await?;
    wait_text(b, "#chat-messages", "广告广告加微信").await?;
    wait_text(admin, "#chat-messages", "广告广告加微信").await?;

    // Likes add up for everyone.
    for _ in 0..3 {
        b.find(Locator::Css("#like-button")).await?.click().await?;
    }
    wait_for(WAIT, || async {
        let n: i64 = text_of(c, "#likes-total")
            .await?
            .trim()
            .parse()
            .unwrap_or(0);
        Ok((n >= 3).then_some(()))
    })
    .await
    .context("viewer C never saw B's likes")?;

    // A question, upvoted by the other viewer.
    fill(c, "#question-input", "加装电梯的补贴什么时候发放？").await?;
    c.find(Locator::Css("#question-form button"))
        .await?
        .click()
        .await?;
    wait_text(b, "#questions", "加装电梯的补贴").await?;
    b.find(Locator::Css("#questions li button.mini"))
        .await?
        .click()
        .await?;
    wait_for(WAIT, || async {
        Ok(text_of(admin, "#questions .votes")
            .await?
            .trim()
            .eq("1")
            .then_some(()))
    })
    .await
    .context("the upvote did not reach the moderator")?;

    // Moderation: delete the advert, then ban its author.
    let advert = find_message(admin, "广告广告加微信").await?;
    advert
        .find(Locator::Css("button.danger"))
        .await?
        .click()
        .await?;
    wait_gone(b, "#chat-messages", "广告广告加微信")
        .await
        .context("the deleted message stayed on B's page")?;
    let greeting = find_message(admin, "大家好，我是甲").await?;
    ensure!(
        greeting.text().await?.contains("大家好"),
        "B's message must survive"
    );
    send_chat(c, "再发一条").await?;
    wait_text(b, "#chat-messages", "再发一条").await?;
    let second = find_message(admin, "再发一条").await?;
    second
        .find_all(Locator::Css("button.danger"))
        .await?
        .get(1)
        .context("no ban button")?
        .click()
        .await?;
    admin.accept_alert().await.context("no ban confirmation")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_chat(c, "被禁言后还能说话吗").await?;
    let error = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#chat-error:not([hidden])"))
        .await
        .context("the banned viewer saw no error")?;
    ensure!(!error.text().await?.trim().is_empty(), "empty ban error");
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        !text_of(b, "#chat-messages").await?.contains("被禁言后"),
        "a banned viewer's message was delivered"
    );

    // The question is answered in writing.
    admin
        .find(Locator::Css("#questions li"))
        .await?
        .find_all(Locator::Css("button.mini"))
        .await?
        .get(1)
        .context("no answer button")?
        .click()
        .await?;
    admin.send_alert_text("年底前发放到位。").await?;
    admin.accept_alert().await?;
    wait_text(b, "#answered", "年底前发放到位")
        .await
        .context("the answer did not reach viewer B")?;

    // End the event; the page keeps the text record and the viewer chart.
    admin
        .goto(&format!("{base}/staff/events/{event_id}"))
        .await?;
    admin
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#event-end"))
        .await?
        .click()
        .await?;
    // End asks first, in a dialog naming the event.
    admin
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#end-dialog[open] #end-confirm"))
        .await?
        .click()
        .await?;
    wait_for(WAIT, || async {
        Ok(admin
            .find(Locator::Css("#event-end"))
            .await
            .err()
            .map(|_| ()))
    })
    .await?;
    b.goto(&page).await?;
    wait_text(b, "#record-answered", "年底前发放到位")
        .await
        .context("the record lacks the answer")?;
    wait_text(b, "#record-answered", "加装电梯的补贴").await?;
    wait_text(b, "#record-chat", "大家好，我是甲")
        .await
        .context("the record lacks the chat")?;
    ensure!(
        !text_of(b, "#record-chat").await?.contains("广告广告加微信"),
        "a deleted message is in the record"
    );
    b.find(Locator::Css("#viewer-chart svg polyline"))
        .await
        .context("no viewer chart")?;
    let peak: i64 = text_of(b, "#chart-peak").await?.trim().parse().unwrap_or(0);
    ensure!(
        peak >= 2,
        "peak viewers {peak}, expected at least the two viewers"
    );
    Ok(())
}

/// Chooses a nickname on an event page and waits until the chat form is offered.
pub(crate) async fn choose_nickname(client: &Client, nick: &str) -> anyhow::Result<()> {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#nickname-form:not([hidden])"))
        .await?;
    fill(client, "#nickname", nick).await?;
    client
        .find(Locator::Css("#nickname-form button"))
        .await?
        .click()
        .await?;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#chat-form:not([hidden])"))
        .await?;
    Ok(())
}

pub(crate) async fn fill(client: &Client, css: &str, text: &str) -> anyhow::Result<()> {
    let el = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .with_context(|| format!("no {css}"))?;
    el.clear().await.ok();
    el.send_keys(text).await?;
    Ok(())
}

pub(crate) async fn send_chat(client: &Client, text: &str) -> anyhow::Result<()> {
    fill(client, "#chat-input", text).await?;
    client
        .find(Locator::Css("#chat-form button[type=submit]"))
        .await?
        .click()
        .await?;
    Ok(())
}

pub(crate) async fn text_of(client: &Client, css: &str) -> anyhow::Result<String> {
    let v = client
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            vec![json!(css)],
        )
        .await?;
    Ok(v.as_str().unwrap_or_default().to_owned())
}

pub(crate) async fn wait_text(client: &Client, css: &str, needle: &str) -> anyhow::Result<()> {
    wait_for(WAIT, || async {
        let t = text_of(client, css).await?;
        Ok((t.contains(needle) && (!needle.is_empty() || !t.trim().is_empty())).then_some(()))
    })
    .await
    .with_context(|| format!("{css} never contained {needle:?}"))
}

async fn wait_gone(client: &Client, css: &str, needle: &str) -> anyhow::Result<()> {
    wait_for(WAIT, || async {
        Ok((!text_of(client, css).await?.contains(needle)).then_some(()))
    })
    .await
}

async fn find_message(
    client: &Client,
    text: &str,
) -> anyhow::Result<fantoccini::elements::Element> {
    for li in client.find_all(Locator::Css("#chat-messages li")).await? {
        if li.text().await?.contains(text) {
            return Ok(li);
        }
    }
    bail!("no chat message containing {text:?}")
}

async fn wait_path(client: &Client, path: &str) -> anyhow::Result<()> {
    wait_for(WAIT, || async {
        Ok((client.current_url().await?.path() == path).then_some(()))
    })
    .await
}

async fn wait_for<T, F, Fut>(limit: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}
