//! The store suite: every test runs on SQLite and on PostgreSQL.

use super::testing::TestStore;
use super::*;
use crate::auth::Role;
use crate::domain::event::{EventDraft, EventId, EventInput, EventStatus, Guest};

fn draft(broadcasters: &[&str]) -> EventDraft {
    EventDraft::create(EventInput {
        kind: Some("interview".into()),
        title: Some("区长在线访谈".into()),
        scheduled_start: Some("2026-12-01T09:30:00+08:00".into()),
        scheduled_end: Some("2026-12-01T11:00:00+08:00".into()),
        guests: Some(vec![
            Guest {
                name: "王某".into(),
                title: "区长".into(),
                organisation: "区政府".into(),
            },
            Guest {
                name: "李某".into(),
                title: String::new(),
                organisation: String::new(),
            },
        ]),
        broadcasters: Some(broadcasters.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    })
    .unwrap()
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { let t = super::TestStore::sqlite().await; super::$name(&t.store).await; t.cleanup().await; })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { let t = super::TestStore::postgres().await; super::$name(&t.store).await; t.cleanup().await; })*
        }
    };
}

both_backends!(
    users_roundtrip_with_roles,
    duplicate_username_is_a_conflict,
    password_reset_ends_sessions,
    removing_every_role_revokes_sessions_and_tokens,
    sessions_expire,
    tokens_are_revocable_and_hashed,
    audit_log_keeps_order,
    reopening_is_idempotent_and_newer_schema_is_refused,
    events_roundtrip_and_transitions,
    unknown_staff_leaves_no_half_written_event,
    draw_steps_are_conditional_and_audited,
    draw_applications_are_all_or_nothing,
    duplicate_applications_conflict_until_reviewed,
    opening_day_applications_race_a_close,
    playout_lease_goes_to_one_node,
    recordings_are_listed_in_order_and_finished_in_place,
);

/// PostgreSQL only (it watches `pg_stat_activity`): an import that has checked the draw
/// is open and is still writing when the organiser closes. Another transaction holds back
/// the import's last row (same application code, not yet committed); the close is sent once the import
/// waits on it, and that row is released once the close has finished or waits itself. The
/// import and the close must come out in one order: either the import is refused, or it
/// is stored and audited before the close.
#[tokio::test]
async fn postgres_close_races_an_import() {
    use crate::domain::draw::DrawState::*;
    let t = TestStore::postgres().await;
    let store = t.store.clone();
    store
        .create_draw("d-1", "派位", None, &draw_setup(), "org", 1)
        .await
        .unwrap();
    store
        .draw_step("d-1", (Draft, Open), StepWrite::default(), "org", "", 2)
        .await
        .unwrap();
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO draw_applications (draw_id, app, child_key, sealed, choices, grp, created_at, updated_at)
         VALUES ('d-1', 'ILASTLASTL', 'k-held', 's', '[]', '', 3, 3)",
    )
    .execute(&mut *holder)
    .await
    .unwrap();
    let lock_waiters = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(t.store.pool())
        .await
        .unwrap()
    };
    let batch: Vec<StoredApplication> = (0..50)
        .map(|i| stored(&format!("I{i:09}"), &format!("k-{i}")))
        .chain([stored("ILASTLASTL", "k-last")])
        .collect();
    let import = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .insert_applications("d-1", &batch, true, ("org", "application.import"), 4)
                .await
        }
    });
    let mut polls = 0;
    while lock_waiters().await < 1 {
        polls += 1;
        assert!(polls < 3000, "the import never waited for the held row");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let close = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .draw_step("d-1", (Open, Closed), StepWrite::default(), "org", "", 5)
                .await
        }
    });
    let mut polls = 0;
    while !close.is_finished() && lock_waiters().await < 2 {
        polls += 1;
        assert!(polls < 3000, "the close neither finished nor waited");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    holder.rollback().await.unwrap();
    let imported = import.await.unwrap().unwrap();
    assert!(close.await.unwrap().unwrap(), "the close went through");

    let count = store.application_count("d-1").await.unwrap();
    let actions: Vec<String> = store
        .draw_audit("d-1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    if imported {
        assert_eq!(count, 51);
        assert_eq!(
            actions[actions.len() - 2..],
            ["application.import", "draw.closed"],
            "the import was stored after the close"
        );
    } else {
        assert_eq!(count, 0, "a refused import leaves nothing");
        assert_eq!(actions.last().map(String::as_str), Some("draw.closed"));
    }
    t.cleanup().await;
}

