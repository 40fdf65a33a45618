//! Prometheus metrics of one service: the families every service shares, defined here
//! once (gRPC calls, events consumed and their lag, outbox publishing and backlog, the
//! database pool, readiness, the build), a tower layer that counts and times each
//! gRPC call by method and status code, and a small HTTP server that answers
//! `GET /metrics` on `METRICS_ADDR` in the OpenMetrics text format (which Prometheus
//! scrapes natively).
//!
//! Label values a caller controls are bounded: a call to a path the server does not
//! route is answered UNIMPLEMENTED and counted under `grpc_method="unknown"`, so
//! random paths cannot grow the series without end.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tower::{Layer, Service};

/// The OpenMetrics text format's media type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of one gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub grpc_service: String,
    pub grpc_method: String,
    pub grpc_code: String,
}

/// Labels of one consumed event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumedLabels {
    pub queue: String,
    pub event_type: String,
    pub outcome: String,
}

/// Labels of a consumer's queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

/// Labels of an event type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventTypeLabels {
    pub event_type: String,
}

/// Labels of one attempt of a call to payment-svc.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub grpc_method: String,
    pub grpc_code: String,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
}

/// Reads the payment client's breaker: `closed`, `open` or `half_open`.
type BreakerReader = Box<dyn Fn() -> &'static str + Send + Sync>;

/// Reports the breaker's state at each scrape, once a client has said how to read it.
#[derive(Default)]
struct BreakerCollector(Arc<std::sync::Mutex<Option<BreakerReader>>>);

impl std::fmt::Debug for BreakerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BreakerCollector")
    }
}

impl Collector for BreakerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let reader = self.0.lock().expect("breaker reader lock");
        let Some(read) = reader.as_ref() else {
            return Ok(());
        };
        let now = read();
        let states = Family::<StateLabels, Gauge>::default();
        for state in ["closed", "open", "half_open"] {
            states
                .get_or_create(&StateLabels { state })
                .set(i64::from(state == now));
        }
        states.encode(encoder.encode_descriptor(
            "payment_client_breaker_state",
            "The payment client's circuit breaker: 1 for its current state (open: calls fail fast)",
            None,
            states.metric_type(),
        )?)
    }
}

/// Labels of the build the process runs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    service: String,
}

/// The families a service exports. Cheap to clone: every field shares its values.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Calls answered, by service, method and code.
    pub grpc_handled: Family<CallLabels, Counter>,
    /// Time from a call's arrival until its status was sent.
    pub grpc_handling: Family<CallLabels, Histogram>,
    /// 1 while readiness is SERVING, else 0.
    pub ready: Gauge,
    /// Deliveries settled, by queue, event type and outcome.
    pub events_consumed: Family<ConsumedLabels, Counter>,
    /// Time from taking a delivery until it was settled.
    pub event_handling: Family<QueueLabels, Histogram>,
    /// Time from an event's `occurred_at` until it was applied.
    pub event_lag: Family<QueueLabels, Histogram>,
    /// Outbox rows sent to the broker, and those it confirmed, by event type.
    pub events_published: Family<EventTypeLabels, Counter>,
    pub events_confirmed: Family<EventTypeLabels, Counter>,
    /// Rows waiting in the outbox, and the age of the oldest, as the relay last saw.
    pub outbox_backlog: Gauge,
    pub outbox_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Messages resting in each consumer's dead-letter queue, as it last counted.
    pub dead_letters: Family<QueueLabels, Gauge>,
    /// Messages ready in each consumer's own queue (not yet taken), as it last counted.
    pub queued: Family<QueueLabels, Gauge>,
    /// How long each consumer has held the deliveries it handles now, unsettled.
    pub in_hand: Family<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Attempts of calls to payment-svc, by method, code and attempt number.
    pub payment_attempts: Family<AttemptLabels, Counter>,
    breaker: Arc<std::sync::Mutex<Option<BreakerReader>>>,
}

