//! The in-browser verifier (`/verify`, `web/assets/draw-*.js`) against the notary's CLI:
//! simulated draws with both mechanisms and both rules for multiples (one with a beacon),
//! and tampered copies of them, each checked by `gongkai draw verify FILE` and by the page
//! in Chromium (the file picked through its `<input type=file>`). Both must agree on valid
//! or invalid and on the name of the failed check; on a valid file, on the transcript hash.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::support::binary::Finished;
use crate::support::{Browser, TestApp, gongkai_command, run_with_timeout};

const WAIT: Duration = Duration::from_secs(60);

/// What a verifier said about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Valid, with the transcript hash.
    Valid(String),
    /// Invalid, with the short name of the failed check.
    Invalid(String),
}

/// One file to verify, with the trusted keys to give both verifiers.
struct Case {
    name: String,
    file: PathBuf,
    organiser_key: Option<String>,
    /// What the CLI must say (the page must then say the same).
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Valid,
    Invalid(&'static str),
}

fn gongkai(args: &[&str]) -> Finished {
    let mut command = gongkai_command();
    command.args(args);
    run_with_timeout(command, None, Duration::from_secs(120))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn simulate(dir: &Path, mechanism: &str, multiples: &str, beacon: Option<&str>) -> PathBuf {
    let mut args = vec![
        "draw",
        "simulate",
        "--applications",
        "300",
        "--kindergartens",
        "6",
        "--out",
        path_str(dir),
        "--seed",
        "browser-verifier",
        "--multiples-per-mille",
        "150",
        "--mechanism",
        mechanism,
        "--multiples",
        multiples,
    ];
    if let Some(beacon) = beacon {
        args.extend(["--beacon", beacon]);
    }
    let run = gongkai(&args);
    assert_eq!(
        run.status.code(),
        Some(0),
        "simulate failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    dir.join("signed.json")
}

/// `gongkai draw verify FILE [--organiser-key KEY]`, read as a [`Verdict`].
fn cli_verdict(case: &Case) -> Verdict {
    let mut args = vec!["draw", "verify", path_str(&case.file)];
    if let Some(key) = &case.organiser_key {
        args.extend(["--organiser-key", key.as_str()]);
    }
    let run = gongkai(&args);
    match run.status.code() {
        Some(0) => {
            assert!(run.stdout.starts_with("valid\n"), "{}", run.stdout);
            let hash = run
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("transcript hash:"))
                .unwrap_or_else(|| panic!("no transcript hash in:\n{}", run.stdout));
            Verdict::Valid(hash.trim().to_owned())
        }
        Some(1) => {
            // "failed check: <title> (<name>)"; titles may hold parentheses themselves.
            let line = run
                .stdout
                .lines()
                .find(|l| l.starts_with("failed check: "))
                .unwrap_or_else(|| panic!("no failed check in:\n{}", run.stdout));
            let name = line
                .rsplit_once(" (")
                .and_then(|(_, rest)| rest.strip_suffix(')'))
                .unwrap_or_else(|| panic!("cannot read the check name in {line:?}"));
            Verdict::Invalid(name.to_owned())
        }
        other => panic!(
            "verify exited with {other:?}:\n{}\n{}",
            run.stdout, run.stderr
        ),
    }
}

/// Loads `case.file` into the page through the file picker and reads its verdict.
async fn page_verdict(client: &Client, base: &str, case: &Case) -> anyhow::Result<Verdict> {
    client.goto(&format!("{base}/verify?lang=en")).await?;
    if let Some(key) = &case.organiser_key {
        // The key field sits in a closed <details>: open it, as a visitor would.
        client
            .find(Locator::Css("#verify-keys summary"))
            .await?
            .click()
            .await?;
        client
            .find(Locator::Css("#organiser-key"))
            .await?
            .send_keys(key)
            .await?;
    }
    let input = client.find(Locator::Css("#transcript-file")).await?;
    input.send_keys(path_str(&case.file)).await?;
    let result = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(
            "#verify-result[data-state=valid], #verify-result[data-state=invalid], \
             #verify-result[data-state=error]",
        ))
        .await
        .with_context(|| format!("{}: the page gave no verdict", case.name))?;
    let state = result.attr("data-state").await?.unwrap_or_default();
    let shown = result.text().await?;
    ensure!(
        !shown.trim().is_empty(),
        "{}: the verdict shows no text",
        case.name
    );
    match state.as_str() {
        "valid" => {
            let summary = client.find(Locator::Css("#verify-summary")).await?;
            let hash = summary
                .attr("data-transcript-hash")
                .await?
                .context("no transcript hash on the summary")?;
            // The summary the CLI prints, on the page.
            for label in ["Applications", "Units", "Seats", "Admitted", "Seed"] {
                ensure!(shown.contains(label), "summary lacks {label}: {shown}");
            }
            ensure!(
                shown.contains(&hash),
                "the transcript hash is not shown: {shown}"
            );
            Ok(Verdict::Valid(hash))
        }
        "invalid" => {
            let check = client.find(Locator::Css("#verify-check")).await?;
            let name = check.attr("data-check").await?.unwrap_or_default();
            let text = check.text().await?;
            ensure!(
                text.contains(&format!("({name})")),
                "{}: the failed check {name} is not named in {text:?}",
                case.name
            );
            Ok(Verdict::Invalid(name))
        }
        _ => bail!("{}: the page could not check the file: {shown}", case.name),
    }
}

/// Writes a tampered copy of `signed` as `dir/name.json`.
fn tampered(dir: &Path, signed: &Value, name: &str, tamper: impl FnOnce(&mut Value)) -> PathBuf {
    let mut copy = signed.clone();
    tamper(&mut copy);
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec(&copy).unwrap()).unwrap();
    file
}