async fn playout_lease_goes_to_one_node(store: &Store) {
    use crate::domain::draw::DrawState::*;
    store
        .create_draw("d-1", "派位", None, &draw_setup(), "org", 1)
        .await
        .unwrap();
    assert!(
        !store.claim_playout("d-1", "a", 10, 0).await.unwrap(),
        "only drawn draws play out"
    );
    for (from, to) in [
        (Draft, Open),
        (Open, Closed),
        (Closed, Announced),
        (Announced, Drawn),
    ] {
        store
            .draw_step("d-1", (from, to), StepWrite::default(), "org", "", 2)
            .await
            .unwrap();
    }
    assert!(store.claim_playout("d-1", "a", 10, 0).await.unwrap());
    assert!(
        !store.claim_playout("d-1", "b", 11, 0).await.unwrap(),
        "a live lease is kept"
    );
    assert!(
        store.claim_playout("d-1", "a", 12, 0).await.unwrap(),
        "the holder renews"
    );
    store.set_draw_played("d-1", 5, "a", 20).await.unwrap();
    store.set_draw_played("d-1", 3, "a", 21).await.unwrap();
    store.set_draw_played("d-1", 9, "b", 22).await.unwrap();
    let draw = store.draw("d-1").await.unwrap().unwrap();
    assert_eq!(
        (draw.played, draw.playout_heartbeat),
        (5, Some(21)),
        "progress never goes back; strangers write nothing"
    );
    assert!(
        store.claim_playout("d-1", "b", 40, 30).await.unwrap(),
        "a stale lease is taken over"
    );
}

fn draw_setup() -> crate::domain::draw::DrawSetup {
    let input = serde_json::from_value(serde_json::json!({
        "draw_id": "d-1", "title": "派位",
        "kindergartens": [{"code": "A", "name": "甲", "seats": 1}],
        "mechanism": "deferred-acceptance", "multiples": "whole-or-skip",
        "witnesses": [{"name": "公证员", "role": "notary"}, {"name": "家长", "role": "parent"}],
        "draw_time": "2027-06-18T09:30:00Z"
    }))
    .unwrap();
    crate::domain::draw::DrawDraft::parse(input, None)
        .unwrap()
        .setup
}

fn stored(app: &str, child_key: &str) -> StoredApplication {
    StoredApplication::new(
        app.into(),
        child_key.into(),
        "sealed".into(),
        r#"[{"kg":"A","class":1}]"#.into(),
        String::new(),
    )
}

async fn draw_steps_are_conditional_and_audited(store: &Store) {
    use crate::domain::draw::DrawState::*;
    let draw = store
        .create_draw("d-1", "派位", None, &draw_setup(), "org", 1)
        .await
        .unwrap();
    assert_eq!(draw.state, Draft);
    assert!(matches!(
        store
            .create_draw("d-1", "again", None, &draw_setup(), "org", 2)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store
            .draw_step("d-1", (Draft, Open), StepWrite::default(), "org", "", 3)
            .await
            .unwrap()
    );
    // The second press of the same button finds the draw moved on.
    assert!(
        !store
            .draw_step("d-1", (Draft, Open), StepWrite::default(), "org2", "", 4)
            .await
            .unwrap()
    );
    assert!(
        store
            .draw_step("d-1", (Open, Closed), StepWrite::default(), "org", "", 5)
            .await
            .unwrap()
    );
    assert!(
        store
            .set_witness_commitment("d-1", 1, 0, "c0", "org", 6)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_witness_commitment("d-1", 1, 7, "c7", "org", 6)
            .await
            .unwrap()
    );
    let write = StepWrite {
        announcement: Some("{}".into()),
        leaves: Some("[]".into()),
        ..StepWrite::default()
    };
    assert!(
        store
            .draw_step("d-1", (Closed, Announced), write, "org", "", 7)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_witness_commitment("d-1", 1, 1, "late", "org", 8)
            .await
            .unwrap(),
        "commitments are fixed once announced"
    );
    assert!(
        store
            .set_witness_secret("d-1", 1, 0, "s0", "w", 9)
            .await
            .unwrap()
    );
    assert!(
        store
            .set_witness_secret("d-1", 1, 0, "s0", "w", 9)
            .await
            .unwrap(),
        "the same reveal again is fine"
    );
    assert!(
        !store
            .set_witness_secret("d-1", 1, 0, "other", "w", 9)
            .await
            .unwrap(),
        "a reveal never changes"
    );
    // Witness 1 never reveals: the draw is void and goes to a new round.
    let draw = store.draw("d-1").await.unwrap().unwrap();
    assert!(
        store
            .void_draw(&draw, "org", "no reveal", 10)
            .await
            .unwrap()
    );
    let draw = store.draw("d-1").await.unwrap().unwrap();
    assert_eq!(
        (draw.state, draw.round, draw.announcement.clone()),
        (Closed, 2, None)
    );
    let witnesses = store.witnesses("d-1", 2).await.unwrap();
    assert!(
        witnesses
            .iter()
            .all(|w| w.commitment.is_none() && !w.revealed)
    );
    let actions: Vec<String> = store
        .draw_audit("d-1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "draw.create",
            "draw.open",
            "draw.closed",
            "witness.commit",
            "draw.announced",
            "witness.reveal",
            "witness.reveal",
            "draw.void"
        ]
    );
}

