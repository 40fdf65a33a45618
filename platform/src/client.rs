//! The client side of unary calls to another service (order-svc and reservation-svc
//! calling payment-svc).
//!
//! [`ResilientChannel`] wraps a lazily connected tonic `Channel` in the behaviour a
//! caller needs when the callee misbehaves:
//! - a deadline per call (the policy's, or the caller's own `grpc-timeout` when that is
//!   shorter), retries included; every attempt tells the callee only the time left as
//!   its `grpc-timeout`, so a retry never gets a fresh budget. The callee's clock for
//!   `grpc-timeout` starts when the request arrives, so a request held on a slow link
//!   can still run after the caller's deadline: nothing that must be safe may rest on
//!   deadlines alone (giving up an unpaid order rests on a void at payment-svc);
//! - bounded retries with jittered backoff, only for methods the caller marks
//!   idempotent and only on codes that mean "not done, try again" (UNAVAILABLE,
//!   RESOURCE_EXHAUSTED, or no connection at all), and never past the deadline;
//! - a circuit breaker: after consecutive failures it fails fast with UNAVAILABLE for
//!   a cool-down, then lets one probe call through; every state change is logged;
//! - a concurrency limit on the channel.
//!
//! Retrying needs the request twice, so the stack buffers the (small, unary) request
//! body once per call.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tower::{Service, ServiceExt};

use crate::backoff::Backoff;
use crate::settings::parse_duration;

/// How to reach payment-svc.
#[derive(Args, Clone, Debug)]
pub struct PaymentClientSettings {
    /// payment-svc's gRPC URL.
    #[arg(long, env = "PAYMENT_URL", default_value = "http://127.0.0.1:50052", value_parser = parse_http_url)]
    pub payment_url: String,
    /// Deadline of one call to payment-svc, retries included (sent as `grpc-timeout`).
    #[arg(long, env = "PAYMENT_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub payment_timeout: Duration,
    /// Most calls to payment-svc in flight at once from this process.
    #[arg(long, env = "PAYMENT_MAX_CONCURRENCY", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub payment_max_concurrency: u32,
    /// Retries of an idempotent payment call that failed with UNAVAILABLE or found no connection.
    #[arg(long, env = "PAYMENT_RETRIES", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub payment_retries: u32,
    /// Consecutive failed calls that open the circuit breaker (fail fast).
    #[arg(long, env = "PAYMENT_BREAKER_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub payment_breaker_failures: u32,
    /// How long the open breaker fails calls fast before letting one probe through.
    #[arg(long, env = "PAYMENT_BREAKER_COOLDOWN", default_value = "5s", value_parser = parse_duration)]
    pub payment_breaker_cooldown: Duration,
}

/// When a service settles work a failed payment call left unfinished (an order left
/// pending, a cancellation or rejection whose refund was not confirmed).
#[derive(Args, Clone, Debug)]
pub struct ReconcileSettings {
    /// How often the reconciler looks for work left unfinished.
    #[arg(long, env = "RECONCILE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub reconcile_interval: Duration,
    /// How old unfinished work must be before the reconciler settles it. Must exceed
    /// PAYMENT_TIMEOUT, so that no payment call for it can still be in flight.
    #[arg(long, env = "RECONCILE_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub reconcile_after: Duration,
}

impl ReconcileSettings {
    /// Checks what clap cannot check one flag at a time.
    ///
    /// # Errors
    ///
    /// A message naming the settings that disagree.
    pub fn validate(&self, payment: &PaymentClientSettings) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.reconcile_interval.is_zero(),
            "RECONCILE_INTERVAL must be greater than zero"
        );
        // Work is settled once it is RECONCILE_AFTER old; that proves no call for it
        // is still in flight only if every call ends (by its deadline) sooner.
        anyhow::ensure!(
            self.reconcile_after > payment.payment_timeout,
            "RECONCILE_AFTER ({:?}) must be longer than PAYMENT_TIMEOUT ({:?})",
            self.reconcile_after,
            payment.payment_timeout
        );
        Ok(())
    }
}

/// The anti-entropy pass: how a service periodically compares what it believes with
/// payment-svc, the owner of the money's truth, and repairs what an event lost or
/// dead-lettered left wrong.
#[derive(Args, Clone, Debug)]
pub struct AntiEntropySettings {
    /// How often the anti-entropy pass checks its next batch.
    #[arg(long, env = "ANTI_ENTROPY_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub anti_entropy_interval: Duration,
    /// Records checked per batch (one payment-svc lookup each).
    #[arg(long, env = "ANTI_ENTROPY_BATCH", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub anti_entropy_batch: u64,
    /// How long a record must have been quiet (no change, and its payment's last
    /// change too) before the pass judges it: longer than any event takes to arrive,
    /// so a repair never races the event it stands in for.
    #[arg(long, env = "ANTI_ENTROPY_QUIET", default_value = "2m", value_parser = parse_duration)]
    pub anti_entropy_quiet: Duration,
    /// How far back the pass looks: records whose last change is older are not
    /// checked again. One full pass covers the window in
    /// ceil(records changed in the window / batch) × interval.
    #[arg(long, env = "ANTI_ENTROPY_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub anti_entropy_window: Duration,
}

