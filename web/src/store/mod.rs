//! Persistence: one query layer over SQLite (the embedded default) and PostgreSQL.
//!
//! Queries are written once, at run time, through `sqlx::Any`; both dialects accept
//! `$N` placeholders, `RETURNING` and BIGINT millisecond timestamps, which is all this
//! layer relies on. Schema differences live only in `migrations/sqlite` and
//! `migrations/postgres`, embedded into the binary and applied at start.
//!
//! Every transaction that writes is opened with [`Store::begin_write`], which on SQLite
//! begins as a writer (`BEGIN IMMEDIATE`): a deferred transaction that reads and then
//! writes cannot wait for SQLite's write lock (the upgrade fails at once with "database
//! is locked", `busy_timeout` does not apply), while one that takes the lock at `BEGIN`
//! waits its turn.
//!
//! # Layout
//! - `users`: staff accounts and roles
//! - `sessions`: login sessions (only hashes of session tokens are stored)
//! - `tokens`: personal API tokens (hashed)
//! - `events`: live events, guests, assigned staff
//! - `audit`: who did what, when
//! - `draws`: draw ceremonies, sealed applications, witnesses, the draw audit trail
//! - `hub`: the live-event hub's writes, room seeds and the event record
//! - `recordings`: the catalogue of recorded segments

mod audit;
mod draws;
mod events;
mod hub;
mod recordings;
mod secrets;
mod sessions;
mod tokens;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Connection, Executor, Transaction};

pub use audit::AuditEntry;
pub use draws::{
    CloseOutcome, DrawAuditEntry, DrawRow, ReviewOutcome, StepWrite, StoredApplication, WitnessRow,
};
pub use hub::{EventRecord, OfflineAnswer, RecordChat, RecordQuestion, ViewerSample, role_name};
pub use recordings::Recording;
pub use tokens::ApiTokenInfo;
pub use users::{ApiTokens, StaffUser};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error(
        "database schema version {found} is newer than this binary understands (up to {known}); run a newer gongkai"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{field}: no such user `{value}`")]
    UnknownReference { field: &'static str, value: String },
    #[error("{0}")]
    Setup(String),
}

impl From<StoreError> for crate::error::ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                crate::error::ApiError::Conflict(format!("{what} already exists"))
            }
            StoreError::UnknownReference { field, value } => crate::error::ApiError::validation(
                field,
                format!("{field}: no such user `{value}`"),
            ),
            other => crate::error::ApiError::Unexpected(anyhow::Error::new(other)),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects (creating a SQLite file and its directory when needed), refuses a schema
    /// newer than this binary, and applies pending migrations.
    pub async fn open(url: &str) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = normalise_url(url)?;
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during writes; foreign keys are off by
                        // default in SQLite.
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction that will write. On SQLite it takes the database's write lock
    /// at once (`BEGIN IMMEDIATE`), waiting up to `busy_timeout` for another writer to
    /// finish, so no statement inside can fail with "database is locked"; writers queue
    /// instead of failing. On PostgreSQL a plain `BEGIN` (row locks do the queueing).
    /// Dropping the transaction without committing rolls it back, as with `begin`.
    pub(crate) async fn begin_write(&self) -> StoreResult<Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// `SELECT 1` through the pool: what `/readyz` means by "database reachable".
    pub async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    /// (open connections, idle connections) for `/metrics`.
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    async fn migrate(&self) -> StoreResult<()> {
        let migrator = self.migrator();
        let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        // Fails on a fresh database (no migrations table yet): nothing applied.
        let applied: Option<i64> = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE",
        )
        .fetch_one(&self.pool)
        .await
        .ok()
        .flatten();
        if let Some(found) = applied
            && found > known
        {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        migrator.run(&self.pool).await?;
        Ok(())
    }
}

/// Picks the backend from the URL; for SQLite creates the file's directory and asks
/// for the file to be created.
fn normalise_url(url: &str) -> StoreResult<(Backend, String)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned()));
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(StoreError::Setup(format!(
            "unsupported database URL scheme (use sqlite:// or postgres://): {}",
            url.split(':').next().unwrap_or("")
        )));
    };
    let path_part = rest.trim_start_matches("//");
    let (path, query) = match path_part.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_part, None),
    };
    if path != ":memory:"
        && let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Setup(format!(
                "cannot create database directory {}: {e}",
                parent.display()
            ))
        })?;
    }
    if path != ":memory:" {
        private_database_files(Path::new(path)).map_err(|e| {
            StoreError::Setup(format!("cannot protect the database file {path}: {e}"))
        })?;
    }
    let query = match query {
        Some(q) if q.contains("mode=") => q.to_owned(),
        Some(q) => format!("{q}&mode=rwc"),
        None => "mode=rwc".to_owned(),
    };
    Ok((Backend::Sqlite, format!("sqlite://{path}?{query}")))
}

/// Creates `dir` (and its parents) readable by this user only, whatever the umask, and
/// tightens an existing one that others could read: it holds the database, the keys and
/// the recordings.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::info!(dir = %dir.display(), "data directory made private (0700)");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The SQLite database file is created 0600 before SQLite opens it (SQLite gives its
/// `-wal` and `-shm` files the database file's mode); existing ones are tightened. The
/// database holds the grant key and sessions.
fn private_database_files(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(db)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        match std::fs::metadata(file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch: the one time format stored.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation)
                || db.message().contains("UNIQUE constraint failed")
                || db.code().as_deref() == Some("23505")
        }
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
