//! Logging and tracing set-up: one `tracing` subscriber per process, human or JSON
//! log lines, and OpenTelemetry spans carried across every hop of a booking.
//!
//! A booking is one trace. Its W3C trace context arrives in the `traceparent` gRPC
//! metadata (or starts at the server), goes out with the calls to payment-svc, is
//! stored with each outbox row, rides to RabbitMQ in the message's `traceparent`
//! header, and the consumer's span continues it. Every log line written inside a
//! request or an event carries that trace's id (`trace_id`).
//!
//! Spans are exported through OTLP/gRPC only when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set;
//! the exporter reads the other `OTEL_EXPORTER_OTLP_*`, `OTEL_BSP_*` and
//! `OTEL_TRACES_SAMPLER*` variables itself. Unset, trace ids are still made and
//! passed on, and nothing leaves the process.
//!
//! Secrets stay out of logs and spans by construction: URLs are
//! [`crate::SecretUrl`]s whose `Display` hides the password, card numbers never leave
//! the request handler, and spans record no request or event fields beyond ids.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Body;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceState, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer as _, fmt, prelude::*};

use crate::metrics::{StatusWatch, watch_status};
use crate::settings::{LogFormat, TelemetrySettings};

/// The crates whose spans become OpenTelemetry spans: ours, not the libraries'
/// (sea-orm's per-statement spans would multiply a trace's size for little).
const TRACED_CRATES: &[&str] = &[
    "platform",
    "order_svc",
    "payment_svc",
    "reservation_svc",
    "mypage_svc",
    "payment_client",
];

/// What [`init`] set up; [`Telemetry::shutdown`] sends the spans still buffered.
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Flushes and stops the exporter: called last, after the service drained.
    pub async fn shutdown(self) {
        if !self.exporting {
            return;
        }
        // The flush blocks on the export; keep it off the runtime's threads, which
        // drive the exporter's connection meanwhile.
        let provider = self.provider;
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = flushed {
            eprintln!("telemetry: could not send the last spans: {e}");
        }
    }
}

