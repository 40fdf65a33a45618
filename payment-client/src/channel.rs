//! The resilient channel: a lazily connected tonic `Channel` under the layers a
//! caller needs when the callee misbehaves, outermost first:
//!
//! 1. [`crate::breaker`]: fail fast while the callee keeps failing;
//! 2. [`crate::deadline`]: one deadline per call, retries and waits included;
//! 3. a concurrency limit (`tower::limit`): at most so many calls in flight, the rest
//!    wait (within their deadline) for a slot;
//! 4. `tower::retry` with [`crate::retry::RetryPolicy`]: budgeted, jittered retries of
//!    idempotent methods that were not done;
//! 5. [`crate::attempt`]: each attempt sent with only the time left.

use std::task::{Context, Poll};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tower::limit::ConcurrencyLimitLayer;
use tower::retry::RetryLayer;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};

use platform::metrics::Metrics;

use crate::BoxError;
use crate::attempt::AttemptLayer;
use crate::breaker::{BreakerHandle, BreakerLayer, BreakerSettings, BreakerState};
use crate::deadline::DeadlineLayer;
use crate::retry::{RetryPolicy, RetrySettings};

/// The rules of calls to one callee.
#[derive(Clone, Copy, Debug)]
pub struct CallPolicy {
    /// Deadline of a call, retries included.
    pub timeout: Duration,
    /// Retries per call, and which methods may be retried.
    pub retry: RetrySettings,
    /// Most calls in flight at once.
    pub max_concurrency: usize,
    /// When the breaker opens and for how long.
    pub breaker: BreakerSettings,
}

type Stack = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    BoxError,
>;

/// A tonic-compatible channel with the layers of the module doc. Cheap to clone;
/// clones share the breaker, the concurrency limit and the retry budget.
#[derive(Clone)]
pub struct ResilientChannel {
    stack: Stack,
    breaker: BreakerHandle,
}

impl ResilientChannel {
    /// `inner` under the layers of `policy`, naming the callee `callee` in logs and
    /// errors; with `metrics`, each attempt is counted and the breaker's state read
    /// at each scrape.
    pub fn new(
        callee: &'static str,
        inner: Channel,
        policy: CallPolicy,
        metrics: Option<Metrics>,
    ) -> Self {
        let breaker = BreakerLayer::new(callee, policy.breaker);
        let handle = breaker.handle();
        if let Some(metrics) = &metrics {
            let read = handle.clone();
            metrics.watch_breaker(move || match read.state() {
                BreakerState::Closed => "closed",
                BreakerState::Open => "open",
                BreakerState::HalfOpen => "half_open",
            });
        }
        let stack = ServiceBuilder::new()
            .layer(breaker)
            .layer(DeadlineLayer::new(callee, policy.timeout))
            .layer(ConcurrencyLimitLayer::new(policy.max_concurrency))
            .layer(RetryLayer::new(RetryPolicy::new(callee, policy.retry)))
            .layer(AttemptLayer::new(metrics))
            .service(inner);
        Self {
            stack: BoxCloneSyncService::new(stack),
            breaker: handle,
        }
    }

    /// The breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }
}

impl Service<http::Request<tonic::body::Body>> for ResilientChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = <Stack as Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.stack.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        self.stack.call(req)
    }
}

/// A channel to `url` that connects on first use. Deadlines and limits are the
/// layers' business, so the endpoint sets only how long connecting may take.
pub fn lazy_channel(url: &str, connect_timeout: Duration) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}
