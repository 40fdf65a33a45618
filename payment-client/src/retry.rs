//! The retry policy, for `tower::retry`: which attempts may be sent again, when, and
//! how many across the whole client.
//!
//! An attempt is retried only when all of these hold:
//! - the method is marked idempotent (sending it twice cannot charge twice);
//! - its outcome means "not done, try again" (no connection, UNAVAILABLE,
//!   RESOURCE_EXHAUSTED; see [`crate::verdict`]); a timeout is never retried, since
//!   the call may have taken effect and the deadline is spent anyway;
//! - the call has retries left, and the jittered pause before the next attempt ends
//!   before the call's deadline;
//! - the client's retry budget has room: retries may add at most a fifth to the calls
//!   made in the last ten seconds (plus ten a second), so a callee in trouble is not
//!   buried under the retries of every caller at once.

use std::sync::Arc;
use std::time::Duration;

use platform::backoff::Backoff;
use tokio::time::Instant;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};

use crate::BoxError;
use crate::attempt::BufferedCall;
use crate::verdict::{Verdict, verdict};

/// How many retries one call and the whole client may make.
#[derive(Clone, Copy, Debug)]
pub struct RetrySettings {
    /// Most retries of one call.
    pub retries: u32,
    /// Whether a method (by gRPC path) may be sent twice.
    pub idempotent: fn(&str) -> bool,
}

/// A `tower::retry::Policy` (see the module doc). Clones share the budget; each call
/// gets its own clone, and with it its own attempt count.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    callee: &'static str,
    settings: RetrySettings,
    budget: Arc<TpsBudget>,
    backoff: Backoff,
    attempt: u32,
}

impl RetryPolicy {
    /// The policy of calls to `callee` (as named in logs).
    pub fn new(callee: &'static str, settings: RetrySettings) -> Self {
        Self {
            callee,
            settings,
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
            attempt: 0,
        }
    }
}

impl Policy<BufferedCall, http::Response<tonic::body::Body>, BoxError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        call: &mut BufferedCall,
        result: &mut Result<http::Response<tonic::body::Body>, BoxError>,
    ) -> Option<Self::Future> {
        if verdict(result) != Verdict::Retryable
            || !(self.settings.idempotent)(call.path())
            || self.attempt >= self.settings.retries
        {
            return None;
        }
        let pause = self.backoff.delay_for(self.attempt);
        if Instant::now() + pause >= call.deadline() {
            return None;
        }
        if !self.budget.withdraw() {
            tracing::debug!(callee = self.callee, "retry budget spent; not retrying");
            return None;
        }
        self.attempt += 1;
        call.attempt = self.attempt + 1;
        tracing::debug!(
            callee = self.callee,
            attempt = self.attempt,
            ?pause,
            "retrying call"
        );
        Some(tokio::time::sleep(pause))
    }

    fn clone_request(&mut self, call: &BufferedCall) -> Option<BufferedCall> {
        // Called once as each call starts (attempt 0) and again after each retry: the
        // budget grows by the calls, not by their attempts.
        if self.attempt == 0 {
            self.budget.deposit();
        }
        (self.settings.idempotent)(call.path()).then(|| call.clone())
    }
}