async fn draw_applications_are_all_or_nothing(store: &Store) {
    use crate::domain::draw::DrawState::*;
    store
        .create_draw("d-1", "派位", None, &draw_setup(), "org", 1)
        .await
        .unwrap();
    assert!(
        !store
            .insert_applications("d-1", &[stored("AAAAAAAAAA", "k1")], false, ("p", "a"), 2)
            .await
            .unwrap(),
        "a draft takes no applications"
    );
    store
        .draw_step("d-1", (Draft, Open), StepWrite::default(), "org", "", 3)
        .await
        .unwrap();
    assert!(
        store
            .insert_applications("d-1", &[stored("AAAAAAAAAA", "k1")], false, ("p", "a"), 4)
            .await
            .unwrap()
    );
    // The organiser's import is exclusive: a child who already applied refuses the batch.
    let batch = [stored("BBBBBBBBBB", "k2"), stored("CCCCCCCCCC", "k1")];
    assert!(matches!(
        store
            .insert_applications("d-1", &batch, true, ("org", "application.import"), 5)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.application_count("d-1").await.unwrap(),
        1,
        "nothing of the bad batch stays"
    );
    let existing = store
        .existing_child_keys("d-1", &["k1".into(), "k9".into()])
        .await
        .unwrap();
    assert_eq!(
        existing.into_iter().collect::<Vec<_>>(),
        vec!["k1".to_string()]
    );
    assert_eq!(
        store
            .applications_by_child("d-1", "k1")
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .delete_applications("d-1", &["AAAAAAAAAA".into()], "p", 6)
            .await
            .unwrap()
    );
    assert_eq!(store.application_count("d-1").await.unwrap(), 0);
}

/// A second application for a child is kept (no oracle), both are in conflict, the
/// organiser's review resolves it, the close is refused while a conflict remains, and
/// every application write and review is audited with application codes only.
async fn duplicate_applications_conflict_until_reviewed(store: &Store) {
    use crate::domain::draw::DrawState::*;
    use crate::domain::review::{Mark, Status, statuses};
    use crate::store::{CloseOutcome, ReviewOutcome};
    store
        .create_draw("d-1", "派位", None, &draw_setup(), "org", 1)
        .await
        .unwrap();
    store
        .draw_step("d-1", (Draft, Open), StepWrite::default(), "org", "", 2)
        .await
        .unwrap();
    let insert = |apps: Vec<StoredApplication>, at: i64| async move {
        store
            .insert_applications("d-1", &apps, false, ("parent", "application.create"), at)
            .await
            .unwrap()
    };
    assert!(insert(vec![stored("AAAAAAAAAA", "k1")], 3).await);
    assert!(
        insert(vec![stored("BBBBBBBBBB", "k1")], 4).await,
        "the same child again is stored, not refused"
    );
    assert!(insert(vec![stored("CCCCCCCCCC", "k2")], 5).await);
    let twins = |app: &str, key: &str| {
        let mut a = stored(app, key);
        a.group = "g-1".into();
        a
    };
    assert!(
        insert(
            vec![twins("DDDDDDDDDD", "k3"), twins("EEEEEEEEEE", "k4")],
            6
        )
        .await
    );
    let status_of = || async {
        let rows = store.applications("d-1").await.unwrap();
        let reviewed: Vec<_> = rows.iter().map(StoredApplication::reviewed).collect();
        let mut all: Vec<(String, Status)> = statuses(&reviewed, true)
            .into_iter()
            .map(|(app, (s, _))| (app, s))
            .collect();
        all.sort();
        all
    };
    assert_eq!(
        status_of().await,
        [
            ("AAAAAAAAAA".into(), Status::Conflict),
            ("BBBBBBBBBB".into(), Status::Conflict),
            ("CCCCCCCCCC".into(), Status::Pending),
            ("DDDDDDDDDD".into(), Status::Pending),
            ("EEEEEEEEEE".into(), Status::Pending),
        ]
    );
    assert_eq!(
        store.close_draw("d-1", "org", 7).await.unwrap(),
        CloseOutcome::Conflicts(2),
        "no close while a conflict remains"
    );
    assert_eq!(store.draw("d-1").await.unwrap().unwrap().state, Open);
    assert_eq!(
        store
            .review_applications("d-1", &["AAAAAAAAAA".into()], &[], false, "org", 8)
            .await
            .unwrap(),
        ReviewOutcome::InConflict(vec!["AAAAAAAAAA".into()]),
        "a verification may not leave a conflict"
    );
    assert_eq!(
        store
            .review_applications("d-1", &["ZZZZZZZZZZ".into()], &[], false, "org", 8)
            .await
            .unwrap(),
        ReviewOutcome::Unknown(vec!["ZZZZZZZZZZ".into()])
    );
    // Verify one, reject the other with a reason, in one review; naming one twin
    // verifies the group.
    assert_eq!(
        store
            .review_applications(
                "d-1",
                &["AAAAAAAAAA".into(), "DDDDDDDDDD".into()],
                &[("BBBBBBBBBB".into(), "户籍材料不符".into())],
                false,
                "org",
                9,
            )
            .await
            .unwrap(),
        ReviewOutcome::Done {
            verified: 3,
            rejected: 1
        }
    );
    let b = store
        .application_by_app("d-1", "BBBBBBBBBB")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.review, b.review_reason.as_deref()),
        (Mark::Rejected, Some("户籍材料不符"))
    );
    // verify_all takes every pending application not in conflict.
    assert!(insert(vec![stored("FFFFFFFFFF", "k5")], 10).await);
    assert!(insert(vec![stored("GGGGGGGGGG", "k5")], 11).await);
    assert_eq!(
        store
            .review_applications("d-1", &[], &[], true, "org", 12)
            .await
            .unwrap(),
        ReviewOutcome::Done {
            verified: 1,
            rejected: 0
        }
    );
    assert_eq!(
        status_of().await,
        [
            ("AAAAAAAAAA".into(), Status::Verified),
            ("BBBBBBBBBB".into(), Status::Rejected),
            ("CCCCCCCCCC".into(), Status::Verified),
            ("DDDDDDDDDD".into(), Status::Verified),
            ("EEEEEEEEEE".into(), Status::Verified),
            ("FFFFFFFFFF".into(), Status::Conflict),
            ("GGGGGGGGGG".into(), Status::Conflict),
        ]
    );
    // A correction sends a verified application back to review.
    assert!(
        store
            .update_application_choices("d-1", &["CCCCCCCCCC".into()], "[]", "parent", 13)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .application_by_app("d-1", "CCCCCCCCCC")
            .await
            .unwrap()
            .unwrap()
            .review,
        Mark::Pending
    );
    // The squatter withdraws: the conflict is gone, the close goes through.
    assert!(
        store
            .delete_applications("d-1", &["GGGGGGGGGG".into()], "parent", 14)
            .await
            .unwrap()
    );
    assert_eq!(
        store.close_draw("d-1", "org", 15).await.unwrap(),
        CloseOutcome::Closed(6)
    );
    assert_eq!(
        store
            .review_applications("d-1", &["FFFFFFFFFF".into()], &[], false, "org", 16)
            .await
            .unwrap(),
        ReviewOutcome::Done {
            verified: 1,
            rejected: 0
        },
        "the review may go on after the close, until the announcement"
    );
    store
        .draw_step(
            "d-1",
            (Closed, Announced),
            StepWrite::default(),
            "org",
            "",
            17,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .review_applications("d-1", &[], &[], true, "org", 18)
            .await
            .unwrap(),
        ReviewOutcome::WrongState
    );
    let audit = store.draw_audit("d-1").await.unwrap();
    let of = |action: &str| -> Vec<String> {
        audit
            .iter()
            .filter(|e| e.action == action)
            .map(|e| e.detail.clone())
            .collect()
    };
    assert_eq!(
        of("application.create")[1],
        "1 application(s): BBBBBBBBBB",
        "every create is audited with its codes"
    );
    assert_eq!(of("application.withdraw"), ["1 application(s): GGGGGGGGGG"]);
    assert_eq!(of("application.correct"), ["1 application(s): CCCCCCCCCC"]);
    assert_eq!(
        of("application.review")[0],
        "verified 3 application(s): AAAAAAAAAA DDDDDDDDDD EEEEEEEEEE; rejected 1 application(s): BBBBBBBBBB"
    );
    assert!(
        audit.iter().all(|e| !e.detail.contains("户籍")),
        "reasons stay out of the audit log"
    );
    assert_eq!(of("draw.closed"), ["6 application(s)"]);
}

