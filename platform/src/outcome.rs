//! Logging each failed call once, with its cause, at the edge of the server.
//!
//! The services' error → status conversions log nothing: they hand the cause of a
//! server-side failure to [`cause`], which files its whole chain (`a: b: c`, from the
//! `#[source]` links) with the call in progress, together with the handler's span (so
//! the line carries its order, payment or reservation id). The [`OutcomeLayer`]
//! around every service then writes one line per failed call: its method, code,
//! message and cause. Server-side failures (INTERNAL, UNKNOWN, DATA_LOSS) are ERROR;
//! a failure with a filed cause (a dependency away: UNAVAILABLE, DEADLINE_EXCEEDED)
//! WARN; the caller's own mistakes, and answers the server gives by design with no
//! cause (not ready yet, no valid token), DEBUG. A call that never answers, because
//! its deadline cut it or its client went away, is logged at WARN when it is dropped,
//! with any cause filed by then. The cause never reaches the client: INTERNAL answers
//! say only "internal error".

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tonic::{Code, Status};
use tower::{Layer, Service};

/// The cause of a failed call, and the span it was filed in.
struct Filed {
    chain: String,
    span: tracing::Span,
}

type Slot = Arc<Mutex<Option<Filed>>>;

tokio::task_local! {
    static CAUSE: Slot;
}

/// Files `error`'s chain as the cause of the call in progress and returns `status`
/// unchanged; outside a call (a background task) it does nothing.
pub fn cause(status: Status, error: &(dyn Error + 'static)) -> Status {
    let filed = Filed {
        chain: chain(error),
        span: tracing::Span::current(),
    };
    let _ = CAUSE.try_with(|slot| *slot.lock().expect("cause lock") = Some(filed));
    status
}

/// INTERNAL with a fixed message and reason `INTERNAL`, `error` filed as the cause.
pub fn internal(error: &(dyn Error + 'static)) -> Status {
    let status = crate::status::Failure::new(
        Code::Internal,
        talentshare_proto::common::ErrorReason::Internal,
        "internal error",
    )
    .into_status();
    cause(status, error)
}

/// An error and its sources, outermost first, as one line.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        // thiserror's `transparent` and `{0}` messages repeat their source's text.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// Logs each failed call once (see the module doc).
#[derive(Clone, Copy, Debug, Default)]
pub struct OutcomeLayer;

impl<S> Layer<S> for OutcomeLayer {
    type Service = Outcome<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Outcome { inner }
    }
}

/// See [`OutcomeLayer`].
#[derive(Clone, Debug)]
pub struct Outcome<S> {
    inner: S,
}

impl<S, B, ResBody> Service<http::Request<B>> for Outcome<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut pending = Pending {
            method: req.uri().path().to_owned(),
            slot: Arc::new(Mutex::new(None)),
            answered: false,
        };
        let call = CAUSE.scope(pending.slot.clone(), self.inner.call(req));
        Box::pin(async move {
            let result = call.await;
            pending.answered = true;
            if let Ok(response) = &result
                && let Some(status) = Status::from_header_map(response.headers())
            {
                log(&pending.method, &status, pending.take());
            }
            result
        })
    }
}

/// A call on its way; logs it if it is dropped before it answers.
struct Pending {
    method: String,
    slot: Slot,
    answered: bool,
}

impl Pending {
    fn take(&self) -> Option<Filed> {
        self.slot.lock().expect("cause lock").take()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let filed = self.take();
        let cause = filed.as_ref().map(|f| f.chain.as_str());
        let span = filed
            .as_ref()
            .map_or_else(tracing::Span::none, |f| f.span.clone());
        span.in_scope(|| {
            tracing::warn!(method = %self.method, cause,
                "call dropped before it answered (deadline passed or client gone)");
        });
    }
}

fn log(method: &str, status: &Status, filed: Option<Filed>) {
    let code = status.code();
    let message = status.message();
    let cause = filed.as_ref().map(|f| f.chain.as_str());
    let span = filed
        .as_ref()
        .map_or_else(tracing::Span::none, |f| f.span.clone());
    let _in_call = span.enter();
    match code {
        Code::Ok => {}
        Code::Internal | Code::Unknown | Code::DataLoss => {
            tracing::error!(method, ?code, grpc_message = message, cause, "call failed");
        }
        _ if cause.is_some() => {
            tracing::warn!(method, ?code, grpc_message = message, cause, "call failed");
        }
        _ => tracing::debug!(method, ?code, grpc_message = message, "call refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("stored row is corrupt")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct Transparent(#[from] Outer);

    #[test]
    fn the_chain_names_every_cause_once() {
        let e = Transparent(Outer(std::io::Error::other("disk gone")));
        assert_eq!(chain(&e), "stored row is corrupt: disk gone");
    }

    #[tokio::test]
    async fn a_cause_filed_during_a_call_is_read_by_the_layer_and_none_leaks_out() {
        let slot = Arc::new(Mutex::new(None));
        let status = CAUSE
            .scope(slot.clone(), async {
                internal(&Outer(std::io::Error::other("disk gone")))
            })
            .await;
        assert_eq!(status.message(), "internal error", "no cause to the client");
        assert_eq!(
            slot.lock().unwrap().as_ref().map(|f| f.chain.as_str()),
            Some("stored row is corrupt: disk gone")
        );
        // Outside a call nothing is filed and nothing panics.
        let _ = internal(&Outer(std::io::Error::other("x")));
    }
}
