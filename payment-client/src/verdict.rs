//! What one answer (or transport failure) means for the layers that react to it: the
//! retry policy retries only what is "not done, try again", the breaker counts only
//! the callee failing, never an answer it chose to give.

use tonic::Code;

/// The reading of one attempt's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The callee answered (any application status): the breaker counts a success.
    Done,
    /// Not done and safe to try again: no connection, or the callee said it cannot
    /// serve now (UNAVAILABLE, RESOURCE_EXHAUSTED).
    Retryable,
    /// The callee is failing (deadline passed, internal trouble): not retried, since
    /// the call may have taken effect.
    Failed,
}

/// Reads an outcome. Errors come as trailers-only responses, so `grpc-status` is in
/// the headers whenever the call failed before any message.
pub(crate) fn verdict<B, E>(outcome: &Result<http::Response<B>, E>) -> Verdict {
    match outcome {
        // No connection (refused, DNS), or one lost mid-call: usually nothing reached
        // the callee; when something did, repeating is still safe, since only
        // idempotent methods are retried.
        Err(_) => Verdict::Retryable,
        Ok(response) => match grpc_status(response) {
            Some(Code::Unavailable | Code::ResourceExhausted) => Verdict::Retryable,
            Some(Code::DeadlineExceeded | Code::Cancelled | Code::Internal | Code::Unknown) => {
                Verdict::Failed
            }
            _ => Verdict::Done,
        },
    }
}

fn grpc_status<B>(response: &http::Response<B>) -> Option<Code> {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(code: Code) -> Result<http::Response<()>, ()> {
        Ok(tonic::Status::new(code, "x").into_http())
    }

    #[test]
    fn only_not_done_outcomes_are_retryable() {
        assert_eq!(verdict::<(), ()>(&Err(())), Verdict::Retryable);
        assert_eq!(verdict(&answered(Code::Unavailable)), Verdict::Retryable);
        assert_eq!(
            verdict(&answered(Code::ResourceExhausted)),
            Verdict::Retryable
        );
        assert_eq!(verdict(&answered(Code::DeadlineExceeded)), Verdict::Failed);
        assert_eq!(verdict(&answered(Code::Internal)), Verdict::Failed);
        assert_eq!(verdict(&answered(Code::NotFound)), Verdict::Done);
        assert_eq!(verdict(&answered(Code::FailedPrecondition)), Verdict::Done);
        assert_eq!(
            verdict::<(), ()>(&Ok(http::Response::new(()))),
            Verdict::Done,
            "a response with no grpc-status in its headers carries a message"
        );
    }
}
