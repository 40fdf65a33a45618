//! Runs one service: the gRPC server, migrations, the outbox relay and any
//! background tasks (event consumers, reconcilers), with one shutdown sequence.
//!
//! Start-up: bind, serve health and reflection at once (readiness NOT_SERVING), run
//! migrations with retries, then turn readiness SERVING and start the relay and the
//! tasks. Shutdown (on the token): readiness NOT_SERVING, wait `SHUTDOWN_DELAY` so
//! load balancers notice, stop accepting and drain calls and tasks (a consumer acks
//! the message in hand), then let the relay flush once, all within `SHUTDOWN_GRACE`.
//!
//! Supervision: the host owns every task it starts (the relay, the database check and
//! each background task). None of them is meant to end before shutdown, so one that
//! returns or panics is a failure: it is logged at ERROR with its name and cause,
//! readiness turns NOT_SERVING, the service drains as on shutdown, and
//! [`RunningService::wait`] returns the error, so the binary exits non-zero and the
//! orchestrator restarts it rather than leaving it SERVING with its events piling up.
//! [`run_together`] does the same for several services in one process.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::auth::{AuthSettings, Authenticator};
use crate::consumer::{Consumer, EventHandler};
use crate::metrics::Metrics;
use crate::outbox::{OutboxSignal, Relay};
use crate::settings::PlatformSettings;

/// What the platform needs to know about a service.
#[derive(Clone, Copy, Debug)]
pub struct ServiceDef {
    /// Short name: default SQLite file, AMQP connection names, logs (`payment`).
    pub slug: &'static str,
    /// Full gRPC service name, also the readiness health-check name
    /// (`talentshare.payment.v1.PaymentService`).
    pub grpc_service: &'static str,
    /// Encoded file descriptor sets served by reflection.
    pub descriptor_sets: &'static [&'static [u8]],
    /// Who may call it.
    pub access: Access,
    /// What it publishes and consumes on the broker. Only a service that publishes
    /// runs an outbox relay: one that never has rows would still claim the empty
    /// table each time a commit wakes it.
    pub broker: crate::amqp::ServiceAccess,
}

/// Who may call a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// End users, each call with a verified bearer token (order, reservation, my page).
    EndUsers,
    /// Only other services, kept apart by the network and the mesh (payment).
    Internal,
}

type TaskFn = Box<dyn FnOnce(CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A background job started once the service is ready and stopped at shutdown.
pub struct BackgroundTask {
    name: &'static str,
    run: TaskFn,
}

impl BackgroundTask {
    /// Wraps a job; it must return soon after its token is cancelled.
    pub fn new<F, Fut>(name: &'static str, run: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            name,
            run: Box::new(move |t| Box::pin(run(t))),
        }
    }
}

impl<H: EventHandler> From<Consumer<H>> for BackgroundTask {
    fn from(consumer: Consumer<H>) -> Self {
        BackgroundTask::new("event consumer", move |t| consumer.run(t))
    }
}

/// A bound, not yet running service: hands out what the service's own code needs
/// (database, outbox signal) before [`Host::start`].
pub struct Host {
    def: ServiceDef,
    settings: PlatformSettings,
    listener: TcpListener,
    local_addr: SocketAddr,
    db: DatabaseConnection,
    signal: OutboxSignal,
    auth: Option<Authenticator>,
    metrics: Metrics,
    metrics_listener: Option<TcpListener>,
}

