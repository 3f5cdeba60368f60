//! [`TestDatabase`]: a fresh PostgreSQL database for one test.

use sqlx::{Connection, Executor, PgConnection};

use super::unique_suffix;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database `gongkai_test_<unique>` created on the server named by
/// `GONGKAI_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
/// dropped (best effort) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// URL of the new database.
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates the database; panics (never skips) when PostgreSQL is unreachable.
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let mut connection = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {admin_url}: {e}\n\
                 Start it (./test.sh does) or point GONGKAI_TEST_POSTGRES_URL at a server \
                 where this user may CREATE DATABASE."
            )
        });
        let name = format!("gongkai_test_{}", unique_suffix());
        connection
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin_url}: {e}"));
        let _ = connection.close().await;

        let mut url = reqwest::Url::parse(&admin_url)
            .unwrap_or_else(|e| panic!("GONGKAI_TEST_POSTGRES_URL={admin_url} is not a URL: {e}"));
        url.set_path(&format!("/{name}"));
        TestDatabase {
            url: url.to_string(),
            name,
            admin_url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name);
        // Drop may run inside an async test; use a runtime of our own on its own thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                connection
                    .execute(statement.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = connection.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

fn admin_url() -> String {
    std::env::var("GONGKAI_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}
