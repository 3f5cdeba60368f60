//! Fresh stores for tests: a temporary SQLite file, or a new PostgreSQL database on the
//! server at `GONGKAI_TEST_POSTGRES_URL` (default the local `test` database). PostgreSQL
//! being unreachable fails the test loudly: the suite must run on both backends.

use sqlx::{Connection, Executor};

use super::Store;

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct TestStore {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    drop_db: Option<(String, String)>,
}

impl TestStore {
    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let store = Store::open(&url).await.expect("open sqlite store");
        TestStore {
            store,
            _dir: Some(dir),
            drop_db: None,
        }
    }

    pub async fn postgres() -> TestStore {
        let base = std::env::var("GONGKAI_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = format!("gongkai_t_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {base} is unreachable ({e}); the store suite needs it (set GONGKAI_TEST_POSTGRES_URL)")
        });
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let url = replace_database(&base, &name);
        let store = Store::open(&url).await.expect("open postgres store");
        TestStore {
            store,
            _dir: None,
            drop_db: Some((base, name)),
        }
    }

    /// Closes the pool and drops a PostgreSQL test database.
    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some((base, name)) = self.drop_db
            && let Ok(mut admin) = sqlx::PgConnection::connect(&base).await
        {
            let _ = admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
        }
    }
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}