/// Installs the global subscriber, naming the process's spans `service` (unless
/// `OTEL_SERVICE_NAME` says otherwise). A second call (several services in one
/// process, or tests) keeps the first subscriber; its [`Telemetry`] exports nothing.
///
/// Must run inside the Tokio runtime: the OTLP exporter's connection lives on it.
pub fn init(settings: &TelemetrySettings, service: &str) -> anyhow::Result<Telemetry> {
    let log_filter = log_filter(&settings.log_filter)?;
    // The standard switch: no spans at all, so no trace ids either (an event then
    // starts a trace of its own); what is left of tracing's cost is the log lines.
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let exporter = if disabled {
        None
    } else {
        otlp_exporter(settings.otlp_endpoint.as_deref())?
    };
    let exporting = exporter.is_some();
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    let mut provider = SdkTracerProvider::builder().with_resource(resource.build());
    if std::env::var_os("OTEL_TRACES_SAMPLER").is_none() {
        // Keep every trace, and never let a caller's `traceparent` flag switch tracing
        // off for its calls (the SDK's default follows a remote "not sampled").
        provider = provider.with_sampler(Box::new(
            Sampler::parent_based(Sampler::AlwaysOn)
                .with_remote_parent_not_sampled(Sampler::AlwaysOn),
        )
            as Box<dyn opentelemetry_sdk::trace::ShouldSample>);
    }
    if let Some(exporter) = exporter {
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    // RUST_LOG filters the log lines only: a quiet log level must not cut a trace.
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("talentshare"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(traced_targets());
    let logs = match settings.log_format {
        LogFormat::Human => fmt::layer().with_target(true).boxed(),
        LogFormat::Json => fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(log_filter))
        .with((!disabled).then_some(traces))
        .try_init()
        .is_ok();
    Ok(Telemetry {
        provider,
        exporting: exporting && installed && !disabled,
    })
}

/// One JSON object per log line: `timestamp`, `level`, `target`, the event's fields
/// (`message` among them), `trace_id` when the line was written inside a traced call
/// or event, and `span`: the innermost span's name with the fields of every span
/// around the line (an order id recorded by the handler, say).
struct JsonLine;

/// Span fields every span of a kind carries: noise in a log line.
const CONSTANT_FIELDS: &[&str] = &["otel.kind", "rpc.system", "messaging.system"];

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use serde_json::{Map, Value};
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut JsonVisitor(&mut line));
        // A `log` crate record (lapin's, say) carries its real target as a field.
        if let Some(target) = line.remove("log.target") {
            line.insert("target".into(), target);
        }
        line.retain(|k, _| !k.starts_with("log."));
        // The active OpenTelemetry context first: it is set while a traced span runs
        // even when RUST_LOG hides that span (and so the scope below) from the logs.
        let active = opentelemetry::Context::current();
        let ids = active.span().span_context().clone();
        if ids.is_valid() {
            line.insert("trace_id".into(), ids.trace_id().to_string().into());
        }
        if let Some(scope) = ctx.event_scope() {
            let mut fields = Map::new();
            let mut innermost = None;
            // Outermost first, so an inner span's field wins over an outer one's.
            for span in scope.from_root() {
                innermost = Some(span.name());
                let extensions = span.extensions();
                let Some(formatted) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(recorded)) = serde_json::from_str(formatted.as_str()) {
                    fields.extend(recorded);
                }
            }
            if let Some(trace_id) = fields.remove("trace_id") {
                line.entry("trace_id").or_insert(trace_id);
            }
            fields.retain(|k, _| !CONSTANT_FIELDS.contains(&k.as_str()));
            if let Some(name) = innermost {
                fields.insert("name".into(), name.into());
                line.insert("span".into(), Value::Object(fields));
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields into a JSON object: numbers and booleans as such, the rest as
/// their `Display` or `Debug` text. A name given twice keeps both values (the second
/// as `<name>_2`), so nothing a line says is lost.
struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &tracing::field::Field, value: serde_json::Value) {
        let mut name = field.name().to_owned();
        let mut n = 1;
        while self.0.contains_key(&name) {
            n += 1;
            name = format!("{}_{n}", field.name());
        }
        self.0.insert(name, value);
    }
}

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

/// RUST_LOG as given, except that sea-orm's line per migration is kept at DEBUG (the
/// host writes "N migrations applied" instead) unless the filter names
/// `sea_orm_migration` or asks for DEBUG anywhere.
fn log_filter(spec: &str) -> anyhow::Result<EnvFilter> {
    let filter = EnvFilter::try_new(spec).map_err(|e| anyhow::anyhow!("RUST_LOG: {e}"))?;
    // Only at INFO: at DEBUG the lines were asked for, and at WARN or ERROR they are
    // hidden already (a `=warn` directive would make such a filter louder).
    let at_info = filter.max_level_hint() == Some(tracing::level_filters::LevelFilter::INFO);
    if !at_info || spec.contains("sea_orm_migration") {
        return Ok(filter);
    }
    Ok(filter.add_directive("sea_orm_migration=warn".parse()?))
}

/// Our crates at INFO (their log lines become span events), nothing else. A static
/// filter, so the libraries' DEBUG and TRACE callsites stay disabled at no cost.
fn traced_targets() -> Targets {
    TRACED_CRATES.iter().fold(Targets::new(), |t, krate| {
        t.with_target(*krate, Level::INFO)
    })
}