/// Opening day: 200 applications from 20 parents at once (each parent's next one sent
/// when the last is answered), 8 at once for one child, corrections and withdrawals, and
/// the organiser closing once half of them are answered. Nothing fails with a database
/// error, every accepted application is stored, nothing is accepted once the close has
/// been answered, and no application write is audited after the close.
async fn opening_day_applications_race_a_close(store: &Store) {
    use crate::domain::draw::DrawState::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

    const PARENTS: usize = 20;
    const EACH: usize = 10;
    store
        .create_draw("d-1", "派位", None, &draw_setup(), "org", 1)
        .await
        .unwrap();
    store
        .draw_step("d-1", (Draft, Open), StepWrite::default(), "org", "", 2)
        .await
        .unwrap();
    let seeded: Vec<String> = (0..20).map(|i| format!("S{i:09}")).collect();
    let seed: Vec<StoredApplication> = seeded
        .iter()
        .enumerate()
        .map(|(i, app)| stored(app, &format!("seed-{i}")))
        .collect();
    assert!(
        store
            .insert_applications("d-1", &seed, true, ("org", "application.import"), 3)
            .await
            .unwrap()
    );

    #[derive(Debug)]
    enum Outcome {
        Stored(String),
        Refused,
        Duplicate,
    }
    let closed = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let half = tokio::sync::Notify::new();
    let errors = std::sync::Mutex::new(Vec::<String>::new());
    let half_way = || {
        if answered.fetch_add(1, SeqCst) + 1 == PARENTS * EACH / 2 {
            half.notify_one();
        }
    };
    // One parent applying for `EACH` children, one after another.
    let parent = |p: usize| {
        let (closed, errors, half_way) = (&closed, &errors, &half_way);
        async move {
            let mut outcomes = Vec::new();
            for c in 0..EACH {
                let app = format!("A{p:04}{c:05}");
                let after_close = closed.load(SeqCst);
                let result = store
                    .insert_applications(
                        "d-1",
                        &[stored(&app, &format!("k-{p}-{c}"))],
                        false,
                        ("parent", "application.create"),
                        10,
                    )
                    .await;
                half_way();
                match result {
                    Ok(true) => {
                        assert!(!after_close, "{app} was stored after the close");
                        outcomes.push(Outcome::Stored(app));
                    }
                    Ok(false) => outcomes.push(Outcome::Refused),
                    Err(e) => errors.lock().unwrap().push(format!("apply {app}: {e}")),
                }
            }
            outcomes
        }
    };
    // Eight tabs applying for the same child.
    let same_child = |i: usize| {
        let errors = &errors;
        async move {
            let app = format!("T{i:09}");
            match store
                .insert_applications(
                    "d-1",
                    &[stored(&app, "k-same")],
                    false,
                    ("parent", "application.create"),
                    10,
                )
                .await
            {
                Ok(true) => Some(Outcome::Stored(app)),
                Ok(false) => Some(Outcome::Refused),
                Err(StoreError::Conflict(_)) => Some(Outcome::Duplicate),
                Err(e) => {
                    errors.lock().unwrap().push(format!("same child: {e}"));
                    None
                }
            }
        }
    };
    // Parents correcting and withdrawing the seeded applications meanwhile.
    let changes = || {
        let (closed, errors, seeded) = (&closed, &errors, &seeded);
        async move {
            let mut withdrawn = Vec::new();
            for (i, app) in seeded.iter().enumerate() {
                let after_close = closed.load(SeqCst);
                let apps = std::slice::from_ref(app);
                let result = if i % 2 == 0 {
                    store
                        .update_application_choices("d-1", apps, "[]", "parent", 10)
                        .await
                } else {
                    store.delete_applications("d-1", apps, "parent", 10).await
                };
                match result {
                    Ok(true) => {
                        assert!(!after_close, "{app} was changed after the close");
                        if i % 2 == 1 {
                            withdrawn.push(app.clone());
                        }
                    }
                    Ok(false) => {}
                    Err(e) => errors.lock().unwrap().push(format!("change {app}: {e}")),
                }
            }
            withdrawn
        }
    };
    let close = async {
        half.notified().await;
        let done = store
            .draw_step("d-1", (Open, Closed), StepWrite::default(), "org", "", 20)
            .await;
        closed.store(true, SeqCst);
        done
    };

    let (parents, same, withdrawn, close) = tokio::join!(
        futures::future::join_all((0..PARENTS).map(parent)),
        futures::future::join_all((0..8).map(same_child)),
        changes(),
        close,
    );
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} of {} writes failed, e.g. {:?}",
        errors.len(),
        PARENTS * EACH + 8 + seeded.len(),
        &errors[..errors.len().min(3)]
    );
    assert!(close.unwrap(), "the close went through");

    let stored_app = |o: &Outcome| match o {
        Outcome::Stored(app) => Some(app.clone()),
        Outcome::Refused | Outcome::Duplicate => None,
    };
    let parents: Vec<Outcome> = parents.into_iter().flatten().collect();
    let same: Vec<Outcome> = same.into_iter().flatten().collect();
    let mut accepted: Vec<String> = parents.iter().filter_map(stored_app).collect();
    assert!(
        accepted.len() >= PARENTS * EACH / 2,
        "the close came once half of the applications were answered: {} stored",
        accepted.len()
    );
    let same_stored: Vec<String> = same.iter().filter_map(stored_app).collect();
    assert!(
        same.iter().all(|o| !matches!(o, Outcome::Duplicate)),
        "a child's second application is kept (in conflict), never refused: {same:?}"
    );
    accepted.extend(same_stored);
    accepted.extend(
        seeded
            .iter()
            .filter(|app| !withdrawn.contains(app))
            .cloned(),
    );
    accepted.sort();
    let in_store: Vec<String> = store
        .applications("d-1")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.app)
        .collect();
    assert_eq!(
        in_store, accepted,
        "exactly the accepted applications are stored"
    );

    let audit = store.draw_audit("d-1").await.unwrap();
    let close_at = audit
        .iter()
        .position(|e| e.action == "draw.closed")
        .unwrap();
    let late: Vec<&str> = audit[close_at..]
        .iter()
        .filter(|e| e.action.starts_with("application."))
        .map(|e| e.action.as_str())
        .collect();
    assert!(late.is_empty(), "written after the close: {late:?}");
}

