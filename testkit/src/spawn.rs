//! Services in-process for integration tests: the real settings parsed from real
//! flags with the test's overrides ([`ServiceFlags`]), the real `start` function on
//! port 0, and a wait until readiness says SERVING ([`spawn`]). The result,
//! [`Spawned`], stops the service gracefully and checks that it stopped cleanly.
//!
//! testkit knows no service crate (each service dev-depends on testkit, and order-svc
//! and reservation-svc also run payment-svc): a service is handed in as its
//! readiness name, its settings and its `start` function, so no crate cycle arises
//! and a change to one service's code does not rebuild testkit.

use std::future::Future;
use std::net::SocketAddr;

use platform::RunningService;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::{Backend, TestDatabase};

/// A service's command line in a test: the flags every service shares, pointed at
/// the test's own database and broker names, plus the flags a test adds.
pub struct ServiceFlags {
    args: Vec<String>,
}

impl ServiceFlags {
    /// Port 0, `database_url`, the topology of `exchange`, on the test broker
    /// ([`crate::amqp_url`]).
    pub fn new(database_url: &str, exchange: &str) -> Self {
        Self::with_amqp(database_url, exchange, &crate::amqp_url())
    }

    /// Like [`ServiceFlags::new`], reaching the broker at `amqp_url` (through a
    /// proxy, say).
    pub fn with_amqp(database_url: &str, exchange: &str, amqp_url: &str) -> Self {
        let args = [
            "--grpc-addr",
            "127.0.0.1:0",
            "--database-url",
            database_url,
            "--events-exchange",
            exchange,
            "--amqp-url",
            amqp_url,
            // Events leave the outbox within a test's patience (default 1s).
            "--outbox-poll-interval",
            "200ms",
            // A service that fails to drain fails its test rather than stalling it.
            "--shutdown-grace",
            "5s",
        ];
        Self {
            args: args.map(str::to_owned).to_vec(),
        }
    }

    /// Adds `args` after the ones already there.
    pub fn args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The settings the binary would parse from these flags (`S` names the binary).
    /// Also turns on test logging (`TEST_LOG`), since a service is about to start.
    ///
    /// # Panics
    /// If the service rejects the flags.
    pub fn parse<S: clap::Parser>(self) -> S {
        platform::telemetry::init_for_tests();
        let binary = S::command().get_name().to_owned();
        S::try_parse_from(std::iter::once(binary.clone()).chain(self.args))
            .unwrap_or_else(|e| panic!("test settings of {binary} parse: {e}"))
    }
}

/// A service started by [`spawn`], ready. Stop it with [`Spawned::stop`]: a test
/// that does not (it panicked) leaves it to the end of the test's runtime.
pub struct Spawned {
    /// Where it listens.
    pub addr: SocketAddr,
    /// A connected channel to it, without credentials.
    pub channel: Channel,
    /// Where it serves metrics, when its flags asked for them (`--metrics-addr`).
    pub metrics_addr: Option<SocketAddr>,
    /// Its readiness name, for messages.
    name: &'static str,
    shutdown: CancellationToken,
    running: RunningService,
}

/// Starts a service with `start(settings, shutdown)` and waits until the
/// readiness of `name` (its gRPC service name) says SERVING.
///
/// # Panics
/// If it does not start, or is not ready within [`crate::health::READY_TIMEOUT`].
pub async fn spawn<S, F, Fut>(name: &'static str, settings: S, start: F) -> Spawned
where
    F: FnOnce(S, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<RunningService>>,
{
    let shutdown = CancellationToken::new();
    let running = start(settings, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e:?}"));
    let channel = connect(running.local_addr).await;
    crate::health::wait_ready(&channel, name).await;
    Spawned {
        addr: running.local_addr,
        metrics_addr: running.metrics_addr,
        channel,
        name,
        shutdown,
        running,
    }
}

impl Spawned {
    /// `http://<addr>`, for another service's settings.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the graceful shutdown without waiting for it ([`Spawned::stop`] waits).
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Shuts the service down gracefully and waits until it has stopped.
    ///
    /// # Panics
    /// If it did not stop cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.running
            .wait()
            .await
            .unwrap_or_else(|e| panic!("{} stopped cleanly: {e:?}", self.name));
    }
}

/// A service a test runs beside the one it tests (payment-svc, for order-svc and
/// reservation-svc): spawned and ready, on a fresh database of its own.
pub struct Dependency {
    pub service: Spawned,
    pub db: TestDatabase,
}

impl Dependency {
    /// Creates a database on `backend`, then [`spawn`]s the service on it and on the
    /// topology of `exchange`, with the flags of [`ServiceFlags::new`].
    pub async fn spawn<S, F, Fut>(
        backend: Backend,
        exchange: &str,
        name: &'static str,
        start: F,
    ) -> Self
    where
        S: clap::Parser,
        F: FnOnce(S, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<RunningService>>,
    {
        let db = TestDatabase::create(backend).await;
        let settings = ServiceFlags::new(db.url(), exchange).parse();
        let service = spawn(name, settings, start).await;
        Self { service, db }
    }

    /// Stops the service, then drops its database.
    pub async fn stop(self) {
        self.service.stop().await;
        self.db.drop_database().await;
    }
}

/// A channel to the server at `addr`, connected now.
///
/// # Panics
/// If nothing accepts the connection.
pub async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("an http URI")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}