impl AntiEntropySettings {
    /// Checks what clap cannot check one flag at a time.
    ///
    /// # Errors
    ///
    /// A message naming the settings that disagree.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.anti_entropy_interval.is_zero(),
            "ANTI_ENTROPY_INTERVAL must be greater than zero"
        );
        anyhow::ensure!(
            self.anti_entropy_window > self.anti_entropy_quiet,
            "ANTI_ENTROPY_WINDOW ({:?}) must be longer than ANTI_ENTROPY_QUIET ({:?})",
            self.anti_entropy_window,
            self.anti_entropy_quiet
        );
        Ok(())
    }
}

/// When a payment last changed and why it was refunded, as the anti-entropy passes
/// compare them; `None` when the answer has no valid `update_time` (not trusted).
pub fn payment_change(
    payment: &talentshare_proto::payment::Payment,
) -> Option<(chrono::DateTime<chrono::Utc>, Option<String>)> {
    let updated_at = crate::time::from_proto(payment.update_time).ok()?;
    let refund_reason = Some(payment.refund_reason.clone()).filter(|r| !r.is_empty());
    Some((updated_at, refund_reason))
}

fn parse_http_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(s.trim_end_matches('/').to_owned()),
        _ => Err("must be an http:// or https:// URL with a host".into()),
    }
}

/// Every payment RPC is safe to repeat: Pay is idempotent per order id, Refund per
/// payment id, and the rest only read.
fn payment_method_is_idempotent(path: &str) -> bool {
    matches!(
        path,
        "/talentshare.payment.v1.PaymentService/Pay"
            | "/talentshare.payment.v1.PaymentService/Refund"
            | "/talentshare.payment.v1.PaymentService/Void"
            | "/talentshare.payment.v1.PaymentService/GetPayment"
            | "/talentshare.payment.v1.PaymentService/ListPayments"
    )
}

impl PaymentClientSettings {
    /// The resilient channel to payment-svc (connects on first use).
    pub fn channel(&self) -> anyhow::Result<ResilientChannel> {
        let inner = lazy_channel(
            &self.payment_url,
            self.payment_timeout,
            self.payment_max_concurrency as usize,
        )
        .map_err(|e| anyhow::anyhow!("PAYMENT_URL {}: {e}", self.payment_url))?;
        Ok(ResilientChannel::new(
            "payment-svc",
            inner,
            CallPolicy {
                timeout: self.payment_timeout,
                retries: self.payment_retries,
                idempotent: payment_method_is_idempotent,
            },
            BreakerSettings {
                failures: self.payment_breaker_failures,
                cooldown: self.payment_breaker_cooldown,
            },
        ))
    }
}

/// A channel to `url` that connects on first use, with a per-call `timeout` and at
/// most `max_concurrency` calls in flight.
pub fn lazy_channel(
    url: &str,
    timeout: Duration,
    max_concurrency: usize,
) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(1).min(timeout))
        .timeout(timeout)
        .concurrency_limit(max_concurrency)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

/// What a failed call to another service means for the caller, whatever the callee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// The callee is unreachable, overloaded or without its database: try later.
    Unavailable,
    /// No answer within the deadline: the call may or may not have taken effect.
    DeadlineExceeded,
    /// The callee answered with an error of its own (NOT_FOUND, FAILED_PRECONDITION,
    /// …): the caller maps it by code.
    Answered,
}

/// Classifies a failed call's status. One place, so every caller of every callee
/// treats broken links and timeouts alike.
pub fn classify(status: &Status) -> CallFailure {
    match status.code() {
        // UNKNOWN is how tonic reports broken connections (h2/hyper errors it cannot
        // map); RESOURCE_EXHAUSTED is the callee shedding load.
        Code::Unavailable | Code::Unknown | Code::ResourceExhausted => CallFailure::Unavailable,
        // tonic reports the channel's own timeout as CANCELLED ("Timeout expired");
        // these clients never cancel a call any other way.
        Code::DeadlineExceeded | Code::Cancelled => CallFailure::DeadlineExceeded,
        _ => CallFailure::Answered,
    }
}