impl Metrics {
    /// The families of the service named `slug`, with its build info and, given its
    /// database `pool`, the pool's connections at each scrape.
    pub fn new(slug: &str, pool: Option<DatabaseConnection>) -> Self {
        let mut registry = Registry::default();
        if let Some(db) = pool {
            registry.register_collector(Box::new(PoolCollector(db)));
        }
        let grpc_handled = Family::<CallLabels, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "gRPC calls answered by the server, by method and status code",
            grpc_handled.clone(),
        );
        let grpc_handling = Family::<CallLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms to about 16 s, doubling.
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register_with_unit(
            "grpc_server_handling",
            "Time from a gRPC call's arrival until its status was sent",
            Unit::Seconds,
            grpc_handling.clone(),
        );
        let seconds = || Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let events_consumed = Family::<ConsumedLabels, Counter>::default();
        registry.register(
            "events_consumed",
            "Event deliveries settled by a consumer: applied, duplicate (already in the inbox), retried, dead_lettered",
            events_consumed.clone(),
        );
        let event_handling = Family::<QueueLabels, Histogram>::new_with_constructor(seconds);
        registry.register_with_unit(
            "event_handling",
            "Time from taking an event delivery until it was settled (a batch's events share its time)",
            Unit::Seconds,
            event_handling.clone(),
        );
        let event_lag = Family::<QueueLabels, Histogram>::new_with_constructor(|| {
            // 1 ms to about 9 h: a backlog after an outage is a lag too.
            Histogram::new(exponential_buckets(0.001, 2.0, 26))
        });
        registry.register_with_unit(
            "event_lag",
            "Time from an event's occurred_at in its publisher until a consumer applied it",
            Unit::Seconds,
            event_lag.clone(),
        );
        let events_published = Family::<EventTypeLabels, Counter>::default();
        registry.register(
            "outbox_events_published",
            "Outbox events sent to RabbitMQ by the relay",
            events_published.clone(),
        );
        let events_confirmed = Family::<EventTypeLabels, Counter>::default();
        registry.register(
            "outbox_events_confirmed",
            "Outbox events RabbitMQ confirmed (and the relay then deleted)",
            events_confirmed.clone(),
        );
        let outbox_backlog = Gauge::default();
        registry.register(
            "outbox_backlog_rows",
            "Events waiting in the outbox, as the relay last counted",
            outbox_backlog.clone(),
        );
        let outbox_oldest_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "outbox_oldest_event_age",
            "Age of the oldest event waiting in the outbox (0 when empty), as the relay last saw",
            Unit::Seconds,
            outbox_oldest_age.clone(),
        );
        let dead_letters = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "dead_letter_queue_messages",
            "Messages resting in the consumer's dead-letter queue (queue = the consumer), as it last counted",
            dead_letters.clone(),
        );
        let queued = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "event_queue_messages",
            "Messages ready in the consumer's own queue, not yet taken (queue = the consumer), as it last counted",
            queued.clone(),
        );
        let in_hand = Family::<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register_with_unit(
            "event_in_hand",
            "How long the consumer has held the deliveries it is handling now without settling them (0 when idle); growing means it is stuck, on its database say",
            Unit::Seconds,
            in_hand.clone(),
        );
        let payment_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "payment_client_attempts",
            "Attempts of calls to payment-svc by method, status code and attempt number (UNAVAILABLE: not reached)",
            payment_attempts.clone(),
        );
        let breaker = BreakerCollector::default();
        let breaker_reader = breaker.0.clone();
        registry.register_collector(Box::new(breaker));
        let ready = Gauge::default();
        registry.register(
            "service_ready",
            "1 while the service's readiness is SERVING (database reachable and migrated), else 0",
            ready.clone(),
        );
        registry.register(
            "talentshare_build",
            "The build this process runs",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                service: slug.to_owned(),
            }),
        );
        Self {
            registry: Arc::new(registry),
            grpc_handled,
            grpc_handling,
            ready,
            events_consumed,
            event_handling,
            event_lag,
            events_published,
            events_confirmed,
            outbox_backlog,
            outbox_oldest_age,
            dead_letters,
            queued,
            in_hand,
            payment_attempts,
            breaker: breaker_reader,
        }
    }

    /// One attempt of a call to payment-svc at `path` (`/package.Service/Method`).
    pub fn payment_attempt(&self, path: &str, code: Code, attempt: u32) {
        let method = path.rsplit('/').next().unwrap_or(path);
        self.payment_attempts
            .get_or_create(&AttemptLabels {
                grpc_method: method.to_owned(),
                grpc_code: code_label(code).to_owned(),
                attempt,
            })
            .inc();
    }

    /// How to read the payment client's breaker at each scrape.
    pub fn watch_breaker(&self, read: impl Fn() -> &'static str + Send + Sync + 'static) {
        *self.breaker.lock().expect("breaker reader lock") = Some(Box::new(read));
    }

    /// One settled delivery of `queue`.
    pub fn event_consumed(
        &self,
        queue: &str,
        event_type: &str,
        outcome: &str,
        took: std::time::Duration,
    ) {
        self.events_consumed
            .get_or_create(&ConsumedLabels {
                queue: queue.to_owned(),
                event_type: event_type.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.event_handling
            .get_or_create(&QueueLabels {
                queue: queue.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// How long after it happened an event was applied from `queue`.
    pub fn event_lag(&self, queue: &str, lag: std::time::Duration) {
        self.event_lag
            .get_or_create(&QueueLabels {
                queue: queue.to_owned(),
            })
            .observe(lag.as_secs_f64());
    }

    /// How many messages rest in `queue`'s dead-letter queue, and how many wait in
    /// the queue itself.
    pub fn queue_depths(&self, queue: &str, ready: u32, dead_letters: u32) {
        let labels = QueueLabels {
            queue: queue.to_owned(),
        };
        self.queued.get_or_create(&labels).set(i64::from(ready));
        self.dead_letters
            .get_or_create(&labels)
            .set(i64::from(dead_letters));
    }

    /// Everything, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn record(&self, call: &CallStart, code: Code) {
        let (grpc_service, grpc_method) = if code == Code::Unimplemented {
            ("unknown".to_owned(), "unknown".to_owned())
        } else {
            (call.service.clone(), call.method.clone())
        };
        let labels = CallLabels {
            grpc_service,
            grpc_method,
            grpc_code: code_label(code).to_owned(),
        };
        self.grpc_handled.get_or_create(&labels).inc();
        self.grpc_handling
            .get_or_create(&labels)
            .observe(call.at.elapsed().as_secs_f64());
    }
}

/// Labels of a state: a pool connection's, the payment client breaker's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Reads the database pool at each scrape: connections in use and idle, and the most
/// it may open. (sqlx does not count waits for a connection; a pool whose in-use
/// count sits at its maximum is one where calls wait.)
#[derive(Debug)]
struct PoolCollector(DatabaseConnection);

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (size, idle, max) = if crate::db::is_postgres(&self.0) {
            let pool = self.0.get_postgres_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        } else {
            let pool = self.0.get_sqlite_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX);
        let connections = Family::<StateLabels, Gauge>::default();
        connections
            .get_or_create(&StateLabels { state: "in_use" })
            .set(i64::from(size.saturating_sub(idle)));
        connections
            .get_or_create(&StateLabels { state: "idle" })
            .set(i64::from(idle));
        connections.encode(encoder.encode_descriptor(
            "db_pool_connections",
            "Database pool connections open now, in use or idle",
            None,
            connections.metric_type(),
        )?)?;
        let most = ConstGauge::new(i64::from(max));
        most.encode(encoder.encode_descriptor(
            "db_pool_max_connections",
            "The most connections the database pool may open",
            None,
            most.metric_type(),
        )?)
    }
}

/// A status code as the gRPC ecosystem's metrics name it (`OK`, `Canceled`,
/// `InvalidArgument`, …: Go's `codes.Code` names), so stock gRPC dashboards and
/// alerts read these series as they read any other server's.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Counts and times every call (see [`Metrics::grpc_handled`]).
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
}

