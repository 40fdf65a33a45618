//! Fresh databases per test: a SQLite file in a temporary directory, or a new
//! PostgreSQL database created on the local server and dropped at the end.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// Which database engine a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
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

    /// Drops a PostgreSQL database (best effort); SQLite files go with the temp dir.
    pub async fn drop_database(mut self) {
        if let Some(name) = self.pg_name.take() {
            drop_pg(&name).await;
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