/// Deadline and retry rules of one callee.
#[derive(Clone, Copy, Debug)]
pub struct CallPolicy {
    /// Deadline of a call, retries included.
    pub timeout: Duration,
    /// Most retries of one call.
    pub retries: u32,
    /// Whether a method (by gRPC path) may be sent twice.
    pub idempotent: fn(&str) -> bool,
}

/// When the breaker opens and for how long.
#[derive(Clone, Copy, Debug)]
pub struct BreakerSettings {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// How long it stays open before a probe.
    pub cooldown: Duration,
}

/// The breaker's state, as logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow; counting consecutive failures.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// One probe call is in flight; its outcome closes or re-opens the breaker.
    HalfOpen,
}

#[derive(Debug)]
struct Breaker {
    settings: BreakerSettings,
    state: BreakerState,
    failures: u32,
    /// While Open: when a probe may go. While HalfOpen: when the probe in flight counts
    /// as lost (its caller may have dropped it before recording an outcome), so another
    /// probe may go.
    open_until: Instant,
}

impl Breaker {
    fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: BreakerState::Closed,
            failures: 0,
            open_until: Instant::now(),
        }
    }

    /// Whether a call may go out now.
    fn admit(&mut self, callee: &str, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open | BreakerState::HalfOpen if now >= self.open_until => {
                self.state = BreakerState::HalfOpen;
                self.open_until = now + self.settings.cooldown;
                tracing::info!(callee, "circuit half-open: sending one probe call");
                true
            }
            BreakerState::Open | BreakerState::HalfOpen => false,
        }
    }

    fn record(&mut self, callee: &str, success: bool, now: Instant) {
        if success {
            if self.state != BreakerState::Closed {
                tracing::info!(callee, "circuit closed: calls flow again");
            }
            self.state = BreakerState::Closed;
            self.failures = 0;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let trip = match self.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => self.failures >= self.settings.failures,
            BreakerState::Open => false,
        };
        if trip {
            self.state = BreakerState::Open;
            self.open_until = now + self.settings.cooldown;
            tracing::warn!(callee, failures = self.failures, cooldown = ?self.settings.cooldown,
                "circuit open: failing calls fast");
        }
    }
}

/// A tonic-compatible channel with deadline, retries and a circuit breaker (see the
/// module doc). Cheap to clone; clones share the breaker.
#[derive(Clone)]
pub struct ResilientChannel {
    callee: &'static str,
    inner: Channel,
    policy: CallPolicy,
    breaker: Arc<Mutex<Breaker>>,
}

impl ResilientChannel {
    /// Wraps `inner`, calling the callee `callee` in logs.
    pub fn new(
        callee: &'static str,
        inner: Channel,
        policy: CallPolicy,
        breaker: BreakerSettings,
    ) -> Self {
        Self {
            callee,
            inner,
            policy,
            breaker: Arc::new(Mutex::new(Breaker::new(breaker))),
        }
    }

    /// The breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.lock().expect("breaker lock").state
    }

    async fn execute(
        self,
        req: http::Request<tonic::body::Body>,
    ) -> Result<http::Response<tonic::body::Body>, BoxError> {
        let start = Instant::now();
        let budget = req
            .headers()
            .get("grpc-timeout")
            .and_then(parse_grpc_timeout)
            .map_or(self.policy.timeout, |asked| asked.min(self.policy.timeout));
        let deadline = start + budget;
        if !self
            .breaker
            .lock()
            .expect("breaker lock")
            .admit(self.callee, start)
        {
            return Ok(Status::unavailable(format!(
                "{} is failing; circuit open, not calling it",
                self.callee
            ))
            .into_http());
        }
        let retry_allowed = (self.policy.idempotent)(req.uri().path());
        let (mut parts, body) = req.into_parts();
        let body: Bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                // The probe slot must not stay taken by a call that never went out.
                self.breaker.lock().expect("breaker lock").record(
                    self.callee,
                    false,
                    Instant::now(),
                );
                return Err(e.into());
            }
        };
        let backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
        let mut attempt = 0u32;
        loop {
            // Each attempt tells the callee only the time left, so no attempt can
            // outlive the call's deadline on the callee's side.
            let left = deadline.saturating_duration_since(Instant::now());
            parts
                .headers
                .insert("grpc-timeout", grpc_timeout_header(left));
            let request = rebuild(&parts, body.clone());
            let mut channel = self.inner.clone();
            let outcome = tokio::time::timeout_at(deadline, async {
                channel.ready().await?;
                channel.call(request).await
            })
            .await;
            let verdict = verdict_of(&outcome);
            let now = Instant::now();
            if verdict != Verdict::Retryable || !retry_allowed || attempt >= self.policy.retries {
                self.breaker.lock().expect("breaker lock").record(
                    self.callee,
                    verdict == Verdict::Done,
                    now,
                );
                return match outcome {
                    Ok(result) => result.map_err(Into::into),
                    Err(_) => Ok(Status::deadline_exceeded(format!(
                        "{} did not answer within {budget:?}",
                        self.callee
                    ))
                    .into_http()),
                };
            }
            let pause = backoff.delay_for(attempt);
            if now + pause >= deadline {
                self.breaker
                    .lock()
                    .expect("breaker lock")
                    .record(self.callee, false, now);
                return match outcome {
                    Ok(result) => result.map_err(Into::into),
                    Err(_) => unreachable_timeout(self.callee),
                };
            }
            tracing::debug!(callee = self.callee, attempt, ?pause, "retrying call");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}

