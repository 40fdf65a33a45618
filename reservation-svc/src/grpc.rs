//! The gRPC adapter: converts `talentshare.reservation.v1` messages into domain
//! types at the edge, runs the managers' actions (state check, the unary call to
//! payment-svc, then the stored change), and turns every error into a status in one
//! `match` ([`ApiError`] → [`Status`]).
//!
//! Confirming checks the state twice: before calling payment-svc (so a repeat or a
//! refused action never reaches it) and again under the row lock when storing (the
//! reservation may have changed during the call); a failed payment call stores
//! nothing, so the caller can simply retry. Rejecting records the rejection first
//! (see [`crate::rejection`]); a failed refund leaves it pending, and a retry or the
//! reconciler finishes it.

use chrono::Utc;
use platform::auth::{Caller, Denied, caller_of};
use platform::paging;
use platform::time::to_proto as to_timestamp;
use platform::values::{ExternalId, Violations, parse_uuid};
use talentshare_proto::reservation::{
    self as pb, ConfirmReservationRequest, ConfirmReservationResponse, GetReservationRequest,
    GetReservationResponse, ListReservationsRequest, ListReservationsResponse,
    RejectReservationRequest, RejectReservationResponse,
    reservation_service_server::ReservationService,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{self, RejectReason, Reservation, ReservationStatus, Transition};
use crate::payment::{self, PaymentError, PaymentGateway};
use crate::rejection::{RejectError, Rejections};
use crate::store::{ListQuery, ReservationStore, StoreError};

/// Every way a reservation call can fail, as the caller can act on it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(Violations),
    /// Not the caller's to see or change, or not there at all: the same answer either
    /// way, so ids cannot be probed (AIP-211).
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("{detail}")]
    PaymentUnavailable { detail: String, left: Left },
    #[error("{detail}")]
    PaymentDeadlineExceeded { detail: String, left: Left },
    #[error("{0}")]
    Internal(String),
}

/// What a failed payment call left behind, as the caller is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Left {
    /// Nothing was stored: retrying is up to the caller.
    NothingChanged,
    /// The rejection is recorded (the reservation can no longer be confirmed) and
    /// completes by itself; a retry completes it sooner.
    RejectionPending,
}

impl Left {
    fn advice(self) -> &'static str {
        match self {
            Left::NothingChanged => "nothing changed, retry",
            Left::RejectionPending => {
                "the rejection is recorded and completes by itself; retrying completes it sooner"
            }
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid(v) => platform::status::invalid_argument(&v),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                Status::unavailable("reservation storage is temporarily unavailable; retry")
            }
            ApiError::PaymentUnavailable { detail, left } => {
                tracing::warn!(error = %detail, ?left, "payment-svc unavailable");
                Status::unavailable(format!(
                    "the payment service is unavailable; {}",
                    left.advice()
                ))
            }
            ApiError::PaymentDeadlineExceeded { detail, left } => {
                tracing::warn!(error = %detail, ?left, "payment-svc timed out");
                Status::deadline_exceeded(format!(
                    "the payment service did not answer in time; {}",
                    left.advice()
                ))
            }
            ApiError::Internal(m) => platform::status::internal("reservation call failed", &m),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("reservation not found".into()),
            StoreError::Refused(r) => ApiError::FailedPrecondition(r.to_string()),
            StoreError::Db(e) if platform::status::is_unavailable(&e) => {
                ApiError::Unavailable(e.to_string())
            }
            StoreError::Db(e) => ApiError::Internal(e.to_string()),
            StoreError::Corrupt(m) => ApiError::Internal(m),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        ApiError::PermissionDenied(d.0)
    }
}

/// The answer for a reservation the caller may not act on, or that does not exist.
fn not_yours(id: Uuid) -> ApiError {
    ApiError::PermissionDenied(format!(
        "reservation {id} does not exist or is not yours to see or change"
    ))
}

/// `manager_id` in a request may only repeat the token's subject.
fn check_manager_field(field: &str, caller: &Caller) -> Result<(), ApiError> {
    let manager = caller.manager()?;
    if field.is_empty() || field == manager.as_ref() {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(
            "manager_id must be the caller's own id (or empty)".into(),
        ))
    }
}

/// Whether the caller may see `r`: its customer, or a manager of its talent.
fn may_see(caller: &Caller, r: &Reservation) -> bool {
    caller.owns(r.customer_id.as_ref()) || may_manage(caller, r)
}

/// Whether the caller manages the talent `r` is booked with (a tombstone without a
/// booking belongs to no manager).
fn may_manage(caller: &Caller, r: &Reservation) -> bool {
    r.booking
        .as_ref()
        .is_some_and(|b| caller.manages(b.talent_id.as_ref()))
}