impl Host {
    /// Binds `grpc_addr`, opens the (lazy) database pool and, for a service end users
    /// call, loads the keys their tokens are verified with.
    ///
    /// # Errors
    ///
    /// An [`Access::EndUsers`] service without `auth` (there is no unauthenticated
    /// mode), an unreadable JWKS file, an address that cannot be bound, a bad database URL.
    pub async fn bind(
        def: ServiceDef,
        grpc_addr: SocketAddr,
        settings: PlatformSettings,
        auth: Option<&AuthSettings>,
    ) -> anyhow::Result<Self> {
        let auth = match (def.access, auth) {
            (Access::EndUsers, Some(a)) => Some(Authenticator::load(a).await?),
            (Access::EndUsers, None) => anyhow::bail!(
                "{}: end-user authentication is required (AUTH_JWKS, AUTH_ISSUER, AUTH_AUDIENCE)",
                def.slug
            ),
            (Access::Internal, _) => None,
        };
        let listener = crate::server::bind(grpc_addr).await?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = match settings.server.metrics_addr {
            Some(addr) => Some(crate::metrics::bind(addr).await?),
            None => None,
        };
        let db = crate::db::connect(&settings.database, def.slug).await?;
        let metrics = Metrics::new(def.slug, Some(db.clone()));
        Ok(Self {
            def,
            settings,
            listener,
            local_addr,
            db,
            signal: OutboxSignal::new(),
            auth,
            metrics,
            metrics_listener,
        })
    }

    /// Where metrics are served (the real port when `METRICS_ADDR` asked for 0), if
    /// they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The service's metric families, for code that records its own.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The address actually bound (the real port when `GRPC_ADDR` asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The service's database pool.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Wakes the outbox relay; give it to code that commits events.
    pub fn outbox_signal(&self) -> &OutboxSignal {
        &self.signal
    }

    /// The settings the host was built with.
    pub fn settings(&self) -> &PlatformSettings {
        &self.settings
    }

    /// A consumer of this service's queue, sharing the host's database and signal.
    pub fn consumer<H: EventHandler>(&self, queue: &'static str, handler: H) -> Consumer<H> {
        Consumer::new(
            queue,
            handler,
            self.db.clone(),
            self.settings.messaging.clone(),
            self.signal.clone(),
        )
        .with_metrics(self.metrics.clone())
    }

