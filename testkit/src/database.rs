//! Fresh databases per test: a SQLite file in a temporary directory, or a new
//! PostgreSQL database created on the local server and dropped at the end; reading
//! back what a service stored there; and [`on_both_backends!`](crate::on_both_backends),
//! which runs a test once per engine.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait};

/// Which database engine a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates a `sqlite` and a `postgres` test for each listed `async fn(Backend)`, in
/// a module named after it (so `cargo nextest run -E 'test(/name/)'` picks both).
/// The calling crate needs `tokio` with its `macros` feature.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A database that exists only for one test.
pub struct TestDatabase {
    url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

/// Drops PostgreSQL database `name` (best effort).
async fn drop_pg(name: &str) {
    if let Ok(admin) = Database::connect(format!("{}/postgres", postgres_server_url())).await {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
        let _ = admin.close().await;
    }
}

/// Server URL of the test PostgreSQL, without a database name
/// (`TEST_POSTGRES_URL`, default the local trust-auth server).
pub fn postgres_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Counts the PostgreSQL server's sessions per database, as an operator would read
/// them in `pg_stat_activity`. It asks from the maintenance database, so the
/// question never counts itself.
pub struct PgSessions {
    admin: DatabaseConnection,
}

impl PgSessions {
    /// Connects to the maintenance database of the test server.
    pub async fn connect() -> Self {
        let admin = Database::connect(format!("{}/postgres", postgres_server_url()))
            .await
            .expect("connect to the maintenance database");
        Self { admin }
    }

    /// Sessions open on `database` now.
    pub async fn on(&self, database: &str) -> i64 {
        let row = self
            .admin
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1",
                [database.into()],
            ))
            .await
            .expect("read pg_stat_activity")
            .expect("one row");
        row.try_get("", "n").expect("count")
    }
}

impl TestDatabase {
    /// Creates a fresh database on `backend`.
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Self {
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let name = Self::unique_pg_name();
                Self::create_pg(&name).await;
                Self {
                    url: format!("{}/{name}", postgres_server_url()),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }

    /// A PostgreSQL URL whose database does not exist yet; [`TestDatabase::create_pg`]
    /// makes it later (to test start-up before the database is there).
    pub fn unique_pg_name() -> String {
        format!("t_{}", uuid::Uuid::now_v7().simple())
    }

    /// Creates the PostgreSQL database `name`.
    pub async fn create_pg(name: &str) {
        let admin = Database::connect(format!("{}/postgres", postgres_server_url()))
            .await
            .expect("connect to PostgreSQL maintenance database");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        let _ = admin.close().await;
    }

    /// A handle for a database created elsewhere (see [`TestDatabase::unique_pg_name`]).
    pub fn adopt_pg(name: String) -> Self {
        Self {
            url: format!("{}/{name}", postgres_server_url()),
            pg_name: Some(name),
            _dir: None,
        }
    }

    /// The URL to give a service as `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection for assertions on what the service stored.
    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(self.url.as_str())
            .await
            .expect("connect to test database")
    }

    /// Every row of entity `E`, read on a connection of its own.
    pub async fn rows<E: EntityTrait>(&self) -> Vec<E::Model> {
        let conn = self.connect().await;
        let rows = E::find().all(&conn).await.expect("read rows");
        let _ = conn.close().await;
        rows
    }

    /// Rows still waiting in the service's outbox (`platform::outbox`).
    pub async fn outbox_len(&self) -> u64 {
        let conn = self.connect().await;
        let n = platform::outbox::entity::Entity::find()
            .count(&conn)
            .await
            .expect("count outbox rows");
        let _ = conn.close().await;
        n
    }

    /// Waits until the outbox is empty. The relay deletes a row only once the broker
    /// confirmed its event, and a confirm means the queues hold it: after this, every
    /// event the service committed so far can be read from the broker.
    ///
    /// # Panics
    /// If rows remain after 20 s.
    pub async fn wait_outbox_drained(&self) {
        crate::wait_until("the outbox drained", Duration::from_secs(20), || async {
            (self.outbox_len().await == 0).then_some(())
        })
        .await;
    }

    /// Drops a PostgreSQL database (best effort); SQLite files go with the temp dir.
    pub async fn drop_database(mut self) {
        if let Some(name) = self.pg_name.take() {
            drop_pg(&name).await;
        }
    }
}

/// Runs a write through a test's own connection until it succeeds, up to 50 tries
/// 20 ms apart. On SQLite that connection competes with the service's own one, and a
/// write that lost the race (SQLITE_BUSY_SNAPSHOT) is simply tried again.
///
/// # Panics
/// With `what` and the last error, if every try failed.
pub async fn retry_write<T, E, F, Fut>(what: &str, mut write: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut tries = 0;
    loop {
        match write().await {
            Ok(v) => return v,
            Err(e) if tries < 50 => {
                tries += 1;
                tracing::debug!(error = ?e, what, "retrying a test write");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

impl Drop for TestDatabase {
    /// A test that panicked (or forgot) still drops its PostgreSQL database. Drop
    /// cannot await, so a short-lived thread with its own runtime does it.
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_pg(&name));
            }
        })
        .join();
    }
}
