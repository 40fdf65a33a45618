//! The gRPC server every service runs: its routes plus health (`grpc.health.v1`) and
//! reflection (v1 and v1alpha, since grpcurl 1.8.6 speaks only v1alpha), message-size
//! limits, a per-call timeout, a per-connection concurrency limit, and one admission
//! layer: UNAVAILABLE until the service's database is migrated, and for public
//! services end-user authentication ([`crate::auth`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer, Service};

use crate::auth::{Authenticator, is_open};
use crate::settings::ServerSettings;

/// Binds the gRPC listener. Port 0 picks a free port; read it from `local_addr()`.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("GRPC_ADDR {addr}: cannot bind: {e}"))
}

/// Liveness and readiness as the outside world sees them.
///
/// Liveness (`""`) is SERVING while the process answers. Readiness (the service's full
/// name) is SERVING only between [`Readiness::set_ready`] and
/// [`Readiness::set_draining`].
#[derive(Clone)]
pub struct Readiness {
    reporter: HealthReporter,
    service_name: &'static str,
    ready: Arc<AtomicBool>,
    /// `service_ready`: follows what the health service reports.
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Readiness {
    async fn new(
        reporter: HealthReporter,
        service_name: &'static str,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        reporter
            .set_service_status(service_name, ServingStatus::NotServing)
            .await;
        gauge.set(0);
        Self {
            reporter,
            service_name,
            ready: Arc::new(AtomicBool::new(false)),
            gauge,
        }
    }

    /// The database is reachable and migrated: take traffic.
    pub async fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.reporter
            .set_service_status(self.service_name, ServingStatus::Serving)
            .await;
        self.gauge.set(1);
        tracing::debug!(service = self.service_name, "readiness SERVING");
    }

    /// The database stopped answering: report NOT_SERVING until it is back. Calls are
    /// still served (they fail or succeed on their own); only the load balancer's
    /// view changes.
    pub async fn set_database_down(&self) {
        self.reporter
            .set_service_status(self.service_name, ServingStatus::NotServing)
            .await;
        self.gauge.set(0);
        tracing::warn!(
            service = self.service_name,
            "database unreachable; readiness NOT_SERVING"
        );
    }

    /// The database answers again after [`Readiness::set_database_down`].
    pub async fn set_database_up(&self) {
        self.reporter
            .set_service_status(self.service_name, ServingStatus::Serving)
            .await;
        self.gauge.set(1);
        tracing::info!(
            service = self.service_name,
            "database reachable again; readiness SERVING"
        );
    }

    /// Shutdown has begun: stop receiving new traffic. Calls still arriving are
    /// served until the listener closes.
    pub async fn set_draining(&self) {
        self.reporter
            .set_service_status(self.service_name, ServingStatus::NotServing)
            .await;
        self.gauge.set(0);
        tracing::info!(
            service = self.service_name,
            "readiness NOT_SERVING; draining"
        );
    }

    fn admission(&self, auth: Option<Authenticator>) -> AdmissionLayer {
        AdmissionLayer {
            ready: self.ready.clone(),
            auth,
        }
    }
}

/// What every call passes on its way in: who it is from and where it is counted.
pub(crate) struct Edge {
    pub auth: Option<Authenticator>,
    pub metrics: crate::metrics::Metrics,
}