impl ApiError {
    /// A failed payment call, and what it `left` behind.
    fn payment(e: PaymentError, left: Left) -> Self {
        let detail = e.to_string();
        match e {
            PaymentError::Unavailable(_) => ApiError::PaymentUnavailable { detail, left },
            PaymentError::DeadlineExceeded(_) => ApiError::PaymentDeadlineExceeded { detail, left },
            // The reservation's payment is not (or no longer) one that can back it.
            PaymentError::NotFound(_) | PaymentError::Refused(_) => {
                ApiError::FailedPrecondition(detail)
            }
            PaymentError::Unexpected(_) | PaymentError::Malformed(_) => ApiError::Internal(detail),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        ApiError::payment(e, Left::NothingChanged)
    }
}

impl From<RejectError> for ApiError {
    fn from(e: RejectError) -> Self {
        match e {
            RejectError::Store(e) => e.into(),
            RejectError::RefundPending(e) => ApiError::payment(e, Left::RejectionPending),
            // The claim was dropped again: nothing is left of the call.
            RejectError::RefundRefused(e) => ApiError::payment(e, Left::NothingChanged),
        }
    }
}

/// The `ReservationService` implementation.
pub struct ReservationApi {
    store: ReservationStore,
    payment: PaymentGateway,
    rejections: Rejections,
}

impl ReservationApi {
    /// An API over `store`, checking payments through `payment` and rejecting
    /// through `rejections`.
    pub fn new(store: ReservationStore, payment: PaymentGateway, rejections: Rejections) -> Self {
        Self {
            store,
            payment,
            rejections,
        }
    }

    /// The reservation `id`, if the caller manages its talent.
    async fn managed(&self, caller: &Caller, id: Uuid) -> Result<Reservation, ApiError> {
        match self.store.get(id).await {
            Ok(r) if may_manage(caller, &r) => Ok(r),
            Ok(_) | Err(StoreError::NotFound) => Err(not_yours(id)),
            Err(e) => Err(e.into()),
        }
    }

    async fn confirm(
        &self,
        caller: &Caller,
        req: ConfirmReservationRequest,
    ) -> Result<Reservation, ApiError> {
        check_manager_field(&req.manager_id, caller)?;
        let manager = caller.manager()?.clone();
        let id = uuid_field("reservation_id", &req.reservation_id)?;
        let current = self.managed(caller, id).await?;
        match current.confirm(&manager, Utc::now()) {
            Err(refused) => return Err(ApiError::FailedPrecondition(refused.to_string())),
            Ok(Transition::AlreadyDone) => return Ok(current),
            Ok(Transition::Changed(..)) => {}
        }
        let state = payment::state(&self.payment, paid_with(&current)?).await?;
        domain::require_approved(state).map_err(|e| ApiError::FailedPrecondition(e.to_string()))?;
        Ok(self.store.confirm(id, &manager).await?)
    }

    async fn reject(
        &self,
        caller: &Caller,
        req: RejectReservationRequest,
    ) -> Result<Reservation, ApiError> {
        check_manager_field(&req.manager_id, caller)?;
        let manager = caller.manager()?.clone();
        let mut v = Violations::new();
        let id = v.check("reservation_id", parse_uuid(&req.reservation_id));
        let reason = v.check("reason", RejectReason::try_from(req.reason));
        let (Some(id), Some(reason)) = (id, reason) else {
            return Err(ApiError::Invalid(v));
        };
        self.managed(caller, id).await?;
        // Refund before REJECTED: `reservation.rejected` promises the payment was
        // refunded. The claim recorded first keeps a confirmation out meanwhile.
        Ok(self.rejections.reject(id, &manager, &reason).await?)
    }

