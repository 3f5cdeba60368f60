//! The store suite: every test runs on SQLite and on PostgreSQL.

use super::testing::TestStore;
use super::*;
use crate::auth::Role;

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