/// The OTLP/gRPC span exporter, when an endpoint is configured: `endpoint`
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`), unless the traces-only variable names another.
fn otlp_exporter(
    endpoint: Option<&str>,
) -> anyhow::Result<Option<opentelemetry_otlp::SpanExporter>> {
    let traces_only =
        std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_ok_and(|v| !v.trim().is_empty());
    if endpoint.is_none() && !traces_only {
        return Ok(None);
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(protocol) = std::env::var(name) {
            // Only the gRPC transport is built in: refuse rather than export nothing.
            anyhow::ensure!(
                protocol.trim() == "grpc",
                "{name}={protocol}: only `grpc` is supported (OTLP/gRPC, port 4317)"
            );
            break;
        }
    }
    use opentelemetry_otlp::WithExportConfig as _;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_protocol(opentelemetry_otlp::Protocol::Grpc);
    if let (Some(endpoint), false) = (endpoint, traces_only) {
        builder = builder.with_endpoint(endpoint);
    }
    let exporter = builder
        .build()
        .map_err(|e| anyhow::anyhow!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
    Ok(Some(exporter))
}

/// Test helper: logs to the test writer when `TEST_LOG` is set, stays silent otherwise.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_none() {
        return;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_test_writer())
        .try_init();
}

/// Makes `span` continue the trace of `parent` (the `traceparent` value received
/// with a call or an event) and records its trace id in the span's `trace_id` field,
/// so every log line inside it carries the id. A missing or malformed `parent`
/// starts a new trace. Call before the span is entered.
pub fn continue_trace(span: &tracing::Span, parent: opentelemetry::Context) {
    if parent.span().span_context().is_valid() {
        // Fails only without the OpenTelemetry layer (tests), where there is no
        // trace to continue anyway.
        let _ = span.set_parent(parent);
    }
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
    }
}

/// The trace context in gRPC metadata (HTTP/2 headers): the caller's trace and span
/// ids and sampling flag, not its `tracestate` (vendor data a caller could use to
/// steer what our services send on to each other).
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    let extracted = TraceContextPropagator::new().extract(&HeaderCarrier(headers));
    let ids = extracted.span().span_context().clone();
    if !ids.is_valid() {
        return opentelemetry::Context::new();
    }
    opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        ids.trace_id(),
        ids.span_id(),
        ids.trace_flags(),
        true,
        TraceState::default(),
    ))
}

/// The `traceparent` of the span running now (the innermost one the OpenTelemetry
/// layer traces), if any: what an event enqueued now continues.
pub fn current_traceparent() -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&opentelemetry::Context::current(), &mut carrier);
    carrier.remove("traceparent")
}

/// `s` cut to at most 64 bytes (on a character boundary): for ids a client sent,
/// recorded on spans and log lines before they are validated.
pub fn clip(s: &str) -> &str {
    if s.len() <= 64 {
        return s;
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The trace context of a `traceparent` value (an event's header).
pub fn extract_traceparent(traceparent: &str) -> opentelemetry::Context {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// Puts `span`'s trace context into outgoing gRPC metadata.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderCarrierMut(headers));
}

/// `span`'s `traceparent` value, if it is part of a trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Opens a server span for every application call, continuing the caller's trace
/// (`traceparent` metadata) or starting one, and records the call's gRPC status on
/// it. Health checks and reflection get none: probes every few seconds would bury
/// the bookings.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Traced { inner }
    }
}

/// See [`TraceLayer`].
#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
}

impl<S, B, ResBody> Service<http::Request<B>> for Traced<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<StatusWatch<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.") {
            let future = self.inner.call(req);
            return Box::pin(async move { Ok(watch_status(future.await?, |_| {})) });
        }
        let span = tracing::info_span!(
            "rpc",
            otel.name = path,
            otel.kind = "server",
            rpc.system = "grpc",
            trace_id = tracing::field::Empty,
        );
        continue_trace(&span, extract(req.headers()));
        let future = span.in_scope(|| self.inner.call(req));
        let finished = span.clone();
        Box::pin(
            async move {
                let response = future.await?;
                Ok(watch_status(response, move |code| {
                    // A path no service routes is named like the metrics name it, so
                    // made-up paths cannot mint span names.
                    if code == Code::Unimplemented {
                        finished.record("otel.name", "unknown");
                    }
                    record_status(&finished, Side::Server, code);
                }))
            }
            .instrument(span),
        )
    }
}

/// Which side of a call a span is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Puts a call's gRPC status on its span. As OpenTelemetry's gRPC conventions say, a
/// client span is an error for any code but OK, a server span only for the codes that
/// mean the server failed.
pub fn record_status(span: &tracing::Span, side: Side, code: Code) {
    span.set_attribute("rpc.grpc.status_code", i64::from(code as i32));
    let failed = match side {
        Side::Client => code != Code::Ok,
        Side::Server => matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ),
    };
    if failed {
        span.set_status(opentelemetry::trace::Status::error(format!("{code:?}")));
    }
}

struct HeaderCarrier<'a>(&'a http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderCarrierMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderCarrierMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_read_from_grpc_metadata_and_a_bad_one_is_ignored() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let context = extract(&headers);
        let ids = context.span().span_context().clone();
        assert_eq!(
            ids.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(ids.span_id().to_string(), "00f067aa0ba902b7");
        assert!(ids.is_remote() && ids.is_sampled());

        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            let context = extract_traceparent(bad);
            assert!(
                !context.span().span_context().is_valid(),
                "{bad} must start a new trace"
            );
        }
    }

    #[test]
    fn migration_chatter_is_quiet_at_info_and_back_when_asked_for() {
        let quiet = log_filter("info").unwrap().to_string();
        assert!(quiet.contains("sea_orm_migration=warn"), "{quiet}");
        for asked in [
            "debug",
            "info,sea_orm_migration=info",
            "warn,platform=debug",
            "error",
        ] {
            let kept = log_filter(asked).unwrap().to_string();
            assert!(!kept.contains("sea_orm_migration=warn"), "{asked}: {kept}");
        }
        assert!(log_filter("info,=bad=").is_err());
    }

    /// Collects what the log layer writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_line_carries_the_trace_id_even_when_the_log_filter_hides_its_span() {
        // Arrange: the layers `init` installs, with RUST_LOG=warn.
        let provider = SdkTracerProvider::builder().build();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLine)
                    .with_writer(move || writer.clone())
                    .with_filter(log_filter("warn").unwrap()),
            )
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("test"))
                    .with_filter(traced_targets()),
            );

        // Act: a warning inside a call's span, which the filter keeps out of the logs.
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("rpc", trace_id = tracing::field::Empty);
            continue_trace(
                &span,
                extract_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
            let _entered = span.enter();
            tracing::warn!(order_id = "o-1", "call failed");
        });

        // Assert
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["message"], "call failed");
        assert_eq!(line["order_id"], "o-1");
        assert_eq!(line["level"], "WARN");
        assert_eq!(
            line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{text}"
        );
    }

    #[test]
    fn a_callers_tracestate_is_not_passed_on() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
                .parse()
                .unwrap(),
        );
        headers.insert("tracestate", "vendor=steer-me".parse().unwrap());
        let context = extract(&headers);
        let ids = context.span().span_context().clone();
        assert!(ids.is_valid() && ids.trace_state().header().is_empty());
    }

    #[test]
    fn clip_keeps_ids_and_cuts_long_text_on_a_character_boundary() {
        assert_eq!(
            clip("01a23762-b323-72ab-bf86-a6a4a97b536a"),
            "01a23762-b323-72ab-bf86-a6a4a97b536a"
        );
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert!(clipped.len() <= 64 && clipped.chars().all(|c| c == 'é'));
    }

    #[test]
    fn only_our_crates_spans_are_traced() {
        let targets = traced_targets();
        assert!(targets.would_enable("platform::server", &Level::INFO));
        assert!(targets.would_enable("order_svc", &Level::INFO));
        assert!(!targets.would_enable("order_svc", &Level::DEBUG));
        assert!(!targets.would_enable("sea_orm::driver", &Level::INFO));
    }
}
