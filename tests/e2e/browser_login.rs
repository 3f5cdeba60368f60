//! Staff log in through the login page in a real browser.

use std::time::Duration;

use anyhow::{Context, ensure};
use fantoccini::{Client, Locator};

use crate::support::{Browser, PASSWORD, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_log_in_through_the_page_and_see_their_roles() {
    let app = TestApp::spawn().await;
    app.create_user("ivan", PASSWORD, &["admin", "organiser"]);
    let login_url = app.url("/login");

    Browser::run("staff_log_in_through_the_page", |browser| async move {
        browser.goto(&login_url).await?;
        submit_login(&browser, "ivan", PASSWORD).await?;

        wait_for_path(&browser, "/staff").await?;
        let roles = browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("ul#roles"))
            .await
            .context("no <ul id=\"roles\"> on /staff")?;
        let mut shown = Vec::new();
        for item in roles.find_all(Locator::Css("li[data-role]")).await? {
            if let Some(role) = item.attr("data-role").await? {
                shown.push(role);
            }
        }
        shown.sort();
        ensure!(shown == ["admin", "organiser"], "roles shown: {shown:?}");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_shows_an_error_on_the_login_page() {
    let app = TestApp::spawn().await;
    app.create_user("judy", PASSWORD, &["moderator"]);
    let login_url = app.url("/login");

    Browser::run("wrong_password_shows_an_error", |browser| async move {
        browser.goto(&login_url).await?;
        submit_login(&browser, "judy", "definitely wrong").await?;

        let error = browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#login-error"))
            .await
            .context("no #login-error after a wrong password")?;
        // The element may exist hidden before submit; wait until it shows text.
        let mut text = String::new();
        for _ in 0..100 {
            if error.is_displayed().await? {
                text = error.text().await?;
                if !text.trim().is_empty() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(
            !text.trim().is_empty(),
            "#login-error never showed a message"
        );
        let path = browser.current_url().await?.path().to_owned();
        ensure!(path != "/staff", "a wrong password reached /staff");
        Ok(())
    })
    .await;
}

async fn submit_login(browser: &Client, username: &str, password: &str) -> anyhow::Result<()> {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("input#username"))
        .await
        .context("no input#username on /login")?
        .send_keys(username)
        .await?;
    browser
        .find(Locator::Css("input#password[type=password]"))
        .await
        .context("no input#password[type=password] on /login")?
        .send_keys(password)
        .await?;
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .context("no submit button on /login")?
        .click()
        .await?;
    Ok(())
}

async fn wait_for_path(browser: &Client, path: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let url = browser.current_url().await?;
        if url.path() == path {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "still on {url} instead of {path}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
