//! The notary's offline tools, run as the real `gongkai` binary: simulate -> verify round
//! trip, tampering caught and named (exit 1), unreadable input (exit 2), receipts,
//! countersigning, and key generation.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::binary::Finished;
use crate::support::{gongkai_command, run_with_timeout};

fn gongkai(args: &[&str]) -> Finished {
    let mut command = gongkai_command();
    command.args(args);
    run_with_timeout(command, None, Duration::from_secs(120))
}

fn code(finished: &Finished) -> i32 {
    finished.status.code().unwrap_or(-1)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// A small simulated draw in a fresh directory.
fn simulate(dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "draw",
        "simulate",
        "--applications",
        "300",
        "--kindergartens",
        "6",
        "--out",
        path(dir),
        "--seed",
        "e2e",
    ];
    args.extend_from_slice(extra);
    let run = gongkai(&args);
    assert_eq!(
        code(&run),
        0,
        "simulate failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    for file in [
        "signed.json",
        "announcement.json",
        "private.json",
        "organiser.key",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
}

fn read_json(file: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

#[cfg(unix)]
fn mode(file: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).unwrap().permissions().mode() & 0o777
}

#[test]
fn simulated_draw_verifies_after_a_round_trip_through_the_file() {
    for (mechanism, multiples) in [
        ("deferred-acceptance", "whole-or-skip"),
        ("immediate-acceptance", "whole-or-overfill"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        simulate(
            dir.path(),
            &[
                "--mechanism",
                mechanism,
                "--multiples",
                multiples,
                "--beacon",
                "03 11 17",
            ],
        );
        let signed = dir.path().join("signed.json");
        let organiser = read_json(&dir.path().join("organiser.key"))["public_key"]
            .as_str()
            .unwrap()
            .to_owned();
        let run = gongkai(&[
            "draw",
            "verify",
            path(&signed),
            "--organiser-key",
            &organiser,
            "--private",
            path(&dir.path().join("private.json")),
        ]);
        assert_eq!(code(&run), 0, "{}\n{}", run.stdout, run.stderr);
        assert!(run.stdout.starts_with("valid\n"), "{}", run.stdout);
        for field in [
            "applications:     300",
            "units:",
            "seats:",
            "admitted:",
            "seed:",
            "transcript hash:",
        ] {
            assert!(
                run.stdout.contains(field),
                "summary lacks {field}:\n{}",
                run.stdout
            );
        }
        assert!(
            run.stdout
                .contains(&format!("mechanism:        {mechanism}, {multiples}")),
            "{}",
            run.stdout
        );

        // A re-serialised (pretty-printed) file still verifies: the hash is over the
        // canonical form, not the file's spelling.
        let pretty = dir.path().join("pretty.json");
        std::fs::write(
            &pretty,
            serde_json::to_vec_pretty(&read_json(&signed)).unwrap(),
        )
        .unwrap();
        assert_eq!(code(&gongkai(&["draw", "verify", path(&pretty)])), 0);
    }
}

#[cfg(unix)]
#[test]
fn secrets_are_written_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    simulate(dir.path(), &[]);
    assert_eq!(mode(&dir.path().join("private.json")), 0o600);
    assert_eq!(mode(&dir.path().join("organiser.key")), 0o600);

    let key = dir.path().join("notary.key");
    let run = gongkai(&["keys", "generate", "--out", path(&key)]);
    assert_eq!(code(&run), 0, "{}", run.stderr);
    assert_eq!(mode(&key), 0o600);
    let public = run.stdout.trim();
    assert_eq!(public.len(), 64);
    assert_eq!(read_json(&key)["public_key"], public);
    assert_eq!(read_json(&key)["format"], "gongkai-ed25519-key/1");
    // Never overwrites a key.
    let again = gongkai(&["keys", "generate", "--out", path(&key)]);
    assert_eq!(code(&again), 2);
    assert_eq!(read_json(&key)["public_key"], public);
}

/// A named way to tamper with a signed transcript.
type Tamper = Box<dyn Fn(&mut Value)>;

#[test]
fn tampering_is_caught_and_named() {
    let dir = tempfile::tempdir().unwrap();
    simulate(dir.path(), &[]);
    let original = read_json(&dir.path().join("signed.json"));
    let tampered = dir.path().join("tampered.json");
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "admitted",
            Box::new(|t: &mut Value| {
                let admitted = t["transcript"]["admitted"].as_array_mut().unwrap();
                let list = admitted
                    .iter_mut()
                    .find(|p| p["units"].as_array().unwrap().len() > 1)
                    .unwrap();
                list["units"].as_array_mut().unwrap().swap(0, 1);
            }),
        ),
        (
            "lottery",
            Box::new(|t: &mut Value| {
                t["transcript"]["lottery"]
                    .as_array_mut()
                    .unwrap()
                    .swap(3, 4)
            }),
        ),
        (
            "tree-head",
            Box::new(|t: &mut Value| {
                t["transcript"]["leaves"][5]["idc"] = Value::String("00".repeat(32));
            }),
        ),
        (
            "reveals",
            Box::new(|t: &mut Value| {
                t["transcript"]["reveals"][0] = Value::String("11".repeat(32));
            }),
        ),
        (
            "signatures",
            Box::new(|t: &mut Value| {
                t["transcript"]["announcement"]["kindergartens"][0]["seats"] = Value::from(10_000);
            }),
        ),
        (
            "seed",
            Box::new(|t: &mut Value| t["transcript"]["seed"] = Value::String("22".repeat(32))),
        ),
        (
            "leaves",
            Box::new(|t: &mut Value| {
                t["transcript"]["leaves"][2]["app"] = Value::String("ILLEGAL000".into())
            }),
        ),
    ];
    for (check, tamper) in cases {
        let mut value = original.clone();
        tamper(&mut value);
        std::fs::write(&tampered, serde_json::to_vec(&value).unwrap()).unwrap();
        let run = gongkai(&["draw", "verify", path(&tampered)]);
        assert_eq!(code(&run), 1, "{check}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stdout.starts_with("invalid\n"), "{}", run.stdout);
        assert!(
            run.stdout.contains(&format!("({check})")),
            "expected the {check} check:\n{}",
            run.stdout
        );
    }

    // A single flipped byte anywhere is caught too.
    let bytes = std::fs::read(dir.path().join("signed.json")).unwrap();
    for position in [10, bytes.len() / 3, bytes.len() / 2, bytes.len() - 70] {
        let mut flipped = bytes.clone();
        flipped[position] ^= 0x01;
        std::fs::write(&tampered, &flipped).unwrap();
        assert_eq!(
            code(&gongkai(&["draw", "verify", path(&tampered)])),
            1,
            "flip at {position}"
        );
    }

    // The wrong organiser key is named as such.
    let run = gongkai(&[
        "draw",
        "verify",
        path(&dir.path().join("signed.json")),
        "--organiser-key",
        &"ab".repeat(32),
    ]);
    assert_eq!(code(&run), 1);
    assert!(run.stdout.contains("(trusted-keys)"), "{}", run.stdout);
}

