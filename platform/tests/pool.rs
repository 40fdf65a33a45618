//! The PostgreSQL pool gives back what a burst made it open (`platform::db`): a burst
//! grows it to its maximum, and PostgreSQL's own `pg_stat_activity` shows the
//! connections to the test's database go away again once they idle past
//! `DATABASE_IDLE_TIMEOUT`, or, under steady light use that keeps touching every one
//! of them, once they outlive `DATABASE_MAX_LIFETIME`.

use std::time::{Duration, Instant};

use platform::settings::PoolSettings;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use testkit::{Backend, PgSessions, TestDatabase};
use tokio_util::sync::CancellationToken;

/// How many connections the burst needs at once.
const BURST: u32 = 8;

/// The test database's name: the last path segment of its URL.
fn database_name(db: &TestDatabase) -> String {
    db.url()
        .rsplit('/')
        .next()
        .expect("database name")
        .to_owned()
}

/// Holds `BURST` connections at once: each query sleeps long enough for all of them
/// to overlap, so the pool has to open one per query.
async fn burst(pool: &DatabaseConnection) {
    let queries = (0..BURST).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.execute_unprepared("SELECT pg_sleep(0.5)")
                .await
                .expect("burst query")
        })
    });
    for q in futures::future::join_all(queries).await {
        q.expect("burst task");
    }
}

/// Queries every `every` until `stop`, like a service's outbox poll and readiness
/// check: never more than one connection at a time.
fn steady_use(
    pool: &DatabaseConnection,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let pool = pool.clone();
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            pool.execute_unprepared("SELECT 1")
                .await
                .expect("steady query");
            tokio::time::sleep(every).await;
        }
    })
}

/// Polls the session count until `done` holds or `within` passes; returns the last
/// count and how long it took.
async fn sessions_until(
    admin: &PgSessions,
    database: &str,
    within: Duration,
    done: impl Fn(i64) -> bool,
) -> (i64, Duration) {
    let start = Instant::now();
    loop {
        let n = admin.on(database).await;
        if done(n) || start.elapsed() >= within {
            return (n, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn grown_pool(pool: &PoolSettings) -> (TestDatabase, DatabaseConnection, String) {
    let db = TestDatabase::create(Backend::Postgres).await;
    let conn = platform::db::connect_pool(&db.url().parse().expect("url"), pool)
        .await
        .expect("pool");
    burst(&conn).await;
    let name = database_name(&db);
    (db, conn, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_grown_by_a_burst_closes_its_connections_after_the_idle_timeout() {
    // Arrange: a burst grows the pool to its maximum.
    let settings = PoolSettings {
        max_connections: BURST,
        idle_timeout: Duration::from_secs(1),
        max_lifetime: Duration::from_secs(3600),
    };
    let (db, pool, name) = grown_pool(&settings).await;
    let admin = PgSessions::connect().await;
    let after_burst = admin.on(&name).await;
    let sqlx_pool = pool.get_postgres_connection_pool();
    eprintln!(
        "after the burst: pool size {}, idle {}, pg_stat_activity {after_burst}",
        sqlx_pool.size(),
        sqlx_pool.num_idle()
    );
    assert_eq!(
        after_burst,
        i64::from(BURST),
        "the burst opened one connection per query"
    );

    // Act: nothing uses the pool. sqlx checks idleness once per idle timeout, so a
    // connection may live up to twice the timeout; 10 s is ample.
    let (left, took) = sessions_until(&admin, &name, Duration::from_secs(10), |n| n == 0).await;

    // Assert
    eprintln!(
        "after {took:?} idle: pool size {}, pg_stat_activity {left}",
        sqlx_pool.size()
    );
    assert_eq!(left, 0, "idle connections closed within 10 s");
    assert!(
        took >= Duration::from_millis(900),
        "closed by the idle timeout, not at once ({took:?})"
    );
    pool.close().await.expect("close");
    db.drop_database().await;
}

/// The reason `DATABASE_MAX_LIFETIME` exists: sqlx hands out the idle connection that
/// waited longest, so one query every 50 ms cycles through all eight connections and
/// none of them ever idles for the timeout's full second. If this starts failing,
/// sqlx reuses connections most-recent-first and the lifetime is no longer needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_light_use_keeps_a_grown_pool_from_idling_out() {
    let settings = PoolSettings {
        max_connections: BURST,
        idle_timeout: Duration::from_secs(1),
        max_lifetime: Duration::from_secs(3600),
    };
    let (db, pool, name) = grown_pool(&settings).await;
    let admin = PgSessions::connect().await;
    let stop = CancellationToken::new();
    let user = steady_use(&pool, Duration::from_millis(50), stop.clone());

    tokio::time::sleep(Duration::from_secs(4)).await;
    let left = admin.on(&name).await;

    stop.cancel();
    user.await.expect("steady use");
    eprintln!("after 4 s of one query per 50 ms with a 1 s idle timeout: pg_stat_activity {left}");
    assert!(
        left > i64::from(BURST) / 2,
        "the idle timeout alone did not shrink the pool much ({left} left)"
    );
    pool.close().await.expect("close");
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_light_use_the_max_lifetime_shrinks_a_grown_pool() {
    // Arrange: a burst, then one query every 50 ms (as above).
    let settings = PoolSettings {
        max_connections: BURST,
        idle_timeout: Duration::from_secs(1),
        max_lifetime: Duration::from_secs(2),
    };
    let (db, pool, name) = grown_pool(&settings).await;
    let admin = PgSessions::connect().await;
    let after_burst = admin.on(&name).await;
    assert_eq!(after_burst, i64::from(BURST));
    let stop = CancellationToken::new();
    let user = steady_use(&pool, Duration::from_millis(50), stop.clone());

    // Act: wait for the burst's connections to outlive their lifetime. One query at
    // a time needs one connection; a second may be opening while the first closes.
    let (left, took) = sessions_until(&admin, &name, Duration::from_secs(10), |n| n <= 2).await;

    // Assert
    eprintln!(
        "under one query per 50 ms, after {took:?}: pool size {}, pg_stat_activity {left} (from {after_burst})",
        pool.get_postgres_connection_pool().size()
    );
    assert!(
        left <= 2,
        "the pool shrank to what one query at a time needs ({left} left)"
    );
    stop.cancel();
    user.await.expect("steady use");
    pool.close().await.expect("close");
    db.drop_database().await;
}
