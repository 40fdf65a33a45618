//! Database connection and migrations. SQLite by default (a file per service, no
//! set-up), PostgreSQL when `DATABASE_URL` says so.
//!
//! The pool is lazy on purpose: the process starts, binds and answers liveness even
//! while the database is still coming up, and readiness turns SERVING only once
//! [`migrate`] has succeeded.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::settings::{DatabaseSettings, SecretUrl};

/// Opens a lazy pool for the service named `slug` (used for the default file name).
pub async fn connect(
    settings: &DatabaseSettings,
    slug: &str,
) -> anyhow::Result<DatabaseConnection> {
    let url = settings.url_for(slug)?;
    connect_url(&url, settings.database_max_connections).await
}

/// Opens a lazy pool on `url`.
pub async fn connect_url(
    url: &SecretUrl,
    max_connections: u32,
) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.expose().to_owned());
    opts.connect_lazy(true)
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10));
    if url.scheme() == "sqlite" {
        ensure_parent_dir(url)?;
        // One connection: SQLite has a single writer, and a pool of several turns
        // read-then-write transactions into SQLITE_BUSY errors under load. WAL keeps
        // readers of other processes (tests, sqlite3 CLI) from blocking it.
        opts.max_connections(1)
            .min_connections(0)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
    } else {
        opts.max_connections(max_connections).min_connections(0);
    }
    Database::connect(opts)
        .await
        .map_err(|e| anyhow::anyhow!("DATABASE_URL {url}: {e}"))
}

fn ensure_parent_dir(url: &SecretUrl) -> anyhow::Result<()> {
    let raw = url.expose();
    let path = raw
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("DATA_DIR: cannot create {}: {e}", parent.display()))?;
    }
    Ok(())
}

/// Runs the migrations of `M`, retrying with backoff while the database is
/// unreachable. Returns `Err` only when `shutdown` fires first.
pub async fn migrate<M: MigratorTrait>(
    db: &DatabaseConnection,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match M::up(db, None).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let delay = backoff.next_delay();
                // Loud at first and then every 20 tries, so a pod stuck NOT_SERVING
                // says why in its recent logs.
                if backoff.attempts() % 20 == 1 {
                    tracing::warn!(error = %e, attempts = backoff.attempts(), "database not ready; retrying migrations");
                } else {
                    tracing::debug!(error = %e, ?delay, "migrations still failing");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => anyhow::bail!("shut down before the database was ready"),
                }
            }
        }
    }
}

/// Whether the connection uses PostgreSQL (row locks with SKIP LOCKED are available).
pub fn is_postgres(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}