async fn users_roundtrip_with_roles(store: &Store) {
    let user = store
        .create_user(
            "alice",
            "hash",
            &[Role::Notary, Role::Admin, Role::Admin],
            1,
        )
        .await
        .unwrap();
    assert_eq!(user.roles, vec![Role::Admin, Role::Notary]);
    let (found, hash) = store.user_with_password("alice").await.unwrap().unwrap();
    assert_eq!(found, user);
    assert_eq!(hash, "hash");
    assert!(store.user_with_password("bob").await.unwrap().is_none());
    assert_eq!(
        store
            .set_roles("alice", &[Role::Moderator], 2)
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        store.user_by_id(user.id).await.unwrap().unwrap().roles,
        vec![Role::Moderator]
    );
    assert_eq!(
        store
            .set_roles("nobody", &[Role::Moderator], 2)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

async fn duplicate_username_is_a_conflict(store: &Store) {
    store
        .create_user("alice", "h", &[Role::Admin], 1)
        .await
        .unwrap();
    let err = store
        .create_user("alice", "h2", &[Role::Notary], 2)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("user")), "{err:?}");
    // The failed insert left nothing half-written.
    let (user, hash) = store.user_with_password("alice").await.unwrap().unwrap();
    assert_eq!(hash, "h");
    assert_eq!(user.roles, vec![Role::Admin]);
}