#[test]
fn unreadable_input_and_bad_usage_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let run = gongkai(&["draw", "verify", path(&missing)]);
    assert_eq!(code(&run), 2, "{}", run.stderr);
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);
    assert_eq!(code(&gongkai(&["draw", "verify"])), 2);
    assert_eq!(
        code(&gongkai(&[
            "draw",
            "verify",
            path(&missing),
            "--organiser-key",
            "xyz"
        ])),
        2
    );
    simulate(dir.path(), &[]);
    let run = gongkai(&[
        "draw",
        "verify",
        path(&dir.path().join("signed.json")),
        "--private",
        path(&missing),
    ]);
    assert_eq!(code(&run), 2);
}

#[test]
fn private_records_must_match() {
    let dir = tempfile::tempdir().unwrap();
    simulate(dir.path(), &[]);
    let mut private = read_json(&dir.path().join("private.json"));
    private["applications"].as_array_mut().unwrap().pop();
    let edited = dir.path().join("edited-private.json");
    std::fs::write(&edited, serde_json::to_vec(&private).unwrap()).unwrap();
    let run = gongkai(&[
        "draw",
        "verify",
        path(&dir.path().join("signed.json")),
        "--private",
        path(&edited),
    ]);
    assert_eq!(code(&run), 1);
    assert!(run.stdout.contains("(private-records)"), "{}", run.stdout);
}