/// Builds the router and serves until `stop` is cancelled, then drains in-flight calls
/// (the caller bounds the drain with a deadline).
pub(crate) async fn serve<S>(
    listener: TcpListener,
    service: S,
    def: crate::host::ServiceDef,
    settings: &ServerSettings,
    Edge { auth, metrics }: Edge,
    readiness_cell: tokio::sync::oneshot::Sender<Readiness>,
    stop: CancellationToken,
) -> anyhow::Result<()>
where
    S: Into<Routes>,
{
    let service_name = def.grpc_service;
    let (reporter, health) = tonic_health::server::health_reporter();
    let readiness = Readiness::new(reporter, service_name, metrics.ready.clone()).await;
    let admission = readiness.admission(auth);
    let _ = readiness_cell.send(readiness);

    let reflection = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(service_name)
            .with_service_name(
                <tonic_health::pb::health_server::HealthServer<()> as NamedService>::NAME,
            )
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        for set in def.descriptor_sets {
            b = b.register_encoded_file_descriptor_set(set);
        }
        b
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let routes: Routes = service.into();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let public = def.access == crate::host::Access::EndUsers;
    tonic::transport::Server::builder()
        // gRPC-Web comes over HTTP/1.1 as well as HTTP/2; plain gRPC is unchanged.
        .accept_http1(public)
        .layer(tower::util::option_layer(
            public.then(|| cors(&settings.cors_allowed_origins)),
        ))
        .layer(if public {
            tower::util::Either::Left(tonic_web::GrpcWebLayer::new())
        } else {
            // The same response type as the gRPC-Web branch, without gRPC-Web.
            tower::util::Either::Right(tower::util::MapResponseLayer::new(
                |r: http::Response<_>| r.map(tonic::body::Body::new),
            ))
        })
        .timeout(settings.request_timeout)
        .concurrency_limit_per_connection(settings.max_concurrent_requests as usize)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        // Every call is traced, counted and every failure logged once (inside its
        // span, so with its trace id), refusals included.
        // Admission comes next, so a call that is refused (not ready, no valid token)
        // never reaches limits or handlers; health and reflection always pass.
        .layer(
            tower::ServiceBuilder::new()
                .layer(crate::telemetry::TraceLayer)
                .layer(crate::metrics::MetricsLayer::new(metrics))
                .layer(crate::outcome::OutcomeLayer)
                .layer(admission)
                .into_inner(),
        )
        .add_routes(routes)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
        .await
        .map_err(|e| anyhow::anyhow!("gRPC server failed: {e}"))
}

/// CORS for gRPC-Web callers from `origins` (none when empty): the headers a gRPC-Web
/// client sends, and the trailers-as-headers it must read (status, message, details).
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use http::HeaderName;
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<http::HeaderValue> = origins
        .iter()
        .filter_map(|o| http::HeaderValue::from_str(o).ok())
        .collect();
    let names = |names: &[&'static str]| -> Vec<HeaderName> {
        names.iter().map(|n| HeaderName::from_static(n)).collect()
    };
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([http::Method::POST])
        .allow_headers(names(&[
            "authorization",
            "content-type",
            "x-grpc-web",
            "x-user-agent",
            "grpc-timeout",
            "traceparent",
        ]))
        .expose_headers(names(&[
            "grpc-status",
            "grpc-message",
            "grpc-status-details-bin",
        ]))
        .max_age(std::time::Duration::from_secs(600))
}

/// Admits application calls: UNAVAILABLE while the service is not ready; then, for a
/// service end users call, UNAUTHENTICATED without a valid token, else the verified
/// [`crate::auth::Caller`] goes into the request extensions for the handlers. Health
/// and reflection are always admitted.
#[derive(Clone)]
struct AdmissionLayer {
    ready: Arc<AtomicBool>,
    auth: Option<Authenticator>,
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            ready: self.ready.clone(),
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
struct Admission<S> {
    inner: S,
    ready: Arc<AtomicBool>,
    auth: Option<Authenticator>,
}

type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Admission<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // Swap in the clone that was polled ready, as tower requires.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if is_open(req.uri().path()) {
            return Box::pin(async move { inner.call(req).await });
        }
        if !self.ready.load(Ordering::SeqCst) {
            let status = crate::status::Failure::new(
                tonic::Code::Unavailable,
                talentshare_proto::common::ErrorReason::ServiceStarting,
                "service is starting: database not ready yet",
            )
            .retry_after(crate::status::RETRY_SOON)
            .into_status();
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let Some(auth) = self.auth.clone() else {
            return Box::pin(async move { inner.call(req).await });
        };
        // Marked sensitive: kept out of HPACK indexing and shown as "Sensitive" by any
        // Debug of the headers further in.
        if let Some(v) = req.headers_mut().get_mut(http::header::AUTHORIZATION) {
            v.set_sensitive(true);
        }
        Box::pin(async move {
            let header = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            match auth.authenticate(header).await {
                Ok((caller, expiry)) => {
                    req.extensions_mut().insert(caller);
                    req.extensions_mut().insert(expiry);
                    inner.call(req).await
                }
                // The outcome layer logs the refusal: its reason only, never the token.
                Err(e) => Ok(e.to_status().into_http()),
            }
        })
    }
}
