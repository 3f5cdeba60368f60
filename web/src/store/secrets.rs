//! Deployment-wide secrets, created once and shared by all nodes through the database.

use super::{Store, StoreResult};

impl Store {
    /// The secret called `name`, created from `fresh` if it does not exist yet. Two nodes
    /// racing here both end up with the one that was inserted first.
    pub async fn secret_or_create(&self, name: &str, fresh: &str, now: i64) -> StoreResult<String> {
        sqlx::query("INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(fresh)
            .bind(now)
            .execute(&self.pool)
            .await?;
        let value: String = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }
}