impl MetricsLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metered {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`MetricsLayer`].
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Metrics,
}

/// A call's method and arrival time.
struct CallStart {
    service: String,
    method: String,
    at: Instant,
}

impl CallStart {
    fn of<B>(req: &http::Request<B>) -> Self {
        // `/package.Service/Method`
        let path = req.uri().path().trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        Self {
            service: service.to_owned(),
            method: method.to_owned(),
            at: Instant::now(),
        }
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for Metered<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body,
{
    type Response = http::Response<StatusWatch<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = CallStart::of(&req);
        let metrics = self.metrics.clone();
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            Ok(watch_status(response, move |code| {
                metrics.record(&call, code)
            }))
        })
    }
}

/// Calls `on_status` once with the gRPC status code of `response`: at once when it
/// answered "trailers-only" (an error, its status in the headers), else when its
/// trailers pass, or with CANCELLED if the body ends or is dropped without them (the
/// client went away, a deadline cut the call).
pub fn watch_status<B>(
    response: http::Response<B>,
    on_status: impl FnOnce(Code) + Send + 'static,
) -> http::Response<StatusWatch<B>> {
    let watcher = match tonic::Status::from_header_map(response.headers()) {
        Some(status) => {
            on_status(status.code());
            None
        }
        None => Some(Watcher(Some(Box::new(on_status)))),
    };
    response.map(|inner| StatusWatch { inner, watcher })
}