/// A timeout is classified `Failed`, never `Retryable`, so the retry path cannot
/// hold one; kept total so a future change cannot panic here.
fn unreachable_timeout(callee: &str) -> Result<http::Response<tonic::body::Body>, BoxError> {
    Ok(Status::deadline_exceeded(format!("{callee} did not answer in time")).into_http())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The callee answered (any application status): the breaker counts a success.
    Done,
    /// Not done and safe to try again.
    Retryable,
    /// The callee is failing (deadline passed, internal trouble): not retried.
    Failed,
}

fn verdict_of(
    outcome: &Result<
        Result<http::Response<tonic::body::Body>, tonic::transport::Error>,
        tokio::time::error::Elapsed,
    >,
) -> Verdict {
    match outcome {
        Err(_) => Verdict::Failed,
        // No connection (refused, reset, DNS): nothing reached the callee.
        Ok(Err(_)) => Verdict::Retryable,
        Ok(Ok(response)) => {
            // Errors come as trailers-only responses: grpc-status in the headers.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map(Code::from_i32);
            match code {
                Some(Code::Unavailable) | Some(Code::ResourceExhausted) => Verdict::Retryable,
                Some(Code::DeadlineExceeded) | Some(Code::Internal) | Some(Code::Unknown) => {
                    Verdict::Failed
                }
                _ => Verdict::Done,
            }
        }
    }
}

fn rebuild(parts: &http::request::Parts, body: Bytes) -> http::Request<tonic::body::Body> {
    let mut request = http::Request::new(tonic::body::Body::new(Full::new(body)));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request
}

/// A `grpc-timeout` value (1 to 8 digits and a unit, per the gRPC HTTP/2 protocol);
/// `None` for anything else, which then leaves the policy's deadline in force.
fn parse_grpc_timeout(value: &http::HeaderValue) -> Option<Duration> {
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
fn grpc_timeout_header(timeout: Duration) -> http::HeaderValue {
    let ms = timeout.as_millis().clamp(1, 99_999_999);
    http::HeaderValue::from_str(&format!("{ms}m"))
        .expect("digits and a unit are a valid header value")
}

impl Service<http::Request<tonic::body::Body>> for ResilientChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call waits for readiness on its own clone of the channel.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.clone().execute(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            failures: 3,
            cooldown: Duration::from_secs(5),
        })
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_only() {
        let mut b = breaker();
        let t = Instant::now();
        b.record("x", false, t);
        b.record("x", false, t);
        b.record("x", true, t);
        b.record("x", false, t);
        b.record("x", false, t);
        assert_eq!(b.state, BreakerState::Closed, "a success resets the count");
        b.record("x", false, t);
        assert_eq!(b.state, BreakerState::Open);
        assert!(
            !b.admit("x", t + Duration::from_secs(1)),
            "fails fast while open"
        );
    }

    #[test]
    fn breaker_half_opens_after_cooldown_and_one_probe_decides() {
        let mut b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.record("x", false, t);
        }
        let later = t + Duration::from_secs(6);
        assert!(b.admit("x", later), "one probe after the cool-down");
        assert_eq!(b.state, BreakerState::HalfOpen);
        assert!(!b.admit("x", later), "only one probe at a time");
        // A probe whose outcome never comes back (its caller dropped it) does not
        // wedge the breaker: after another cool-down a new probe goes.
        let lost = later + Duration::from_secs(6);
        assert!(b.admit("x", lost), "a lost probe is replaced");
        b.record("x", false, lost);
        assert_eq!(b.state, BreakerState::Open, "a failed probe re-opens");
        let much_later = lost + Duration::from_secs(6);
        assert!(b.admit("x", much_later));
        b.record("x", true, much_later);
        assert_eq!(b.state, BreakerState::Closed);
        assert!(b.admit("x", much_later));
    }

    #[test]
    fn only_payment_methods_are_marked_idempotent() {
        assert!(payment_method_is_idempotent(
            "/talentshare.payment.v1.PaymentService/Pay"
        ));
        assert!(!payment_method_is_idempotent(
            "/talentshare.order.v1.OrderService/PlaceOrder"
        ));
    }

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