    /// Starts serving `routes` and runs until `shutdown`, then drains.
    pub fn start<M: MigratorTrait + 'static>(
        self,
        routes: impl Into<Routes>,
        tasks: Vec<BackgroundTask>,
        shutdown: CancellationToken,
    ) -> RunningService {
        let local_addr = self.local_addr;
        let metrics_addr = self.metrics_addr();
        let routes = routes.into();
        let handle = tokio::spawn(self.supervise::<M>(routes, tasks, shutdown));
        RunningService {
            local_addr,
            metrics_addr,
            handle,
        }
    }

    async fn supervise<M: MigratorTrait + 'static>(
        self,
        routes: Routes,
        tasks: Vec<BackgroundTask>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Host {
            def,
            settings,
            listener,
            local_addr,
            db,
            signal,
            auth,
            metrics,
            metrics_listener,
        } = self;
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let mut tasks = tasks;
        if let Some(auth) = auth.clone() {
            tasks.push(BackgroundTask::new("JWKS refresh", move |t| {
                auth.refresh_periodically(t)
            }));
        }
        let server_stop = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let server_settings = settings.server.clone();
        let stop = server_stop.clone();
        let server_metrics = metrics.clone();
        let mut server = tokio::spawn(async move {
            crate::server::serve(
                listener,
                routes,
                def,
                &server_settings,
                crate::server::Edge {
                    auth,
                    metrics: server_metrics,
                },
                ready_tx,
                stop,
            )
            .await
        });
        let readiness = match ready_rx.await {
            Ok(r) => r,
            Err(_) => return server.await?,
        };
        // DEBUG: the "ready" line below says it all; tools that start a service on
        // port 0 read the address from this one.
        tracing::debug!(service = def.grpc_service, addr = %local_addr, "listening");

        let tasks_stop = CancellationToken::new();
        let relay_stop = CancellationToken::new();
        let checks_stop = CancellationToken::new();
        let mut checks: Option<JoinHandle<()>> = None;
        let mut workers: JoinSet<()> = JoinSet::new();
        let mut names = std::collections::HashMap::new();
        let mut relay: Option<JoinHandle<()>> = None;
        if let Some(listener) = metrics_listener {
            // From the start, so a scrape sees readiness 0 while migrations run.
            tracing::debug!(service = def.grpc_service, addr = %listener.local_addr()?, "metrics listening");
            let handle = workers.spawn(crate::metrics::serve(
                listener,
                metrics.clone(),
                tasks_stop.clone(),
            ));
            names.insert(handle.id(), "metrics server");
        }
        let migrated = tokio::select! {
            r = crate::db::migrate::<M>(&db, &shutdown) => r.ok(),
            r = &mut server => return r?.and(Err(anyhow::anyhow!("gRPC server stopped unexpectedly"))),
        };
        if let Some(applied) = migrated {
            readiness.set_ready().await;
            // The one line a service writes at start.
            let metrics_addr = metrics_addr.map(|a| a.to_string());
            tracing::info!(
                service = def.grpc_service,
                addr = %local_addr,
                metrics = metrics_addr.as_deref().unwrap_or("off"),
                "ready; {applied} migration{} applied",
                if applied == 1 { "" } else { "s" }
            );
            checks = Some(tokio::spawn(watch_database(
                db.clone(),
                readiness.clone(),
                settings.database.database_check_interval,
                checks_stop.clone(),
            )));
            if def.broker.publishes.is_some() {
                let r = Relay::new(
                    db.clone(),
                    settings.messaging.clone(),
                    signal.clone(),
                    def.slug,
                )
                .with_metrics(metrics.clone());
                relay = Some(tokio::spawn(r.run(relay_stop.clone())));
            }
            for task in tasks {
                let token = tasks_stop.clone();
                tracing::debug!(task = task.name, "starting background task");
                let handle = workers.spawn((task.run)(token));
                names.insert(handle.id(), task.name);
            }
        }

        let mut failure: Option<anyhow::Error> = None;
        let server_result = tokio::select! {
            _ = shutdown.cancelled() => None,
            r = &mut server => Some(r),
            Some(joined) = workers.join_next_with_id(), if !workers.is_empty() => {
                let (id, outcome) = match joined {
                    Ok((id, ())) => (id, Ok(())),
                    Err(e) => (e.id(), Err(e)),
                };
                let name = names.get(&id).copied().unwrap_or("background task");
                failure = Some(task_failed(def, name, outcome));
                None
            }
            r = finished(&mut relay) => {
                relay = None;
                failure = Some(task_failed(def, "outbox relay", r));
                None
            }
            r = finished(&mut checks) => {
                checks = None;
                failure = Some(task_failed(def, "database check", r));
                None
            }
        };
        // Stop the database check first, so it cannot turn readiness back on.
        checks_stop.cancel();
        if let Some(checks) = checks {
            let _ = checks.await;
        }
        readiness.set_draining().await;
        if server_result.is_none() && failure.is_none() && !settings.server.shutdown_delay.is_zero()
        {
            tokio::time::sleep(settings.server.shutdown_delay).await;
        }
        let deadline = tokio::time::Instant::now() + settings.server.shutdown_grace;
        server_stop.cancel();
        tasks_stop.cancel();
        let server_abort = server.abort_handle();
        let drained = tokio::time::timeout_at(deadline, async {
            let server_result = match server_result {
                Some(r) => r,
                None => server.await,
            };
            while workers.join_next().await.is_some() {}
            server_result
        })
        .await;
        if drained.is_err() {
            // Past the deadline: stop what is left rather than leave it running on a
            // pool that is about to close. Unacked messages go back to the broker.
            server_abort.abort();
            workers.abort_all();
        }
        relay_stop.cancel();
        if let Some(relay) = relay {
            let abort = relay.abort_handle();
            if tokio::time::timeout_at(deadline, relay).await.is_err() {
                abort.abort();
                tracing::warn!(
                    "outbox relay did not stop before the shutdown deadline; its rows stay for the next start"
                );
            }
        }
        let _ = db.close().await;
        if let Some(failure) = failure {
            return Err(failure);
        }
        match drained {
            Ok(server_result) => {
                tracing::info!(service = def.grpc_service, "stopped");
                server_result?
            }
            Err(_) => {
                tracing::warn!(
                    service = def.grpc_service,
                    "drain deadline passed; stopping anyway"
                );
                Ok(())
            }
        }
    }
}