/// The callback of [`watch_status`], called exactly once.
struct Watcher(Option<Box<dyn FnOnce(Code) + Send>>);

impl Watcher {
    fn finish(&mut self, code: Code) {
        if let Some(f) = self.0.take() {
            f(code);
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// A response body that reports its call's status when the trailers pass
/// (see [`watch_status`]).
pub struct StatusWatch<B> {
    inner: B,
    watcher: Option<Watcher>,
}

impl<B: Body + Unpin> Body for StatusWatch<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && let Some(mut watcher) = self.watcher.take()
        {
            watcher.finish(tonic::Status::from_header_map(trailers).map_or(Code::Ok, |s| s.code()));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `GET /metrics` on `listener` until `stop`; any other path is 404.
pub async fn serve(listener: TcpListener, metrics: Metrics, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let metrics = metrics.clone();
        connections.spawn(async move {
            let answer = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&req, &metrics)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, answer)
                .await;
        });
    }
    connections.shutdown().await;
}

fn respond<B>(req: &http::Request<B>, metrics: &Metrics) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/metrics") => (http::StatusCode::OK, CONTENT_TYPE, metrics.encode()),
        _ => (
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "only GET /metrics is served here\n".to_owned(),
        ),
    };
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("METRICS_ADDR {addr}: cannot bind: {e}"))
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Empty, StreamBody};

    use super::*;

    type TestBody =
        StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    /// A unary answer: one message, then the status in the trailers.
    fn answer_with_trailers(code: &str) -> TestBody {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", code.parse().expect("header value"));
        StreamBody::new(futures::stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"message"))),
            Ok(Frame::trailers(trailers)),
        ]))
    }

    fn count(metrics: &Metrics, service: &str, method: &str, code: &str) -> u64 {
        metrics
            .grpc_handled
            .get_or_create(&CallLabels {
                grpc_service: service.into(),
                grpc_method: method.into(),
                grpc_code: code.into(),
            })
            .get()
    }

    fn request(path: &str) -> http::Request<Empty<Bytes>> {
        http::Request::builder()
            .uri(path)
            .body(Empty::new())
            .expect("request")
    }

    #[tokio::test]
    async fn codes_come_from_headers_or_trailers_and_unrouted_paths_stay_unknown() {
        let metrics = Metrics::new("test", None);
        let inner = tower::service_fn(|req: http::Request<Empty<Bytes>>| async move {
            let response = match req.uri().path() {
                // What tonic answers for a path it does not route: trailers-only.
                p if p.contains("Nope") => http::Response::builder()
                    .header("grpc-status", "12")
                    .body(answer_with_trailers("12")),
                p if p.ends_with("/Fail") => http::Response::builder()
                    .header("grpc-status", "3")
                    .body(answer_with_trailers("3")),
                _ => http::Response::builder().body(answer_with_trailers("0")),
            };
            Ok::<_, Infallible>(response.expect("response"))
        });
        let mut service = MetricsLayer::new(metrics.clone()).layer(inner);

        for path in [
            "/pkg.Svc/Get",
            "/pkg.Svc/Fail",
            "/random.Thing/Nope1",
            "/x/Nope2",
        ] {
            let response = service.call(request(path)).await.expect("answer");
            response.into_body().collect().await.expect("body");
        }
        // A body dropped before its trailers: the client went away.
        let response = service.call(request("/pkg.Svc/Get")).await.expect("answer");
        drop(response);

        assert_eq!(count(&metrics, "pkg.Svc", "Get", "OK"), 1);
        assert_eq!(count(&metrics, "pkg.Svc", "Fail", "InvalidArgument"), 1);
        assert_eq!(count(&metrics, "unknown", "unknown", "Unimplemented"), 2);
        assert_eq!(count(&metrics, "pkg.Svc", "Get", "Canceled"), 1);
        let text = metrics.encode();
        assert!(
            !text.contains("Nope"),
            "no label from an unrouted path: {text}"
        );
        assert!(
            text.contains("grpc_server_handling_seconds_bucket"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_taken_metrics_address_is_refused_naming_the_setting() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = bind(addr).await.expect_err("the port is taken");
        assert!(
            err.to_string()
                .starts_with(&format!("METRICS_ADDR {addr}: cannot bind")),
            "{err}"
        );
    }
}
