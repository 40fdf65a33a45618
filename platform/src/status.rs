//! Helpers for the one `match` per service that turns errors into gRPC statuses:
//! every status carries the machine-readable details the contract promises
//! (`talentshare/common/v1/errors.proto`): a `google.rpc.ErrorInfo` with a stable
//! reason, plus `BadRequest`, `PreconditionFailure` or `RetryInfo` where they
//! apply. Also which database failures mean "try again" (UNAVAILABLE) rather than
//! a bug (INTERNAL), and filing a failure's cause for the one log line
//! [`crate::outcome`] writes per failed call.

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::DbErr;
use talentshare_proto::common::ErrorReason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::values::Violations;

pub use crate::outcome::{cause, internal};

/// `google.rpc.ErrorInfo.domain` of every talentshare error.
pub const DOMAIN: &str = "talentshare";

/// The retry delay of failures that clear up by themselves within moments: a
/// database or a dependency briefly away, a payment still in flight.
pub const RETRY_SOON: Duration = Duration::from_secs(1);

/// The `PreconditionFailure` violation type of every state conflict.
pub const STATE: &str = "STATE";

/// The reason as it goes on the wire: the value name without `ERROR_REASON_`.
pub fn reason_name(reason: ErrorReason) -> &'static str {
    let name = reason.as_str_name();
    name.strip_prefix("ERROR_REASON_").unwrap_or(name)
}

/// A non-OK status under construction, with its details. Every status a
/// talentshare service returns is built here, so none lacks its `ErrorInfo`.
#[derive(Debug)]
#[must_use]
pub struct Failure {
    code: Code,
    reason: ErrorReason,
    message: String,
    metadata: HashMap<String, String>,
    details: ErrorDetails,
}

impl Failure {
    /// A failure with `code`, its stable `reason` and a message for people.
    pub fn new(code: Code, reason: ErrorReason, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            metadata: HashMap::new(),
            details: ErrorDetails::new(),
        }
    }

    /// Adds an `ErrorInfo.metadata` entry (snake_case key, as the reason documents).
    pub fn meta(mut self, key: &str, value: impl Into<String>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a `PreconditionFailure` violation of type [`STATE`]: `subject` names the
    /// resource (`orders/<id>`), `description` the state that blocked the call.
    pub fn state_conflict(mut self, subject: String, description: impl Into<String>) -> Self {
        self.details
            .add_precondition_failure_violation(STATE, subject, description.into());
        self
    }

    /// Adds `RetryInfo`: the same request may succeed if sent again after `delay`.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.details.set_retry_info(Some(delay));
        self
    }

    /// The status, its details in `grpc-status-details-bin`.
    pub fn into_status(self) -> Status {
        let Self {
            code,
            reason,
            message,
            metadata,
            mut details,
        } = self;
        details.set_error_info(reason_name(reason), DOMAIN, metadata);
        Status::with_error_details(code, message, details)
    }
}

impl From<Failure> for Status {
    fn from(f: Failure) -> Self {
        f.into_status()
    }
}

/// INVALID_ARGUMENT naming every bad field, with a `google.rpc.BadRequest` detail.
pub fn invalid_argument(violations: &Violations) -> Status {
    let mut f = Failure::new(
        Code::InvalidArgument,
        ErrorReason::InvalidFields,
        format!("invalid request: {violations}"),
    );
    for v in violations.iter() {
        f.details
            .add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    f.into_status()
}

/// PERMISSION_DENIED ([`ErrorReason::AccessDenied`]); its metadata names nothing,
/// so it cannot tell "not yours" from "not there".
pub fn permission_denied(message: impl Into<String>) -> Status {
    Failure::new(Code::PermissionDenied, ErrorReason::AccessDenied, message).into_status()
}

/// NOT_FOUND ([`ErrorReason::NotFound`]) for a resource of `resource_type`.
pub fn not_found(resource_type: &str, message: impl Into<String>) -> Status {
    Failure::new(Code::NotFound, ErrorReason::NotFound, message)
        .meta("resource_type", resource_type)
        .into_status()
}

/// UNAVAILABLE with RetryInfo: a dependency (named by `reason`) is away for now.
/// The `error` is filed as the call's cause for the log line.
pub fn unavailable(
    reason: ErrorReason,
    message: impl Into<String>,
    error: &(dyn std::error::Error + 'static),
) -> Status {
    cause(
        Failure::new(Code::Unavailable, reason, message)
            .retry_after(RETRY_SOON)
            .into_status(),
        error,
    )
}

/// Whether a database error is the database being away (retry later) rather than a
/// broken query or row.
pub fn is_unavailable(e: &DbErr) -> bool {
    matches!(e, DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
}