async fn password_reset_ends_sessions(store: &Store) {
    let user = store
        .create_user("alice", "h", &[Role::Admin], 1)
        .await
        .unwrap();
    store
        .create_session("s1", user.id, "c1", 1, 1_000)
        .await
        .unwrap();
    store.create_token(user.id, "ci", "t1", 1).await.unwrap();
    assert!(store.session("s1", 2).await.unwrap().is_some());
    // The user's own change keeps the API tokens they made.
    assert_eq!(
        store
            .set_password("alice", "h2", ApiTokens::Keep, 3)
            .await
            .unwrap(),
        Some(0)
    );
    assert!(store.session("s1", 4).await.unwrap().is_none());
    assert!(store.token_user("t1", 4).await.unwrap().is_some());
    // An administrator's reset revokes them.
    assert_eq!(
        store
            .set_password("alice", "h3", ApiTokens::Revoke, 5)
            .await
            .unwrap(),
        Some(1)
    );
    assert!(store.token_user("t1", 6).await.unwrap().is_none());
    assert_eq!(
        store
            .set_password("nobody", "h", ApiTokens::Revoke, 3)
            .await
            .unwrap(),
        None
    );
}

async fn removing_every_role_revokes_sessions_and_tokens(store: &Store) {
    let user = store
        .create_user("bob", "h", &[Role::Moderator], 1)
        .await
        .unwrap();
    store
        .create_session("s1", user.id, "c1", 1, 1_000)
        .await
        .unwrap();
    store.create_token(user.id, "obs", "t1", 1).await.unwrap();
    // Fewer roles: the token stays (it carries the user's roles at each use).
    store
        .set_roles("bob", &[Role::Broadcaster], 2)
        .await
        .unwrap();
    assert!(store.token_user("t1", 3).await.unwrap().is_some());
    // No role at all: nothing of the account works any more.
    assert_eq!(store.set_roles("bob", &[], 4).await.unwrap(), Some(1));
    assert!(store.token_user("t1", 5).await.unwrap().is_none());
    assert!(store.session("s1", 5).await.unwrap().is_none());
}