fn flip_hex(text: &str) -> String {
    let (first, rest) = text.split_at(1);
    format!("{}{rest}", if first == "0" { "1" } else { "0" })
}

fn cases(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut valid = |name: &str, mechanism: &str, multiples: &str, beacon: Option<&str>| {
        let sub = dir.join(name);
        let file = simulate(&sub, mechanism, multiples, beacon);
        cases.push(Case {
            name: name.to_owned(),
            file: file.clone(),
            organiser_key: None,
            expect: Expect::Valid,
        });
        file
    };
    let base = valid("da-skip", "deferred-acceptance", "whole-or-skip", None);
    valid(
        "da-overfill",
        "deferred-acceptance",
        "whole-or-overfill",
        None,
    );
    valid("ia-skip", "immediate-acceptance", "whole-or-skip", None);
    let beacon = valid(
        "ia-overfill-beacon",
        "immediate-acceptance",
        "whole-or-overfill",
        Some("national lottery 2026-123: 03 11 17"),
    );

    let signed: Value = serde_json::from_slice(&std::fs::read(&base).unwrap()).unwrap();
    let organiser = signed["signatures"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = "transcript";
    let mut bad = |name: &str, check: &'static str, tamper: &dyn Fn(&mut Value)| {
        cases.push(Case {
            name: name.to_owned(),
            file: tampered(dir, &signed, name, tamper),
            organiser_key: None,
            expect: Expect::Invalid(check),
        });
    };
    bad("seed-byte-flipped", "seed", &|d| {
        let seed = flip_hex(d[t]["seed"].as_str().unwrap());
        d[t]["seed"] = json!(seed);
    });
    bad("leaves-reordered", "leaves", &|d| {
        let leaves = d[t]["leaves"].as_array_mut().unwrap();
        leaves.swap(3, 4);
    });
    bad("admitted-changed", "admitted", &|d| {
        let units = d[t]["admitted"][0]["units"].as_array_mut().unwrap();
        units.swap(0, 1);
    });
    bad("admitted-shortened", "admitted", &|d| {
        d[t]["admitted"][1]["units"].as_array_mut().unwrap().pop();
    });
    bad("waitlist-changed", "waitlists", &|d| {
        d[t]["waitlists"][0]["units"]
            .as_array_mut()
            .unwrap()
            .reverse();
    });
    bad("lottery-changed", "lottery", &|d| {
        d[t]["lottery"].as_array_mut().unwrap().swap(0, 1);
    });
    bad("reveal-changed", "reveals", &|d| {
        let reveal = flip_hex(d[t]["reveals"][1].as_str().unwrap());
        d[t]["reveals"][1] = json!(reveal);
    });
    bad("leaf-identity-changed", "tree-head", &|d| {
        d[t]["leaves"][7]["idc"] = json!("00".repeat(32));
    });
    bad("group-split", "groups", &|d| {
        let leaves = d[t]["leaves"].as_array_mut().unwrap();
        let member = leaves
            .iter_mut()
            .find(|l| l["group"] != "")
            .expect("the simulation has twins");
        member["group"] = json!("alone");
    });
    bad("unannounced-kindergarten", "leaves", &|d| {
        d[t]["leaves"][2]["choices"][0]["kg"] = json!("KG-99");
    });
    bad("transcript-signature-broken", "signatures", &|d| {
        let signature = flip_hex(d["signatures"][0]["signature"].as_str().unwrap());
        d["signatures"][0]["signature"] = json!(signature);
    });
    bad(
        "organiser-signature-removed",
        "organiser-signatures",
        &|d| {
            d["signatures"] = json!([]);
        },
    );
    bad(
        "announcement-signature-removed",
        "organiser-signatures",
        &|d| {
            d[t]["announcement_signatures"] = json!([]);
        },
    );
    bad("announcement-changed", "signatures", &|d| {
        d[t]["announcement"]["kindergartens"][0]["seats"] = json!(1000);
    });
    bad("kindergartens-unordered", "announcement", &|d| {
        d[t]["announcement"]["kindergartens"]
            .as_array_mut()
            .unwrap()
            .reverse();
    });
    bad("unknown-field", "format", &|d| {
        d[t]["note"] = json!("added later");
    });
    bad("leaf-field-added", "leaves", &|d| {
        d[t]["leaves"][0]["name"] = json!("leaked");
    });

    // Raw bytes the JSON value cannot express: a truncated file and a fraction.
    let text = std::fs::read_to_string(&base).unwrap();
    let truncated = dir.join("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    cases.push(Case {
        name: "truncated".into(),
        file: truncated,
        organiser_key: None,
        expect: Expect::Invalid("leaves"),
    });
    let fraction = dir.join("fraction.json");
    std::fs::write(
        &fraction,
        text.replacen("\"class\":1,", "\"class\":1.0,", 1),
    )
    .unwrap();
    cases.push(Case {
        name: "class-with-fraction".into(),
        file: fraction,
        organiser_key: None,
        expect: Expect::Invalid("leaves"),
    });

    // The beacon draw with its beacon text changed.
    let with_beacon: Value = serde_json::from_slice(&std::fs::read(&beacon).unwrap()).unwrap();
    cases.push(Case {
        name: "beacon-text-changed".into(),
        file: tampered(dir, &with_beacon, "beacon-text-changed", |d| {
            d[t]["beacon_text"] = json!("national lottery 2026-123: 03 11 18");
        }),
        organiser_key: None,
        expect: Expect::Invalid("seed"),
    });

    // Trusted keys: the right organiser key, then a wrong one.
    cases.push(Case {
        name: "trusted-organiser-key".into(),
        file: base.clone(),
        organiser_key: Some(organiser),
        expect: Expect::Valid,
    });
    cases.push(Case {
        name: "untrusted-organiser-key".into(),
        file: base,
        organiser_key: Some("ab".repeat(32)),
        expect: Expect::Invalid("trusted-keys"),
    });
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_verifier_agrees_with_the_cli() {
    let app = TestApp::spawn().await;
    let base = app.url("");
    let dir = tempfile::tempdir().unwrap();
    let cases = cases(dir.path());

    // The CLI first: each case is what the test says it is.
    let mut expected = Vec::new();
    for case in &cases {
        let verdict = cli_verdict(case);
        match (&case.expect, &verdict) {
            (Expect::Valid, Verdict::Valid(_)) => {}
            (Expect::Invalid(check), Verdict::Invalid(name)) if check == name => {}
            _ => panic!(
                "{}: the CLI says {verdict:?}, the test expects {:?}",
                case.name, case.expect
            ),
        }
        expected.push(verdict);
    }

    Browser::run("draw_verifier", |client| async move {
        // The page is linked from every page's footer.
        client.goto(&format!("{base}/?lang=en")).await?;
        client
            .find(Locator::Css("footer a[href='/verify']"))
            .await
            .context("no link to /verify in the footer")?;
        // With ?draw=ID the page fetches the published transcript; an unknown draw is an
        // HTTP error, shown as such (not as an invalid transcript).
        client
            .goto(&format!("{base}/verify?lang=en&draw=NO-SUCH-DRAW"))
            .await?;
        let result = client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#verify-result[data-state=error]"))
            .await
            .context("no error shown for an unknown draw")?;
        let shown = result.text().await?;
        ensure!(shown.contains("HTTP 404"), "unclear error: {shown}");
        for (case, cli) in cases.iter().zip(&expected) {
            let page = page_verdict(&client, &base, case).await?;
            ensure!(
                &page == cli,
                "{}: the page says {page:?}, `gongkai draw verify` says {cli:?}",
                case.name
            );
        }
        Ok(())
    })
    .await;
}
