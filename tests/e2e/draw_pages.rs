//! The draw ceremony's pages in Chromium: an organiser sets a draw up on the staff pages
//! and opens it; a parent applies and gets a receipt with a QR code; a witness makes a
//! secret and commitment in the browser (checked against `lottery`'s own computation);
//! after the announcement the parent's inclusion proof checks in the browser; a viewer on
//! the public draw page watches the live play-out to publication; the parent looks the
//! result up; the results page shows the table and chart.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::support::browser::BrowserOptions;
use crate::support::{AppOptions, Browser, PASSWORD, TestApp, gongkai_command, run_with_timeout};

const WAIT: Duration = Duration::from_secs(30);
const DRAW: &str = "e2e-pages-2030";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draw_ceremony_through_its_pages() {
    // Four lookups of one child a minute: the review status, the proof, the lookup and a
    // wrong name; the fifth is refused with Retry-After.
    let app = TestApp::spawn_with(
        AppOptions::default()
            .env("GONGKAI_DRAW_PACE_MS", "20")
            .env("GONGKAI_LOOKUP_PER_CHILD_PER_MINUTE", "4"),
    )
    .await;
    app.create_user("orga", PASSWORD, &["organiser"]);

    let organiser = Browser::start(BrowserOptions::default()).await;
    let parent = Browser::start(BrowserOptions::default()).await;
    let witness = Browser::start(BrowserOptions::default()).await;
    let viewer = Browser::start(BrowserOptions::default()).await;
    let outcome = flow(
        &app,
        &organiser.client,
        &parent.client,
        &witness.client,
        &viewer.client,
    )
    .await;
    if outcome.is_err() {
        for (name, b) in [
            ("draw_pages_organiser", &organiser),
            ("draw_pages_parent", &parent),
            ("draw_pages_witness", &witness),
            ("draw_pages_viewer", &viewer),
        ] {
            b.save_failure_artifacts(name).await;
        }
        eprintln!("server log:\n{}", app.stderr());
    }
    for b in [organiser, parent, witness, viewer] {
        b.close().await;
    }
    if let Err(e) = outcome {
        panic!("draw pages flow failed: {e:#}");
    }
}