    async fn list(
        &self,
        caller: &Caller,
        req: ListReservationsRequest,
    ) -> Result<ListReservationsResponse, ApiError> {
        caller.manager()?;
        // Only one talent's bookings at a time, and only a talent the caller manages.
        if !caller.manages(&req.talent_id) {
            return Err(ApiError::PermissionDenied(
                "talent_id must name a talent the caller manages".into(),
            ));
        }
        let mut v = Violations::new();
        let limit = v.check("page_size", paging::page_size(req.page_size));
        let after = v.check("page_token", paging::decode_token(&req.page_token));
        let talent_id = v.check("talent_id", ExternalId::try_from(req.talent_id));
        let status = match pb::ReservationStatus::try_from(req.status) {
            Ok(pb::ReservationStatus::Unspecified) => None,
            Ok(pb::ReservationStatus::Requested) => Some(ReservationStatus::Requested),
            Ok(pb::ReservationStatus::Confirmed) => Some(ReservationStatus::Confirmed),
            Ok(pb::ReservationStatus::Rejected) => Some(ReservationStatus::Rejected),
            Ok(pb::ReservationStatus::Cancelled) => Some(ReservationStatus::Cancelled),
            Err(_) => {
                v.add(
                    "status",
                    format!("unknown ReservationStatus value {}", req.status),
                );
                None
            }
        };
        v.into_result().map_err(ApiError::Invalid)?;
        let query = ListQuery {
            talent_id,
            status,
            after: after.flatten(),
            limit: limit.unwrap_or(paging::DEFAULT_PAGE_SIZE),
        };
        let (reservations, more) = self.store.list(&query).await?;
        let next_page_token = match (more, reservations.last()) {
            (true, Some(last)) => paging::encode_token(&last.reservation_id),
            _ => String::new(),
        };
        Ok(ListReservationsResponse {
            reservations: reservations.iter().map(to_proto).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl ReservationService for ReservationApi {
    #[tracing::instrument(skip_all, fields(reservation_id = %request.get_ref().reservation_id))]
    async fn confirm_reservation(
        &self,
        request: Request<ConfirmReservationRequest>,
    ) -> Result<Response<ConfirmReservationResponse>, Status> {
        let caller = caller_of(&request)?;
        let reservation = self.confirm(&caller, request.into_inner()).await?;
        tracing::info!(status = ?reservation.status, "confirm");
        Ok(Response::new(ConfirmReservationResponse {
            reservation: Some(to_proto(&reservation)),
        }))
    }

    #[tracing::instrument(skip_all, fields(reservation_id = %request.get_ref().reservation_id))]
    async fn reject_reservation(
        &self,
        request: Request<RejectReservationRequest>,
    ) -> Result<Response<RejectReservationResponse>, Status> {
        let caller = caller_of(&request)?;
        let reservation = self.reject(&caller, request.into_inner()).await?;
        tracing::info!(status = ?reservation.status, "reject");
        Ok(Response::new(RejectReservationResponse {
            reservation: Some(to_proto(&reservation)),
        }))
    }

    async fn get_reservation(
        &self,
        request: Request<GetReservationRequest>,
    ) -> Result<Response<GetReservationResponse>, Status> {
        let caller = caller_of(&request)?;
        let id = uuid_field("reservation_id", &request.into_inner().reservation_id)?;
        let reservation = match self.store.get(id).await {
            Ok(r) if may_see(&caller, &r) => r,
            Ok(_) | Err(StoreError::NotFound) => return Err(not_yours(id).into()),
            Err(e) => return Err(ApiError::from(e).into()),
        };
        Ok(Response::new(GetReservationResponse {
            reservation: Some(to_proto(&reservation)),
        }))
    }

    async fn list_reservations(
        &self,
        request: Request<ListReservationsRequest>,
    ) -> Result<Response<ListReservationsResponse>, Status> {
        let caller = caller_of(&request)?;
        Ok(Response::new(
            self.list(&caller, request.into_inner()).await?,
        ))
    }
}

fn uuid_field(field: &str, s: &str) -> Result<Uuid, ApiError> {
    parse_uuid(s).map_err(|e| {
        let mut v = Violations::new();
        v.add(field, e.to_string());
        ApiError::Invalid(v)
    })
}

/// The payment behind a reservation a manager may still act on. Storage guarantees
/// one (only a CANCELLED tombstone may lack it), so a miss is a bug, not input.
fn paid_with(r: &Reservation) -> Result<Uuid, ApiError> {
    r.payment_id.ok_or_else(|| {
        ApiError::Internal(format!(
            "reservation {} is {} without a payment",
            r.reservation_id, r.status
        ))
    })
}

fn to_proto(r: &Reservation) -> pb::Reservation {
    let status = match r.status {
        ReservationStatus::Requested => pb::ReservationStatus::Requested,
        ReservationStatus::Confirmed => pb::ReservationStatus::Confirmed,
        ReservationStatus::Rejected => pb::ReservationStatus::Rejected,
        ReservationStatus::Cancelled => pb::ReservationStatus::Cancelled,
    };
    let booking = r.booking.as_ref();
    pb::Reservation {
        reservation_id: r.reservation_id.to_string(),
        order_id: r.order_id.to_string(),
        customer_id: r.customer_id.to_string(),
        // A tombstone whose approval never came has no booking to show.
        talent_id: booking.map(|b| b.talent_id.to_string()).unwrap_or_default(),
        session_start_time: booking.map(|b| to_timestamp(b.session_start)),
        session_minutes: booking.map_or(0, |b| b.session_minutes),
        payment_id: r.payment_id.map(|p| p.to_string()).unwrap_or_default(),
        status: status as i32,
        manager_id: r
            .manager_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        reason: r.reason.clone().unwrap_or_default(),
        create_time: Some(to_timestamp(r.created_at)),
        update_time: Some(to_timestamp(r.updated_at)),
    }
}
