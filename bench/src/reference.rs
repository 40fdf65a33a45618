//! The reference step: before the load, what this machine allows at best, so the
//! system's figures can be read as ratios that travel between machines. Two floors:
//!
//! - a bare tonic unary round trip: the gRPC health service (no new proto) served
//!   in-process on loopback, called at concurrency 1 (its p50 is the floor of any
//!   RPC's latency) and at [`ECHO_CONCURRENCY`] over the load's connection count
//!   (its rate is what tonic alone manages on this machine);
//! - single-row PostgreSQL commits on a scratch table of a fresh database, on 1 and
//!   on [`PG_CONNECTIONS`] connections: every PlaceOrder commits at least once in
//!   order-svc and its events commit again downstream, so commits/s bounds orders/s.
//!
//! Each measurement runs for `--reference-duration` and at most [`MAX_CALLS`]
//! calls. A reference that cannot be measured (no PostgreSQL) is reported as
//! missing, never as a failed run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::{Channel, Server, server::TcpIncoming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::load::histogram;
use crate::report::Percentiles;

/// Concurrent echo callers for the throughput figure: enough to keep two cores busy.
pub const ECHO_CONCURRENCY: usize = 32;
/// Connections for the concurrent commit figure: about what the four services' pools
/// hold busy together under load.
pub const PG_CONNECTIONS: u32 = 8;
/// Calls per measurement at most, whatever the duration.
const MAX_CALLS: u64 = 1_000_000;

/// The reference figures.
#[derive(Debug, serde::Serialize)]
pub struct Reference {
    /// How long each measurement ran.
    pub seconds_each: f64,
    /// Echo round trips at concurrency 1.
    pub echo_latency_ms: Percentiles,
    pub echo_concurrency: usize,
    /// Echo round trips per second at `echo_concurrency`.
    pub echo_per_second: f64,
    /// PostgreSQL, or `None` (with the reason in `pg_missing`) when it could not be
    /// measured.
    pub pg: Option<PgReference>,
    pub pg_missing: Option<String>,
}

/// Single-row commits on PostgreSQL.
#[derive(Debug, serde::Serialize)]
pub struct PgReference {
    /// Commit latency on one connection.
    pub commit_latency_ms: Percentiles,
    pub commits_per_second_1: f64,
    pub connections: u32,
    pub commits_per_second_n: f64,
}

/// Measures both references, `each` per measurement.
pub async fn measure(each: Duration) -> anyhow::Result<Reference> {
    let (echo_latency, echo_per_second) = echo(each).await?;
    // testkit's database helpers panic on failure (they are test helpers); a task
    // turns that into a missing figure.
    let (pg, pg_missing) = match tokio::spawn(postgres(each)).await {
        Ok(Ok(pg)) => (Some(pg), None),
        Ok(Err(e)) => (None, Some(format!("{e:#}"))),
        Err(e) => (None, Some(format!("PostgreSQL unavailable ({e})"))),
    };
    Ok(Reference {
        seconds_each: each.as_secs_f64(),
        echo_latency_ms: Percentiles::of(&echo_latency),
        echo_concurrency: ECHO_CONCURRENCY,
        echo_per_second,
        pg,
        pg_missing,
    })
}

/// The echo latency at concurrency 1, and the rate at [`ECHO_CONCURRENCY`].
async fn echo(each: Duration) -> anyhow::Result<(Histogram<u64>, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The services serve with TCP_NODELAY too; without it the figure would
    // include Nagle's delay, which they never pay.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tokio::spawn(
        Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    let channels: Vec<Channel> = (0..crate::target::CONNECTIONS)
        .map(|_| Channel::from_shared(format!("http://{addr}")).map(|e| e.connect_lazy()))
        .collect::<Result<_, _>>()?;
    let call = |channel: Channel| async move {
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
    };
    // Connect and warm up first: the figure is the steady round trip.
    for ch in &channels {
        call(ch.clone()).await?;
    }

    let single = run_for(each, 1, {
        let ch = channels[0].clone();
        move |_| {
            let ch = ch.clone();
            async move { call(ch).await.is_ok() }
        }
    })
    .await;
    let concurrent = run_for(each, ECHO_CONCURRENCY, {
        let channels = channels.clone();
        move |worker| {
            let ch = channels[worker % channels.len()].clone();
            async move { call(ch).await.is_ok() }
        }
    })
    .await;
    let _ = stop.send(());
    let _ = server.await;
    Ok((single.latency, concurrent.per_second))
}

/// Single-row commits on a scratch table of a fresh database, dropped afterwards.
async fn postgres(each: Duration) -> anyhow::Result<PgReference> {
    let database = testkit::TestDatabase::create(testkit::Backend::Postgres).await;
    let result = commits(database.url(), each).await;
    database.drop_database().await;
    result
}

async fn commits(url: &str, each: Duration) -> anyhow::Result<PgReference> {
    let pool = |n: u32| {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(n)
            .min_connections(n)
            .sqlx_logging(false);
        Database::connect(opts)
    };
    let one = pool(1).await?;
    one.execute_unprepared(
        "CREATE TABLE reference_commits (id bigserial PRIMARY KEY, \
         at timestamptz NOT NULL DEFAULT now(), payload text NOT NULL)",
    )
    .await?;
    let insert = |db: DatabaseConnection| async move {
        // One autocommitted statement: one transaction, one WAL flush.
        db.execute_unprepared("INSERT INTO reference_commits (payload) VALUES ('x')")
            .await
            .is_ok()
    };
    let single = run_for(each, 1, {
        let db = one.clone();
        move |_| insert(db.clone())
    })
    .await;
    one.close().await?;
    let many = pool(PG_CONNECTIONS).await?;
    let concurrent = run_for(each, PG_CONNECTIONS as usize, {
        let db = many.clone();
        move |_| insert(db.clone())
    })
    .await;
    many.close().await?;
    anyhow::ensure!(
        single.failed == 0 && concurrent.failed == 0,
        "{} PostgreSQL commits failed",
        single.failed + concurrent.failed
    );
    Ok(PgReference {
        commit_latency_ms: Percentiles::of(&single.latency),
        commits_per_second_1: single.per_second,
        connections: PG_CONNECTIONS,
        commits_per_second_n: concurrent.per_second,
    })
}

/// What [`run_for`] measured.
struct Measured {
    latency: Histogram<u64>,
    per_second: f64,
    failed: u64,
}

/// Runs `call(worker)` in a closed loop on `workers` tasks for `each` (at most
/// [`MAX_CALLS`] calls); `call` says whether it succeeded.
async fn run_for<F, Fut>(each: Duration, workers: usize, call: F) -> Measured
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let start = Instant::now();
    let deadline = start + each;
    let calls = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for worker in 0..workers {
        let (call, calls, failed) = (call.clone(), calls.clone(), failed.clone());
        tasks.spawn(async move {
            let mut latency = histogram();
            while Instant::now() < deadline && calls.fetch_add(1, Ordering::Relaxed) < MAX_CALLS {
                let sent = Instant::now();
                if !call(worker).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                latency.saturating_record((sent.elapsed().as_micros() as u64).max(1));
            }
            latency
        });
    }
    let mut latency = histogram();
    while let Some(done) = tasks.join_next().await {
        if let Ok(h) = done {
            let _ = latency.add(h);
        }
    }
    Measured {
        per_second: latency.len() as f64 / start.elapsed().as_secs_f64(),
        latency,
        failed: failed.load(Ordering::Relaxed),
    }
}