async fn flow(
    app: &TestApp,
    org: &Client,
    parent: &Client,
    witness: &Client,
    viewer: &Client,
) -> anyhow::Result<()> {
    let base = app.url("");
    // The organiser's API session (for steps a page test already covers).
    let csrf = app.login_ok("orga", PASSWORD).await;
    let event: Value = api(
        app,
        &csrf,
        "POST",
        "/api/v1/events",
        Some(json!({
            "kind": "draw", "title": "幼儿园学位抽签直播", "topic": "", "summary": "",
            "scheduled_start": "2030-06-18T09:30:00Z", "scheduled_end": "2030-06-18T11:00:00Z",
            "form": "text", "visibility": "public", "guests": [], "broadcasters": [], "moderators": [],
        })),
        201,
    )
    .await?;
    let event_id = event["id"].as_str().context("event id")?.to_owned();

    // The organiser creates the draw on the staff pages.
    org.goto(&format!("{base}/login")).await?;
    fill(org, "#username", "orga").await?;
    fill(org, "#password", PASSWORD).await?;
    org.find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_path(org, "/staff").await?;
    org.find(Locator::Css("#draws-link")).await?.click().await?;
    wait_path(org, "/staff/draws").await?;
    fill(org, "#dr-title", "2030 年阳光街道幼儿园学位抽签").await?;
    fill(org, "#dr-id", DRAW).await?;
    js(
        org,
        "document.getElementById('dr-event').value = arguments[0];",
        vec![json!(event_id)],
    )
    .await?;
    org.find(Locator::Css("#dr-kg-add")).await?.click().await?;
    org.find(Locator::Css("#dr-witness-add"))
        .await?
        .click()
        .await?;
    js(
        org,
        r#"const kgs = document.querySelectorAll('#dr-kgs li');
           const set = (row, cls, v) => { row.querySelector(cls).value = v; };
           set(kgs[0], '.kg-code', 'SUN'); set(kgs[0], '.kg-name', '阳光幼儿园'); set(kgs[0], '.kg-seats', '1');
           set(kgs[1], '.kg-code', 'MOON'); set(kgs[1], '.kg-name', '月亮幼儿园'); set(kgs[1], '.kg-seats', '2');
           const ws = document.querySelectorAll('#dr-witnesses li');
           set(ws[0], '.w-name', '王公证'); set(ws[0], '.w-role', '公证员');
           set(ws[1], '.w-name', '李家长'); set(ws[1], '.w-role', '家长代表');
           document.getElementById('dr-time').value = '2030-06-18T10:00';"#,
        vec![],
    )
    .await?;
    org.find(Locator::Css("#draw-save")).await?.click().await?;
    wait_path(org, &format!("/staff/draws/{DRAW}"))
        .await
        .context("creating the draw did not lead to its staff page")?;
    wait_text(org, "#staff-draw-state", "").await?;

    // Opening is irreversible: the page asks first.
    org.find(Locator::Css("#step-open")).await?.click().await?;
    org.accept_alert()
        .await
        .context("no confirmation before opening")?;
    wait_attr(org, "#staff-draw-state", "data-state", "open").await?;

    // A parent applies on the apply page and gets the receipt with a QR code.
    let child_id = resident_id("11010120260101001");
    let child_name = "张小明";
    parent.goto(&format!("{base}/draws/{DRAW}/apply")).await?;
    // A mistyped ID number is caught on the page, in the page's language.
    fill(parent, "#children .child-id", "11010120260101009").await?;
    fill(parent, "#children .child-name", child_name).await?;
    parent
        .find(Locator::Css("#apply-submit"))
        .await?
        .click()
        .await?;
    wait_visible(parent, "#apply-error").await?;
    fill(parent, "#children .child-id", &child_id).await?;
    fill(parent, "#children .child-name", child_name).await?;
    parent
        .find(Locator::Css("#choice-add"))
        .await?
        .click()
        .await?;
    js(
        parent,
        r#"const rows = document.querySelectorAll('#choices li');
           rows[0].querySelector('.choice-kg').value = 'SUN';
           rows[1].querySelector('.choice-kg').value = 'MOON';
           rows[1].querySelector('.choice-class').value = '2';"#,
        vec![],
    )
    .await?;
    parent
        .find(Locator::Css("#apply-submit"))
        .await?
        .click()
        .await?;
    wait_visible(parent, "#receipts").await?;
    let app_code = text_of(parent, ".receipt .receipt-app").await?;
    let salt = text_of(parent, ".receipt .receipt-salt").await?;
    ensure!(app_code.len() == 10, "application code {app_code:?}");
    ensure!(salt.len() == 32, "salt {salt:?}");
    let qr_modules = js(
        parent,
        "const s = document.querySelector('.receipt svg.receipt-qr'); const p = s && s.querySelector('path'); return p && p.getAttribute('d').length > 100 ? Number(s.dataset.modules) : 0;",
        vec![],
    )
    .await?;
    ensure!(
        qr_modules.as_u64().unwrap_or(0) >= 21,
        "no QR code on the receipt: {qr_modules}"
    );
    ensure!(
        !parent.current_url().await?.as_str().contains(&child_id),
        "the child's ID reached a URL"
    );

    // More applicants through the API: a single child and twins.
    for (i, name) in ["李四", "王五"].iter().enumerate() {
        api(
            app,
            "",
            "POST",
            &format!("/api/v1/draws/{DRAW}/applications"),
            Some(json!({
                "child_id": resident_id(&format!("1101012026010100{}", i + 2)),
                "child_name": name,
                "choices": [{"kg": "SUN", "class": 1}, {"kg": "MOON", "class": 1}],
            })),
            201,
        )
        .await?;
    }
    api(
        app,
        "",
        "POST",
        &format!("/api/v1/draws/{DRAW}/applications"),
        Some(json!({
            "children": [
                {"child_id": resident_id("11010120260101004"), "child_name": "赵一"},
                {"child_id": resident_id("11010120260101005"), "child_name": "赵二"},
            ],
            "choices": [{"kg": "MOON", "class": 1}],
        })),
        201,
    )
    .await?;
    // The organiser imports a CSV on the staff page: a bad file is refused with its line
    // numbers, a good one imported.
    let files = tempfile::tempdir()?;
    let bad = files.path().join("bad.csv");
    std::fs::write(
        &bad,
        "child_id,child_name,choices,group\nnot-an-id,钱七,SUN:1,\n",
    )?;
    let good = files.path().join("good.csv");
    std::fs::write(
        &good,
        format!(
            "child_id,child_name,choices,group\n{},钱七,SUN:1;MOON:2,\n",
            resident_id("11010120260101006")
        ),
    )?;
    upload(org, &bad).await?;
    wait_visible(org, "#import-errors").await?;
    let first_error = text_of(org, "#import-errors tbody tr td").await?;
    ensure!(
        first_error == "2",
        "error table starts with line {first_error:?}"
    );
    upload(org, &good).await?;
    wait_for(WAIT, || async {
        let draw: Value = api(app, "", "GET", &format!("/api/v1/draws/{DRAW}"), None, 200).await?;
        Ok((draw["applications"] == json!(6)).then_some(()))
    })
    .await
    .context("the CSV import did not add its application")?;
    let progress = js(
        org,
        "return document.getElementById('import-progress').value;",
        vec![],
    )
    .await?;
    ensure!(progress == json!(100), "upload progress at {progress}");

    // Corrections and withdrawal on the application page, with the receipt.
    let extra: Value = api(
        app,
        "",
        "POST",
        &format!("/api/v1/draws/{DRAW}/applications"),
        Some(json!({
            "child_id": resident_id("11010120260101007"),
            "child_name": "孙八",
            "choices": [{"kg": "SUN", "class": 1}],
        })),
        201,
    )
    .await?;
    let correct =
        |client: &'_ Client, receipt: (String, String), id: String, name: &'static str| {
            let base = base.clone();
            let client = client.clone();
            async move {
                client
                    .goto(&format!("{base}/draws/{DRAW}/application"))
                    .await?;
                fill(&client, "#correct-app", &receipt.0).await?;
                fill(&client, "#correct-salt", &receipt.1).await?;
                fill(&client, "#correct-child-id", &id).await?;
                fill(&client, "#correct-child-name", name).await?;
                anyhow::Ok(())
            }
        };
    correct(
        parent,
        (app_code.clone(), salt.clone()),
        child_id.clone(),
        child_name,
    )
    .await?;
    parent
        .find(Locator::Css("#choice-add"))
        .await?
        .click()
        .await?;
    js(
        parent,
        r#"const rows = document.querySelectorAll('#choices li');
           rows[0].querySelector('.choice-kg').value = 'SUN';
           rows[1].querySelector('.choice-kg').value = 'MOON';"#,
        vec![],
    )
    .await?;
    parent
        .find(Locator::Css("#correct-submit"))
        .await?
        .click()
        .await?;
    wait_visible(parent, "#correct-done").await?;
    correct(
        parent,
        (
            extra["app"].as_str().unwrap_or_default().to_owned(),
            extra["salt"].as_str().unwrap_or_default().to_owned(),
        ),
        resident_id("11010120260101007"),
        "孙八",
    )
    .await?;
    parent
        .find(Locator::Css("#withdraw-submit"))
        .await?
        .click()
        .await?;
    parent
        .accept_alert()
        .await
        .context("no confirmation before withdrawing")?;
    wait_visible(parent, "#correct-done").await?;
    let draw: Value = api(app, "", "GET", &format!("/api/v1/draws/{DRAW}"), None, 200).await?;
    ensure!(
        draw["applications"] == json!(6),
        "after one withdrawal: {}",
        draw["applications"]
    );

    // The review (资格审核) on the staff page: every pending application verified.
    org.refresh().await?;
    wait_visible(org, "#review-table tbody tr").await?;
    org.find(Locator::Css("#review-verify-all"))
        .await?
        .click()
        .await?;
    org.accept_alert()
        .await
        .context("no confirmation before verifying all")?;
    wait_text(org, "#review-done", "6").await?;
    wait_text(org, ".review-count[data-status='verified']", "6").await?;
    // The parent sees the review with the receipt.
    correct(
        parent,
        (app_code.clone(), salt.clone()),
        child_id.clone(),
        child_name,
    )
    .await?;
    parent
        .find(Locator::Css("#status-submit"))
        .await?
        .click()
        .await?;
    wait_attr(parent, "#status-text", "data-status", "verified").await?;

    api(
        app,
        &csrf,
        "POST",
        &format!("/api/v1/draws/{DRAW}/close"),
        None,
        200,
    )
    .await?;

    // The organiser issues witness 0's link on the staff page; the witness commits.
    org.refresh().await?;
    org.find(Locator::Css(
        "#staff-witnesses tr[data-index='0'] .witness-link",
    ))
    .await?
    .click()
    .await?;
    let link = wait_for(WAIT, || async {
        let v = js(
            org,
            "const i = document.querySelector(\"#staff-witnesses tr[data-index='0'] .witness-link-url\"); return i ? i.value : '';",
            vec![],
        )
        .await?;
        Ok(v.as_str().filter(|s| s.contains("#wt_")).map(str::to_owned))
    })
    .await
    .context("no witness link shown")?;
    ensure!(
        link.contains(&format!("/draws/{DRAW}/witness/0#wt_")),
        "witness link {link}"
    );
    witness.goto(&link).await?;
    witness
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#secret-generate"))
        .await?
        .click()
        .await?;
    wait_text(witness, "#witness-commitment", "").await?;
    witness
        .find(Locator::Css("#secret-download"))
        .await?
        .click()
        .await?;
    witness
        .find(Locator::Css("#commitment-send"))
        .await?
        .click()
        .await?;
    wait_visible(witness, "#commit-done").await?;
    let secret_hex = text_of(witness, "#witness-secret").await?;
    let shown_commitment = text_of(witness, "#witness-commitment").await?;
    let draw_id = lottery::DrawId::parse(DRAW).map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret =
        lottery::WitnessSecret::parse(&secret_hex).map_err(|e| anyhow::anyhow!("secret: {e}"))?;
    let expected = secret.commitment(&draw_id).to_string();
    ensure!(
        shown_commitment == expected,
        "browser commitment {shown_commitment} != Rust {expected}"
    );
    let public: Value = api(app, "", "GET", &format!("/api/v1/draws/{DRAW}"), None, 200).await?;
    ensure!(
        public["witnesses"][0]["commitment"] == json!(expected),
        "the server holds another commitment: {}",
        public["witnesses"][0]
    );

    // Witness 1 commits through the organiser (API); then the announcement.
    let other_secret = "11".repeat(32);
    let other = lottery::WitnessSecret::parse(&other_secret)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .commitment(&draw_id)
        .to_string();
    api(
        app,
        &csrf,
        "POST",
        &format!("/api/v1/draws/{DRAW}/witnesses/1/commitment"),
        Some(json!({ "commitment": other })),
        200,
    )
    .await?;
    api(
        app,
        &csrf,
        "POST",
        &format!("/api/v1/draws/{DRAW}/announce"),
        None,
        200,
    )
    .await?;

    // The parent's inclusion proof checks in the browser.
    parent.goto(&format!("{base}/draws/{DRAW}/proof")).await?;
    fill(parent, "#proof-app", &app_code).await?;
    fill(parent, "#proof-child-id", &child_id).await?;
    fill(parent, "#proof-child-name", child_name).await?;
    parent
        .find(Locator::Css("#proof-submit"))
        .await?
        .click()
        .await?;
    wait_attr(parent, "#proof-verdict", "data-ok", "true")
        .await
        .context("the inclusion proof did not check")?;

    // The witness reveals on the same link (the page checks the secret first).
    // (The same URL: only a reload renders the page again.)
    witness.refresh().await?;
    fill(witness, "#reveal-secret", &secret_hex).await?;
    wait_attr(witness, "#reveal-check", "class", "notice").await?;
    witness
        .find(Locator::Css("#reveal-send"))
        .await?
        .click()
        .await?;
    wait_visible(witness, "#reveal-done").await?;
    api(
        app,
        &csrf,
        "POST",
        &format!("/api/v1/draws/{DRAW}/witnesses/1/reveal"),
        Some(json!({ "secret": other_secret })),
        200,
    )
    .await?;

    // A viewer watches the draw page; the organiser draws on the staff page.
    viewer.goto(&format!("{base}/draws/{DRAW}")).await?;
    wait_attr_text_online(viewer).await?;
    org.refresh().await?;
    org.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#step-draw"))
        .await?
        .click()
        .await?;
    org.accept_alert()
        .await
        .context("no confirmation before drawing")?;
    wait_visible(viewer, "#live-published")
        .await
        .context("the viewer never saw the publication")?;
    let shown = js(
        viewer,
        "return Array.from(document.querySelectorAll('#live-numbers li')).map(li => Number(li.dataset.number));",
        vec![],
    )
    .await?;
    // Five units: the parent's child, two single children, the twins, the imported child.
    ensure!(shown == json!([1, 2, 3, 4, 5]), "numbers shown: {shown}");
    ensure!(
        text_of(viewer, "#live-seed-value").await?.len() == 64,
        "no seed shown"
    );
    let kgs = js(
        viewer,
        "return document.querySelectorAll('#live-admitted li').length;",
        vec![],
    )
    .await?;
    ensure!(kgs == json!(2), "admitted lists shown: {kgs}");
    let progress: Value = api(
        app,
        "",
        "GET",
        &format!("/api/v1/draws/{DRAW}/progress"),
        None,
        200,
    )
    .await?;
    ensure!(
        text_of(viewer, "#live-transcript-hash").await?
            == progress["transcript_hash"].as_str().unwrap_or("-"),
        "the transcript hash shown differs from the server's"
    );

    // A late viewer gets the same state from the progress endpoint.
    viewer.refresh().await?;
    wait_visible(viewer, "#live-published").await?;
    let late = js(
        viewer,
        "return document.querySelectorAll('#live-numbers li').length;",
        vec![],
    )
    .await?;
    ensure!(late == json!(5), "late viewer saw {late} numbers");

    // The parent looks the result up (masked name).
    parent.goto(&format!("{base}/draws/{DRAW}/lookup")).await?;
    fill(parent, "#lookup-child-id", &child_id).await?;
    fill(parent, "#lookup-child-name", child_name).await?;
    parent
        .find(Locator::Css("#lookup-submit"))
        .await?
        .click()
        .await?;
    wait_visible(parent, "#lookup-result").await?;
    let masked = text_of(parent, "#lookup-name").await?;
    ensure!(masked == "张*", "masked name {masked:?}");
    ensure!(text_of(parent, "#lookup-app").await? == app_code);
    ensure!(!text_of(parent, "#lookup-number").await?.is_empty());
    ensure!(!text_of(parent, "#lookup-outcome").await?.is_empty());
    // A wrong name gets the uniform "no match".
    fill(parent, "#lookup-child-name", "张大明").await?;
    parent
        .find(Locator::Css("#lookup-submit"))
        .await?
        .click()
        .await?;
    wait_visible(parent, "#lookup-error").await?;
    let no_match = text_of(parent, "#lookup-error").await?;
    parent
        .find(Locator::Css("#lookup-submit"))
        .await?
        .click()
        .await?;
    let limited = wait_for(WAIT, || async {
        let t = text_of(parent, "#lookup-error").await?;
        Ok((t != no_match && !t.is_empty()).then_some(t))
    })
    .await
    .context("no rate-limit message")?;
    ensure!(
        limited.chars().any(|c| c.is_ascii_digit()) && !limited.contains("{n}"),
        "rate-limit message without the wait: {limited:?}"
    );

    // The results page: a table row and four bars per kindergarten.
    parent.goto(&format!("{base}/draws/{DRAW}/results")).await?;
    let rows = js(
        parent,
        "return [document.querySelectorAll('#results-table tbody tr').length, document.querySelectorAll('#results-chart rect').length];",
        vec![],
    )
    .await?;
    ensure!(rows == json!([2, 8]), "results table/chart: {rows}");

    // The notary verifies offline with the commands the notary page shows, countersigns,
    // and uploads the countersigned file on the page (the witness's browser serves).
    app.create_user("nora", PASSWORD, &["notary"]);
    let notary = witness;
    notary.goto(&format!("{base}/login")).await?;
    fill(notary, "#username", "nora").await?;
    fill(notary, "#password", PASSWORD).await?;
    notary
        .find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_path(notary, "/staff").await?;
    notary
        .goto(&format!("{base}/staff/draws/{DRAW}/notary"))
        .await?;
    let command = text_of(notary, "#notary-verify-command").await?;
    ensure!(
        command.starts_with(&format!(
            "gongkai draw verify {DRAW}-transcript.json --private"
        )),
        "verify command {command:?}"
    );
    let transcript = files.path().join(format!("{DRAW}-transcript.json"));
    let private = files.path().join(format!("{DRAW}-private.json"));
    let body = app
        .anonymous_client()
        .get(app.url(&format!("/api/v1/draws/{DRAW}/transcript")))
        .send()
        .await?
        .bytes()
        .await?;
    std::fs::write(&transcript, &body)?;
    let body = app
        .client
        .get(app.url(&format!("/api/v1/draws/{DRAW}/private")))
        .send()
        .await?
        .bytes()
        .await?;
    std::fs::write(&private, &body)?;
    let cli = |args: Vec<String>| {
        let mut command = gongkai_command();
        command.current_dir(files.path()).args(args);
        run_with_timeout(command, None, Duration::from_secs(60))
    };
    let words = |line: &str| {
        line.split_whitespace()
            .skip(1)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let verified = cli(words(&command));
    ensure!(
        verified.status.success(),
        "{command}: {}{}",
        verified.stdout,
        verified.stderr
    );
    let key = cli(words("gongkai keys generate --out notary.key"));
    ensure!(key.status.success(), "keys generate: {}", key.stderr);
    let sign_command = text_of(notary, "#notary-sign-command").await?;
    let signed = cli(words(&sign_command));
    ensure!(signed.status.success(), "{sign_command}: {}", signed.stderr);
    let input = notary.find(Locator::Css("#cs-file")).await?;
    input.send_keys(&transcript.display().to_string()).await?;
    wait_for(WAIT, || async {
        let v = js(
            notary,
            "return document.getElementById('cs-signature').value.length;",
            vec![],
        )
        .await?;
        Ok((v == json!(128)).then_some(()))
    })
    .await
    .context("the countersigned file did not fill in the signature")?;
    notary
        .find(Locator::Css("#cs-submit"))
        .await?
        .click()
        .await?;
    wait_visible(notary, "#cs-done").await?;
    let draw: Value = api(app, "", "GET", &format!("/api/v1/draws/{DRAW}"), None, 200).await?;
    ensure!(
        draw["state"] == json!("countersigned"),
        "after the countersignature: {}",
        draw["state"]
    );

    // Chinese is the default language (no Accept-Language), English on request.
    let page = app
        .anonymous_client()
        .get(app.url(&format!("/draws/{DRAW}")))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        page.contains("lang=\"zh-CN\"") && page.contains("见证人"),
        "the draw page is not in Chinese by default"
    );
    let page = app
        .anonymous_client()
        .get(app.url(&format!("/draws/{DRAW}?lang=en")))
        .send()
        .await?
        .text()
        .await?;
    ensure!(page.contains("Witnesses"), "no English page");

    // The public list links the draw.
    parent.goto(&format!("{base}/draws")).await?;
    wait_text(parent, "#draw-list", "2030 年阳光街道").await?;
    Ok(())
}

