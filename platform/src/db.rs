//! Database connection and migrations. SQLite by default (a file per service, no
//! set-up), PostgreSQL when `DATABASE_URL` says so.
//!
//! The pool is lazy on purpose: the process starts, binds and answers liveness even
//! while the database is still coming up, and readiness turns SERVING only once
//! [`migrate`] has succeeded.
//!
//! The PostgreSQL pool also shrinks on purpose ([`PoolSettings`]): a pool keeps what a
//! burst made it open, and every replica of every service holding its full pool is
//! what exhausts the server's `max_connections` when the deployment scales out.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::settings::{DatabaseSettings, PoolSettings, SecretUrl};

/// Opens a lazy pool for the service named `slug` (used for the default file name).
pub async fn connect(
    settings: &DatabaseSettings,
    slug: &str,
) -> anyhow::Result<DatabaseConnection> {
    let url = settings.url_for(slug)?;
    connect_pool(&url, &settings.pool()).await
}

/// Opens a lazy pool on `url` of at most `max_connections`, shrinking as the
/// `DATABASE_*` defaults say.
pub async fn connect_url(
    url: &SecretUrl,
    max_connections: u32,
) -> anyhow::Result<DatabaseConnection> {
    let pool = PoolSettings {
        max_connections,
        ..PoolSettings::default()
    };
    connect_pool(url, &pool).await
}

/// Opens a lazy pool on `url`, sized and shrunk by `pool` (PostgreSQL only).
pub async fn connect_pool(
    url: &SecretUrl,
    pool: &PoolSettings,
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
        // No minimum: an idle service holds no connection it does not use. Both
        // limits are needed, because sqlx hands out the idle connection that waited
        // longest: the service's own periodic queries (outbox poll, readiness check,
        // reconcilers) cycle through every pooled connection, so after a burst none
        // stays unused for long and the idle timeout alone would keep them all. The
        // lifetime retires them anyway; a replacement is opened only when no idle one
        // is left, so the pool settles at what the load needs at once.
        opts.max_connections(pool.max_connections)
            .min_connections(0)
            .idle_timeout(pool.idle_timeout)
            .max_lifetime(pool.max_lifetime);
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
/// unreachable, and returns how many it applied. Returns `Err` only when `shutdown`
/// fires first.
pub async fn migrate<M: MigratorTrait>(
    db: &DatabaseConnection,
    shutdown: &CancellationToken,
) -> anyhow::Result<usize> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        // Counted first: sea-orm reports each migration on its own line, which the
        // log filter keeps at DEBUG (see `telemetry`); the host says "N applied".
        let applied = async {
            let pending = M::get_pending_migrations(db).await?.len();
            M::up(db, None).await.map(|()| pending)
        };
        match applied.await {
            Ok(n) => return Ok(n),
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
