//! Staff log in through the login page in a real browser.

use std::time::Duration;

use anyhow::{Context, ensure};
use fantoccini::{Client, Locator};

use crate::draw_pages::wait_visible;
use crate::event_browser::wait_text;
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

/// An administrator does the staff-account work in the browser: create a moderator,
/// give them a second role, reset their password; the moderator then logs in with it,
/// is not let into the accounts page, and replaces the password with their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_manages_staff_accounts_through_the_page() {
    let app = TestApp::spawn().await;
    app.create_user("ivan", PASSWORD, &["admin"]);
    let login_url = app.url("/login?lang=en");

    Browser::run(
        "an_administrator_manages_staff_accounts",
        |browser| async move {
            browser.goto(&login_url).await?;
            submit_login(&browser, "ivan", PASSWORD).await?;
            wait_for_path(&browser, "/staff").await?;
            browser
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css("a#users-link"))
                .await
                .context("no link to the accounts page on an admin's /staff")?
                .click()
                .await?;
            wait_for_path(&browser, "/staff/users").await?;

            fill(&browser, "#new-username", "lin").await?;
            fill(&browser, "#new-password", "lin's first password").await?;
            click(&browser, "#user-form input[value=moderator]").await?;
            click(&browser, "#user-form button[type=submit]").await?;
            wait_text(&browser, "#users-status", "Account created: lin").await?;
            ensure!(
                roles_checked(&browser, "lin").await? == ["moderator"],
                "lin's roles after creation"
            );

            // The same name again: the server's refusal is shown, nothing changes.
            fill(&browser, "#new-username", "lin").await?;
            fill(&browser, "#new-password", "another password").await?;
            click(&browser, "#user-form button[type=submit]").await?;
            wait_text(&browser, "#users-error", "").await?;

            let row = r#"tr[data-username="lin"]"#;
            click(
                &browser,
                &format!("{row} form.user-roles input[value=broadcaster]"),
            )
            .await?;
            click(&browser, &format!("{row} form.user-roles button")).await?;
            wait_text(&browser, "#users-status", "Roles saved: lin").await?;
            fill(
                &browser,
                &format!("{row} input[name=password]"),
                "lin's new password",
            )
            .await?;
            click(&browser, &format!("{row} form.user-password button")).await?;
            wait_text(&browser, "#users-status", "Password reset: lin").await?;
            browser.refresh().await?;
            ensure!(
                roles_checked(&browser, "lin").await? == ["broadcaster", "moderator"],
                "lin's roles after saving, as the server has them"
            );

            browser.delete_all_cookies().await?;
            browser.goto(&login_url).await?;
            submit_login(&browser, "lin", "lin's new password").await?;
            wait_for_path(&browser, "/staff").await?;
            ensure!(
                browser.find(Locator::Css("a#users-link")).await.is_err(),
                "a moderator is offered the accounts page"
            );
            browser
                .goto(&login_url.replace("/login", "/staff/users"))
                .await?;
            wait_text(&browser, "h1", "Forbidden").await?;
            ensure!(
                browser.find(Locator::Css("#user-list")).await.is_err(),
                "a moderator sees the accounts list"
            );

            // Lin replaces the password the administrator set: a wrong current password
            // is refused on the page; the right one ends the session, and only the new
            // one logs in.
            browser.goto(&login_url.replace("/login", "/staff")).await?;
            fill(&browser, "#my-current-password", "not lin's password").await?;
            fill(&browser, "#my-new-password", "lin's own password").await?;
            click(&browser, "#password-form button[type=submit]").await?;
            wait_text(&browser, "#password-error", "current password").await?;
            fill(&browser, "#my-current-password", "lin's new password").await?;
            click(&browser, "#password-form button[type=submit]").await?;
            wait_visible(&browser, "#password-done").await?;
            click(&browser, "#password-done a").await?;
            wait_for_path(&browser, "/login").await?;
            submit_login(&browser, "lin", "lin's own password").await?;
            wait_for_path(&browser, "/staff").await?;
            Ok(())
        },
    )
    .await;
}

async fn fill(browser: &Client, css: &str, text: &str) -> anyhow::Result<()> {
    let field = browser
        .find(Locator::Css(css))
        .await
        .with_context(|| css.to_owned())?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

async fn click(browser: &Client, css: &str) -> anyhow::Result<()> {
    browser
        .find(Locator::Css(css))
        .await
        .with_context(|| css.to_owned())?
        .click()
        .await?;
    Ok(())
}

/// The role boxes ticked in `username`'s row, sorted.
async fn roles_checked(browser: &Client, username: &str) -> anyhow::Result<Vec<String>> {
    let css = format!(r#"tr[data-username="{username}"] form.user-roles input:checked"#);
    let mut roles = Vec::new();
    for input in browser.find_all(Locator::Css(&css)).await? {
        roles.extend(input.attr("value").await?);
    }
    roles.sort();
    Ok(roles)
}