async fn sessions_expire(store: &Store) {
    let user = store
        .create_user("alice", "h", &[Role::Admin], 1)
        .await
        .unwrap();
    store
        .create_session("s1", user.id, "c1", 1, 100)
        .await
        .unwrap();
    store
        .create_session("s2", user.id, "c2", 1, 300)
        .await
        .unwrap();
    let s = store.session("s1", 50).await.unwrap().unwrap();
    assert_eq!(s.csrf_token, "c1");
    assert_eq!(s.user.username, "alice");
    assert!(store.session("s1", 100).await.unwrap().is_none());
    assert_eq!(store.delete_expired_sessions(200).await.unwrap(), 1);
    assert!(store.session("s2", 200).await.unwrap().is_some());
    store.delete_session("s2").await.unwrap();
    assert!(store.session("s2", 200).await.unwrap().is_none());
}

async fn tokens_are_revocable_and_hashed(store: &Store) {
    let alice = store
        .create_user("alice", "h", &[Role::Organiser], 1)
        .await
        .unwrap();
    let bob = store
        .create_user("bob", "h", &[Role::Notary], 1)
        .await
        .unwrap();
    let t = store
        .create_token(alice.id, "ci", "hash-a", 5)
        .await
        .unwrap();
    assert_eq!(
        store
            .token_user("hash-a", 6)
            .await
            .unwrap()
            .unwrap()
            .username,
        "alice"
    );
    let listed = store.list_tokens(alice.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(6));
    assert!(
        !store.revoke_token(bob.id, t.id, 7).await.unwrap(),
        "bob cannot revoke alice's token"
    );
    assert!(store.revoke_token(alice.id, t.id, 7).await.unwrap());
    assert!(!store.revoke_token(alice.id, t.id, 8).await.unwrap());
    assert!(store.token_user("hash-a", 9).await.unwrap().is_none());
    assert!(store.list_tokens(alice.id).await.unwrap().is_empty());
}

