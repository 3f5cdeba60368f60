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
    sessions_expire,
    tokens_are_revocable_and_hashed,
    audit_log_keeps_order,
    reopening_is_idempotent_and_newer_schema_is_refused,
    events_roundtrip_and_transitions,
    unknown_staff_leaves_no_half_written_event,
);

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
    assert!(
        store
            .set_roles("alice", &[Role::Moderator], 2)
            .await
            .unwrap()
    );
    assert_eq!(
        store.user_by_id(user.id).await.unwrap().unwrap().roles,
        vec![Role::Moderator]
    );
    assert!(
        !store
            .set_roles("nobody", &[Role::Moderator], 2)
            .await
            .unwrap()
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
    assert!(store.session("s1", 2).await.unwrap().is_some());
    assert!(store.set_password("alice", "h2", 3).await.unwrap());
    assert!(store.session("s1", 4).await.unwrap().is_none());
    assert!(!store.set_password("nobody", "h", 3).await.unwrap());
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
