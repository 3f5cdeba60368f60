//! Staff accounts and their roles.

use sqlx::Row;

use super::{Store, StoreError, StoreResult, is_unique_violation};
use crate::auth::Role;

/// A staff member as the rest of the service sees them (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaffUser {
    #[serde(skip)]
    pub id: i64,
    pub username: String,
    pub roles: Vec<Role>,
}

impl StaffUser {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl Store {
    /// Creates a user with the given roles in one transaction.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        roles: &[Role],
        now: i64,
    ) -> StoreResult<StaffUser> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("user")
            } else {
                e.into()
            }
        })?;
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        for role in &roles {
            sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
                .bind(id)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(StaffUser {
            id,
            username: username.to_owned(),
            roles,
        })
    }

    /// The user and their password hash, for login.
    pub async fn user_with_password(
        &self,
        username: &str,
    ) -> StoreResult<Option<(StaffUser, String)>> {
        let row = sqlx::query("SELECT id, password_hash FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.try_get("id")?;
        let hash: String = row.try_get("password_hash")?;
        let roles = self.roles_of(id).await?;
        Ok(Some((
            StaffUser {
                id,
                username: username.to_owned(),
                roles,
            },
            hash,
        )))
    }

    pub async fn user_by_id(&self, id: i64) -> StoreResult<Option<StaffUser>> {
        let username: Option<String> =
            sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(username) = username else {
            return Ok(None);
        };
        let roles = self.roles_of(id).await?;
        Ok(Some(StaffUser {
            id,
            username,
            roles,
        }))
    }

    pub async fn list_users(&self) -> StoreResult<Vec<StaffUser>> {
        let rows = sqlx::query("SELECT id, username FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await?;
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let username: String = row.try_get("username")?;
            users.push(StaffUser {
                id,
                username,
                roles: self.roles_of(id).await?,
            });
        }
        Ok(users)
    }

    /// Replaces the password and ends every session of the user; with
    /// [`ApiTokens::Revoke`] (an administrator's reset: whoever held the account may have
    /// minted tokens) also revokes every API token. `None` when there is no such user,
    /// else how many tokens were revoked.
    pub async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        tokens: ApiTokens,
        now: i64,
    ) -> StoreResult<Option<u64>> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3 RETURNING id",
        )
        .bind(password_hash)
        .bind(now)
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else { return Ok(None) };
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let revoked = match tokens {
            ApiTokens::Keep => 0,
            ApiTokens::Revoke => revoke_tokens(&mut tx, id, now).await?,
        };
        tx.commit().await?;
        Ok(Some(revoked))
    }

    /// Replaces the user's roles; taking every role away also ends the user's sessions
    /// and revokes their API tokens (an account with no role must hold no credential).
    /// `None` when there is no such user, else how many tokens were revoked.
    pub async fn set_roles(
        &self,
        username: &str,
        roles: &[Role],
        now: i64,
    ) -> StoreResult<Option<u64>> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> =
            sqlx::query_scalar("UPDATE users SET updated_at = $1 WHERE username = $2 RETURNING id")
                .bind(now)
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(id) = id else { return Ok(None) };
        sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        for role in &roles {
            sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
                .bind(id)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let mut revoked = 0;
        if roles.is_empty() {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            revoked = revoke_tokens(&mut tx, id, now).await?;
        }
        tx.commit().await?;
        Ok(Some(revoked))
    }

    async fn roles_of(&self, user_id: i64) -> StoreResult<Vec<Role>> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        // Unknown role names (from a newer binary) are ignored rather than fatal.
        let mut roles: Vec<Role> = names.iter().filter_map(|n| n.parse().ok()).collect();
        roles.sort();
        Ok(roles)
    }
}

/// What a password change does to the user's API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiTokens {
    /// The user changed their own password: the tokens they made stay.
    Keep,
    /// An administrator reset it: every token goes.
    Revoke,
}

async fn revoke_tokens(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user_id: i64,
    now: i64,
) -> StoreResult<u64> {
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}
