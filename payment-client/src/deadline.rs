//! The call layer: one deadline per call, retries included, and the request buffered
//! once so that layers below can send it more than once.
//!
//! The deadline is the policy's timeout or the caller's own `grpc-timeout`, whichever
//! is shorter, fixed when the call enters the stack, and it bounds everything below:
//! waiting for a concurrency slot, every attempt and every pause between attempts.
//! Layers below find it in the [`BufferedCall`]: the retry policy never sleeps past it,
//! and every attempt tells the callee only the time left (see [`crate::attempt`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tonic::Status;
use tower::{Layer, Service, ServiceExt};

use crate::BoxError;
use crate::attempt::BufferedCall;

/// Bounds each call by `timeout` (or the caller's shorter `grpc-timeout`) and buffers
/// its (small, unary) request body.
#[derive(Clone, Debug)]
pub struct DeadlineLayer {
    callee: &'static str,
    timeout: Duration,
}

impl DeadlineLayer {
    /// Calls to `callee` (as named in errors) last at most `timeout`.
    pub fn new(callee: &'static str, timeout: Duration) -> Self {
        Self { callee, timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            callee: self.callee,
            timeout: self.timeout,
        }
    }
}

/// See [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    callee: &'static str,
    timeout: Duration,
}

impl<S> Service<http::Request<tonic::body::Body>> for Deadline<S>
where
    S: Service<BufferedCall, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Waiting for the inner stack (a concurrency slot, a connection) happens inside
        // the call's future, so the deadline bounds it too.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let budget = req
            .headers()
            .get("grpc-timeout")
            .and_then(parse_grpc_timeout)
            .map_or(self.timeout, |asked| asked.min(self.timeout));
        let deadline = Instant::now() + budget;
        let inner = self.inner.clone();
        let callee = self.callee;
        Box::pin(async move {
            let call = async move {
                let (parts, body) = req.into_parts();
                let body: Bytes = body.collect().await?.to_bytes();
                inner
                    .oneshot(BufferedCall::new(parts, body, deadline))
                    .await
                    .map_err(Into::into)
            };
            match tokio::time::timeout_at(deadline, call).await {
                Ok(result) => result,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "{callee} did not answer within {budget:?}"
                ))
                .into_http()),
            }
        })
    }
}

/// A `grpc-timeout` value (1 to 8 digits and a unit, per the gRPC HTTP/2 protocol);
/// `None` for anything else, which then leaves the policy's deadline in force.
pub(crate) fn parse_grpc_timeout(value: &http::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let split = text.len().checked_sub(1)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `grpc-timeout` in milliseconds (the protocol allows at most 8 digits).
pub(crate) fn grpc_timeout_header(timeout: Duration) -> http::HeaderValue {
    let ms = timeout.as_millis().clamp(1, 99_999_999);
    http::HeaderValue::from_str(&format!("{ms}m"))
        .expect("digits and a unit are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_is_in_milliseconds() {
        assert_eq!(grpc_timeout_header(Duration::from_secs(3)), "3000m");
        assert_eq!(grpc_timeout_header(Duration::ZERO), "1m");
    }

    #[test]
    fn a_callers_grpc_timeout_is_read_in_every_unit_and_nonsense_is_ignored() {
        let parse = |s: &str| parse_grpc_timeout(&http::HeaderValue::from_str(s).unwrap());
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("250u"), Some(Duration::from_micros(250)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "12", "123456789m", "1.5S", "-1S", "10x"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