async fn audit_log_keeps_order(store: &Store) {
    store.audit("alice", "login", "{}", 1).await.unwrap();
    store
        .audit("bob", "token.create", "{\"name\":\"ci\"}", 2)
        .await
        .unwrap();
    let entries = store.recent_audit(10).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].actor, "bob");
    assert_eq!(entries[1].action, "login");
}

async fn reopening_is_idempotent_and_newer_schema_is_refused(store: &Store) {
    // Running the migrations again is a no-op.
    store.migrate().await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (99999, 'future', CURRENT_TIMESTAMP, TRUE, $1, 0)",
    )
    .bind(vec![0u8; 48])
    .execute(store.pool())
    .await
    .unwrap();
    let err = store.migrate().await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99999, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer than this binary"));
}

async fn events_roundtrip_and_transitions(store: &Store) {
    store
        .create_user("bob", "h", &[Role::Broadcaster], 1)
        .await
        .unwrap();
    let id = EventId::generate();
    let event = store
        .create_event(&id, &draft(&["bob"]), "alice", 10)
        .await
        .unwrap();
    assert_eq!(event.status, EventStatus::Scheduled);
    assert_eq!(event.guests.len(), 2);
    assert_eq!(event.guests[0].title, "区长");
    assert_eq!(event.broadcasters, vec!["bob".to_owned()]);
    assert_eq!(event.scheduled_start, "2026-12-01T01:30:00Z");

    let mut edited = EventDraft::from_event(&event);
    edited.guests.truncate(1);
    edited.title = "新标题".into();
    let updated = store.update_event(&id, &edited, 11).await.unwrap();
    assert_eq!(updated.title, "新标题");
    assert_eq!(updated.guests.len(), 1);

    // Only allowed transitions happen, once.
    assert!(
        store
            .set_event_status(&id, &[EventStatus::Live], EventStatus::Ended, 12)
            .await
            .unwrap()
            .is_none()
    );
    let live = store
        .set_event_status(&id, &[EventStatus::Scheduled], EventStatus::Live, 13)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.status, EventStatus::Live);
    assert!(live.started_at.is_some());
    assert!(
        store
            .set_event_status(&id, &[EventStatus::Scheduled], EventStatus::Live, 14)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .list_events(Some(EventStatus::Live), false, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .list_events(Some(EventStatus::Scheduled), false, 10)
            .await
            .unwrap()
            .len(),
        0
    );

    store.set_publish_token(&id, "hash", 15).await.unwrap();
    assert_eq!(
        store.publish_token_hash(&id).await.unwrap().as_deref(),
        Some("hash")
    );
}

async fn unknown_staff_leaves_no_half_written_event(store: &Store) {
    let id = EventId::generate();
    let err = store
        .create_event(&id, &draft(&["nobody"]), "alice", 10)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnknownReference {
                field: "broadcasters",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(store.event(&id).await.unwrap().is_none());
    assert!(store.list_events(None, true, 10).await.unwrap().is_empty());
}

async fn recordings_are_listed_in_order_and_finished_in_place(store: &Store) {
    let id = EventId::parse("rec1").unwrap();
    store
        .create_event(&id, &draft(&[]), "admin", 1)
        .await
        .unwrap();
    let started = |segment: i64| Recording {
        segment,
        file_name: format!("{segment:04}.webm"),
        codecs: "vp8,opus".into(),
        started_ms: 1_000 * segment,
        ended_ms: None,
        duration_ms: 0,
        bytes: 500,
        dropped_packets: 0,
    };
    store.save_recording(&id, &started(2)).await.unwrap();
    store.save_recording(&id, &started(1)).await.unwrap();
    let finished = Recording {
        ended_ms: Some(9_000),
        duration_ms: 7_500,
        bytes: 123_456_789_012,
        dropped_packets: 3,
        ..started(1)
    };
    store.save_recording(&id, &finished).await.unwrap();
    let list = store.recordings(&id).await.unwrap();
    assert_eq!(list, vec![finished.clone(), started(2)]);
    assert_eq!(store.recording(&id, 1).await.unwrap(), Some(finished));
    assert_eq!(store.recording(&id, 3).await.unwrap(), None);
    let unfinished = store.unfinished_recordings().await.unwrap();
    assert_eq!(unfinished, vec![(id.clone(), started(2))]);
    let other = EventId::parse("other").unwrap();
    assert!(store.recordings(&other).await.unwrap().is_empty());
}