/// Waits for a task the host may or may not have started; never resolves for `None`.
async fn finished(task: &mut Option<JoinHandle<()>>) -> Result<(), JoinError> {
    match task {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// Reports a task that ended before shutdown: the error [`RunningService::wait`]
/// returns, logged once here with the task's name and what ended it.
fn task_failed(def: ServiceDef, task: &str, outcome: Result<(), JoinError>) -> anyhow::Error {
    let cause = match outcome {
        Ok(()) => "it returned".to_owned(),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            format!("it panicked: {text}")
        }
        Err(_) => "it was cancelled".to_owned(),
    };
    tracing::error!(service = def.grpc_service, task, cause = %cause,
        "background task stopped before shutdown; the service stops so it can be restarted");
    anyhow::anyhow!(
        "{}: background task `{task}` stopped before shutdown: {cause}",
        def.slug
    )
}

/// The whole `main` of a service binary: telemetry named `name`, then the service
/// `start` builds, until SIGTERM or SIGINT has drained it, then the last spans out.
/// Exit code 1 (after one line saying why) when it cannot start or fails.
pub async fn service_main<F, Fut>(
    name: &str,
    telemetry: &crate::settings::TelemetrySettings,
    start: F,
) -> std::process::ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<RunningService>>,
{
    let telemetry = match crate::telemetry::init(telemetry, name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match start(crate::shutdown::on_signal()).await {
        Ok(running) => running.wait().await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "{name} failed");
    }
    telemetry.shutdown().await;
    if result.is_ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Runs several services of one process (`talentshare up`) as one: when any of them
/// stops before `shutdown` (a failure, or an end nobody asked for), `shutdown` is
/// cancelled so the others drain too. Returns once all have stopped.
///
/// # Errors
///
/// Every service that failed or stopped on its own, by name.
pub async fn run_together(
    services: Vec<(&'static str, RunningService)>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut running = JoinSet::new();
    for (name, service) in services {
        running.spawn(async move { (name, service.wait().await) });
    }
    let mut failures = Vec::new();
    while let Some(joined) = running.join_next().await {
        let (name, result) = match joined {
            Ok(r) => r,
            Err(e) => (
                "a service",
                Err(anyhow::anyhow!("its supervisor ended: {e}")),
            ),
        };
        let failure = match result {
            Err(e) => Some(format!("{e:#}")),
            Ok(()) if !shutdown.is_cancelled() => Some("it stopped on its own".to_owned()),
            Ok(()) => None,
        };
        if let Some(failure) = failure {
            tracing::error!(service = name, error = %failure, "service stopped; stopping the others");
            failures.push(format!("{name}: {failure}"));
            shutdown.cancel();
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("{}", failures.join("; ")))
    }
}

/// Keeps readiness truthful after start-up: NOT_SERVING while the database does not
/// answer a ping, SERVING again once it does.
async fn watch_database(
    db: DatabaseConnection,
    readiness: crate::server::Readiness,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    let mut down = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let ok = tokio::time::timeout(every.max(std::time::Duration::from_secs(1)), db.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        if stop.is_cancelled() {
            return;
        }
        if ok == down {
            down = !ok;
            if down {
                readiness.set_database_down().await;
            } else {
                readiness.set_database_up().await;
            }
        }
    }
}

/// A running service.
pub struct RunningService {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// Where it serves metrics, if it does.
    pub metrics_addr: Option<SocketAddr>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl RunningService {
    /// Waits until the service has stopped (after its shutdown token fired).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.handle.await?
    }
}
