//! Helpers for the one `match` per service that turns errors into gRPC statuses:
//! field violations as `google.rpc.BadRequest`, and which database failures mean
//! "try again" (UNAVAILABLE) rather than a bug (INTERNAL), and filing a failure's
//! cause for the one log line [`crate::outcome`] writes per failed call.

use sea_orm::DbErr;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::values::Violations;

pub use crate::outcome::{cause, internal};

/// INVALID_ARGUMENT naming every bad field, with a `google.rpc.BadRequest` detail.
pub fn invalid_argument(violations: &Violations) -> Status {
    let details: Vec<FieldViolation> = violations
        .iter()
        .map(|v| FieldViolation::new(v.field.clone(), v.description.clone()))
        .collect();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid request: {violations}"),
        ErrorDetails::with_bad_request(details),
    )
}

/// Whether a database error is the database being away (retry later) rather than a
/// broken query or row.
pub fn is_unavailable(e: &DbErr) -> bool {
    matches!(e, DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
}