/// Picks `path` in the import form and uploads it.
async fn upload(org: &Client, path: &std::path::Path) -> anyhow::Result<()> {
    let input = org.find(Locator::Css("#import-file")).await?;
    input.clear().await.ok();
    input.send_keys(&path.display().to_string()).await?;
    org.find(Locator::Css("#import-send"))
        .await?
        .click()
        .await?;
    Ok(())
}

/// An 18-character resident ID number: `prefix` (17 digits) plus its check character.
fn resident_id(prefix: &str) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = prefix
        .chars()
        .zip(WEIGHTS)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    format!("{prefix}{}", CHECK[(sum % 11) as usize] as char)
}

/// A JSON API call with the app's cookie client (and CSRF token when given).
async fn api(
    app: &TestApp,
    csrf: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> anyhow::Result<Value> {
    let client = if csrf.is_empty() {
        app.anonymous_client()
    } else {
        app.client.clone()
    };
    let mut request = client.request(method.parse()?, app.url(path));
    if !csrf.is_empty() {
        request = request.header("X-CSRF-Token", csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let got = response.status().as_u16();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    ensure!(got == status, "{method} {path}: {got} {value}");
    Ok(value)
}

async fn js(client: &Client, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
    Ok(client.execute(script, args).await?)
}

async fn fill(client: &Client, css: &str, text: &str) -> anyhow::Result<()> {
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

async fn text_of(client: &Client, css: &str) -> anyhow::Result<String> {
    let v = js(
        client,
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
        vec![json!(css)],
    )
    .await?;
    Ok(v.as_str().unwrap_or_default().trim().to_owned())
}

async fn wait_text(client: &Client, css: &str, needle: &str) -> anyhow::Result<()> {
    wait_for(WAIT, || async {
        let t = text_of(client, css).await?;
        Ok((t.contains(needle) && (!needle.is_empty() || !t.is_empty())).then_some(()))
    })
    .await
    .with_context(|| format!("{css} never contained {needle:?}"))
}

pub(crate) async fn wait_visible(client: &Client, css: &str) -> anyhow::Result<()> {
    wait_for(WAIT, || async {
        let v = js(
            client,
            "const e = document.querySelector(arguments[0]); return !!e && !e.hidden && e.offsetParent !== null;",
            vec![json!(css)],
        )
        .await?;
        Ok((v == json!(true)).then_some(()))
    })
    .await
    .with_context(|| format!("{css} never became visible"))
}

async fn wait_attr(client: &Client, css: &str, attr: &str, value: &str) -> anyhow::Result<()> {
    wait_for(WAIT, || async {
        let v = js(
            client,
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
            vec![json!(css), json!(attr)],
        )
        .await?;
        Ok((v.as_str() == Some(value)).then_some(()))
    })
    .await
    .with_context(|| format!("{css} never had {attr}={value:?}"))
}

/// The live view's socket is up (its status text is the "online" one).
async fn wait_attr_text_online(client: &Client) -> anyhow::Result<()> {
    wait_for(WAIT, || async {
        let v = js(
            client,
            "const c = document.getElementById('live-connection'); return !!c && c.textContent === c.dataset.online;",
            vec![],
        )
        .await?;
        Ok((v == json!(true)).then_some(()))
    })
    .await
    .context("the live view never connected")
}

async fn wait_path(client: &Client, path: &str) -> anyhow::Result<()> {
    wait_for(WAIT, || async {
        Ok((client.current_url().await?.path() == path).then_some(()))
    })
    .await
    .with_context(|| format!("never reached {path}"))
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