#[test]
fn receipts_confirm_the_leaf_and_show_the_result() {
    let dir = tempfile::tempdir().unwrap();
    simulate(dir.path(), &[]);
    let signed = dir.path().join("signed.json");
    let private = read_json(&dir.path().join("private.json"));
    let application = &private["applications"][0];
    let field = |name: &str| application[name].as_str().unwrap().to_owned();
    let run = gongkai(&[
        "draw",
        "check-receipt",
        path(&signed),
        "--app",
        &field("app"),
        "--salt",
        &field("salt"),
        "--child-id",
        &field("child_id"),
        "--child-name",
        &field("child_name"),
    ]);
    assert_eq!(code(&run), 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("leaf confirmed"), "{}", run.stdout);
    assert!(run.stdout.contains("lottery number: "), "{}", run.stdout);
    assert!(run.stdout.contains("admitted:"), "{}", run.stdout);

    // The wrong name does not match, and is not echoed.
    let run = gongkai(&[
        "draw",
        "check-receipt",
        path(&signed),
        "--app",
        &field("app"),
        "--salt",
        &field("salt"),
        "--child-id",
        &field("child_id"),
        "--child-name",
        "Somebody Else",
    ]);
    assert_eq!(code(&run), 1);
    assert!(
        !run.stderr.contains("Somebody") && !run.stderr.contains(&field("child_id")),
        "{}",
        run.stderr
    );
}

#[test]
fn countersigning_verifies_first_and_adds_the_notary_signature() {
    let dir = tempfile::tempdir().unwrap();
    simulate(dir.path(), &[]);
    let signed = dir.path().join("signed.json");
    let key = dir.path().join("notary.key");
    let public = gongkai(&["keys", "generate", "--out", path(&key)])
        .stdout
        .trim()
        .to_owned();

    let out = dir.path().join("countersigned.json");
    let run = gongkai(&[
        "draw",
        "countersign",
        path(&signed),
        "--key",
        path(&key),
        "--out",
        path(&out),
    ]);
    assert_eq!(code(&run), 0, "{}\n{}", run.stdout, run.stderr);
    let signatures = read_json(&out)["signatures"].as_array().unwrap().clone();
    assert_eq!(signatures.len(), 2);
    assert_eq!(signatures[1]["role"], "notary");
    assert_eq!(signatures[1]["public_key"], public.as_str());
    let run = gongkai(&["draw", "verify", path(&out), "--notary-key", &public]);
    assert_eq!(code(&run), 0, "{}", run.stdout);
    // Without the countersignature, a verifier that trusts the notary says so.
    let run = gongkai(&["draw", "verify", path(&signed), "--notary-key", &public]);
    assert_eq!(code(&run), 1);

    // In place, and idempotent.
    assert_eq!(
        code(&gongkai(&[
            "draw",
            "countersign",
            path(&signed),
            "--key",
            path(&key)
        ])),
        0
    );
    assert_eq!(read_json(&signed), read_json(&out));
    assert_eq!(
        code(&gongkai(&[
            "draw",
            "countersign",
            path(&signed),
            "--key",
            path(&key)
        ])),
        0
    );
    assert_eq!(
        read_json(&signed)["signatures"].as_array().unwrap().len(),
        2
    );

    // An invalid transcript is refused and left alone.
    let mut value = read_json(&out);
    value["transcript"]["lottery"]
        .as_array_mut()
        .unwrap()
        .swap(0, 1);
    let bad = dir.path().join("bad.json");
    let bad_bytes = serde_json::to_vec(&value).unwrap();
    std::fs::write(&bad, &bad_bytes).unwrap();
    let run = gongkai(&["draw", "countersign", path(&bad), "--key", path(&key)]);
    assert_eq!(code(&run), 1);
    assert!(run.stdout.contains("(lottery)"), "{}", run.stdout);
    assert_eq!(std::fs::read(&bad).unwrap(), bad_bytes);
}

/// A reader that stops early (`| head`, `| true`) ends the tool quietly, as SIGPIPE would,
/// never with a panic and a backtrace.
#[test]
#[cfg(unix)]
fn a_closed_pipe_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    simulate(dir.path(), &[]);
    let signed = dir.path().join("signed.json");
    let bin = crate::support::binary::gongkai_bin();
    // `true` exits without reading; the verification takes long enough that every
    // line is written into a closed pipe.
    let script = format!("'{}' draw verify '{}' | true", bin.display(), path(&signed));
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg(&script);
    let run = run_with_timeout(command, None, Duration::from_secs(120));
    assert!(
        !run.stderr.contains("panicked"),
        "the tool panicked on a closed pipe:\n{}",
        run.stderr
    );
}
