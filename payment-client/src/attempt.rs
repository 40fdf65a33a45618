//! One attempt of a call: the buffered request a retry can send again, and the layer
//! at the bottom of the stack that sends it with only the time left of the call's
//! deadline as its `grpc-timeout`, so no attempt is promised more time than the call
//! has.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use tokio::time::Instant;
use tower::{Layer, Service};

use platform::metrics::{Metrics, watch_status};
use platform::telemetry;
use tracing::Instrument;

use crate::BoxError;
use crate::deadline::grpc_timeout_header;

/// A call's request, buffered, with the call's deadline. Its `Debug` shows the method
/// and the body's size only: the body of a Pay holds a card number, and the headers a
/// caller's token.
#[derive(Clone)]
pub struct BufferedCall {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
    body: Bytes,
    deadline: Instant,
    /// 1 for the first attempt; the retry policy counts up.
    pub(crate) attempt: u32,
}

impl std::fmt::Debug for BufferedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedCall")
            .field("path", &self.uri.path())
            .field("body_bytes", &self.body.len())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl BufferedCall {
    pub(crate) fn new(parts: http::request::Parts, body: Bytes, deadline: Instant) -> Self {
        Self {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body,
            deadline,
            attempt: 1,
        }
    }

    /// The gRPC method's path (`/package.Service/Method`).
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// When the call must be over.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn to_http(&self) -> http::Request<tonic::body::Body> {
        let mut request = http::Request::new(tonic::body::Body::new(Full::new(self.body.clone())));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        let left = self.deadline.saturating_duration_since(Instant::now());
        request
            .headers_mut()
            .insert("grpc-timeout", grpc_timeout_header(left));
        request
    }
}

/// Sends each [`BufferedCall`] through a gRPC channel as a client span carrying its
/// trace context, counting each attempt by method, status code and attempt number
/// when given metrics.
#[derive(Clone, Default)]
pub struct AttemptLayer {
    metrics: Option<Metrics>,
}

impl AttemptLayer {
    pub fn new(metrics: Option<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for AttemptLayer {
    type Service = Attempt<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Attempt {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`AttemptLayer`].
#[derive(Clone)]
pub struct Attempt<S> {
    inner: S,
    metrics: Option<Metrics>,
}

impl<S> Service<BufferedCall> for Attempt<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, call: BufferedCall) -> Self::Future {
        // Each attempt is a client span of the caller's trace, and the callee's server
        // span its child (the `traceparent` metadata).
        let span = tracing::info_span!(
            "call",
            otel.name = call.path(),
            otel.kind = "client",
            rpc.system = "grpc",
            attempt = call.attempt,
        );
        let mut request = call.to_http();
        telemetry::inject(&span, request.headers_mut());
        let sent = span.in_scope(|| self.inner.call(request));
        let metrics = self.metrics.clone();
        let (path, attempt) = (call.path().to_owned(), call.attempt);
        let finished = span.clone();
        let record = move |code| {
            telemetry::record_status(&finished, telemetry::Side::Client, code);
            if let Some(metrics) = &metrics {
                metrics.payment_attempt(&path, code, attempt);
            }
        };
        // Recorded once, however the attempt ends: answered, not reached, or dropped
        // before an answer (the call's deadline passed, or its caller went away).
        let mut unsettled = Unsettled(Some(Box::new(record)));
        Box::pin(
            async move {
                match sent.await {
                    Ok(response) => {
                        let record = unsettled.take();
                        Ok(watch_status(response, record).map(tonic::body::Body::new))
                    }
                    Err(e) => {
                        // Not reached (connection refused, reset): what the caller sees too.
                        (unsettled.take())(tonic::Code::Unavailable);
                        Err(e.into())
                    }
                }
            }
            .instrument(span),
        )
    }
}

type Record = Box<dyn FnOnce(tonic::Code) + Send>;

/// An attempt's outcome not yet recorded; dropped unrecorded, it records CANCELLED.
struct Unsettled(Option<Record>);

impl Unsettled {
    fn take(&mut self) -> Record {
        self.0.take().unwrap_or_else(|| Box::new(|_| {}))
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(record) = self.0.take() {
            record(tonic::Code::Cancelled);
        }
    }
}
