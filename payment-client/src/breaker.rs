//! The circuit breaker as a tower layer: after consecutive failed calls it answers
//! UNAVAILABLE by itself for a cool-down, then lets one probe call through, whose
//! outcome closes or re-opens it. Every state change is logged.
//!
//! It sits above the deadline layer, so it sees each call once, retries included, and
//! a call that ran out of time counts as a failure. Only the callee failing counts
//! (see [`crate::verdict`]): an answer such as NOT_FOUND is the callee working.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tonic::Status;
use tower::{Layer, Service};

use crate::BoxError;
use crate::verdict::{Verdict, verdict};

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

    /// A call let through ended without an outcome (its caller dropped it): a
    /// half-open breaker's probe slot frees at once.
    fn abandon(&mut self) {
        if self.state == BreakerState::HalfOpen {
            self.open_until = Instant::now();
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

/// Puts a breaker in front of a service. Services made by one layer share its
/// breaker, so clones of a channel see one state.
#[derive(Clone, Debug)]
pub struct BreakerLayer {
    callee: &'static str,
    breaker: Arc<Mutex<Breaker>>,
}

impl BreakerLayer {
    /// A closed breaker for calls to `callee` (as named in logs and errors).
    pub fn new(callee: &'static str, settings: BreakerSettings) -> Self {
        Self {
            callee,
            breaker: Arc::new(Mutex::new(Breaker::new(settings))),
        }
    }

    /// What reads the breaker's state.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle(self.breaker.clone())
    }
}

/// Reads the state of one breaker (for tests, and for metrics to come).
#[derive(Clone, Debug)]
pub struct BreakerHandle(Arc<Mutex<Breaker>>);

impl BreakerHandle {
    /// The breaker's state now.
    pub fn state(&self) -> BreakerState {
        self.0.lock().expect("breaker lock").state
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker {
            inner,
            callee: self.callee,
            breaker: self.breaker.clone(),
        }
    }
}

/// See [`BreakerLayer`].
#[derive(Clone, Debug)]
pub struct CircuitBreaker<S> {
    inner: S,
    callee: &'static str,
    breaker: Arc<Mutex<Breaker>>,
}

impl<S, Req> Service<Req> for CircuitBreaker<S>
where
    S: Service<Req, Response = http::Response<tonic::body::Body>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let admitted = self
            .breaker
            .lock()
            .expect("breaker lock")
            .admit(self.callee, Instant::now());
        if !admitted {
            let status = Status::unavailable(format!(
                "{} is failing; circuit open, not calling it",
                self.callee
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let call = self.inner.call(req);
        let mut outcome_due = OutcomeDue {
            breaker: self.breaker.clone(),
            callee: self.callee,
            recorded: false,
        };
        Box::pin(async move {
            let outcome = call.await.map_err(Into::into);
            outcome_due.record(verdict(&outcome) == Verdict::Done);
            outcome
        })
    }
}

/// A call the breaker let through, whose outcome it is owed.
struct OutcomeDue {
    breaker: Arc<Mutex<Breaker>>,
    callee: &'static str,
    recorded: bool,
}

impl OutcomeDue {
    fn record(&mut self, success: bool) {
        self.recorded = true;
        self.breaker
            .lock()
            .expect("breaker lock")
            .record(self.callee, success, Instant::now());
    }
}

impl Drop for OutcomeDue {
    fn drop(&mut self) {
        // Dropped unanswered: the caller gave up, which says nothing of the callee.
        // A probe must not hold the half-open breaker for a whole cool-down, so the
        // next call may probe at once.
        if !self.recorded {
            self.breaker.lock().expect("breaker lock").abandon();
        }
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
        // A probe whose outcome never comes back does not wedge the breaker: after
        // another cool-down a new probe goes, and at once if its caller dropped it.
        let lost = later + Duration::from_secs(6);
        assert!(b.admit("x", lost), "a lost probe is replaced");
        b.abandon();
        assert!(
            b.admit("x", lost),
            "an abandoned probe frees its slot at once"
        );
        b.record("x", false, lost);
        assert_eq!(b.state, BreakerState::Open, "a failed probe re-opens");
        let much_later = lost + Duration::from_secs(6);
        assert!(b.admit("x", much_later));
        b.record("x", true, much_later);
        assert_eq!(b.state, BreakerState::Closed);
        assert!(b.admit("x", much_later));
    }
}
