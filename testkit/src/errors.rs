//! Reading the machine-readable details every talentshare error carries
//! (`talentshare/common/v1/errors.proto`), so tests assert the reason a client
//! branches on, not only the code.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// What a status says beyond its code and message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    /// `ErrorInfo.reason` (e.g. `ORDER_ALREADY_ENDED`).
    pub reason: String,
    /// `ErrorInfo.domain`.
    pub domain: String,
    /// `ErrorInfo.metadata`.
    pub metadata: HashMap<String, String>,
    /// `BadRequest`: (field, description).
    pub fields: Vec<(String, String)>,
    /// `PreconditionFailure`: (type, subject, description).
    pub preconditions: Vec<(String, String, String)>,
    /// `RetryInfo.retry_delay`.
    pub retry: Option<Duration>,
}

/// The details of `status`. Panics when it has no `ErrorInfo`: every talentshare
/// error must carry one.
pub fn details(status: &Status) -> Details {
    let d = status
        .check_error_details()
        .unwrap_or_else(|e| panic!("undecodable details on {status:?}: {e}"));
    let info = d
        .error_info()
        .unwrap_or_else(|| panic!("no google.rpc.ErrorInfo on {status:?}"));
    Details {
        reason: info.reason.clone(),
        domain: info.domain.clone(),
        metadata: info.metadata.clone(),
        fields: d
            .bad_request()
            .map(|b| {
                b.field_violations
                    .iter()
                    .map(|v| (v.field.clone(), v.description.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        preconditions: d
            .precondition_failure()
            .map(|p| {
                p.violations
                    .iter()
                    .map(|v| (v.r#type.clone(), v.subject.clone(), v.description.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        retry: d.retry_info().and_then(|r| r.retry_delay),
    }
}

/// Asserts `status` has `code` and `reason`, in the `talentshare` domain, and
/// returns its details for further checks.
#[track_caller]
pub fn expect_reason(status: &Status, code: Code, reason: &str) -> Details {
    assert_eq!(status.code(), code, "{status:?}");
    let d = details(status);
    assert_eq!(d.reason, reason, "{status:?}");
    assert_eq!(d.domain, "talentshare", "{status:?}");
    d
}

/// The fields an INVALID_ARGUMENT's `BadRequest` names, once its reason is checked
/// to be `INVALID_FIELDS`.
#[track_caller]
pub fn violated_fields(status: &Status) -> Vec<String> {
    let d = expect_reason(status, Code::InvalidArgument, "INVALID_FIELDS");
    d.fields.into_iter().map(|(field, _)| field).collect()
}
