//! The gRPC adapter: converts `talentshare.reservation.v1` messages into domain
//! types at the edge, decides who may see or act on a reservation, calls the use
//! cases ([`crate::service`]), and turns every error into a status in one `match`
//! ([`ApiError`] → [`Status`]).

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

use crate::domain::{PaymentState, Refused, RejectReason, Reservation, ReservationStatus};
use crate::payment::PaymentError;
use crate::service::{ReservationError, Reservations};
use crate::store::{ListQuery, StoreError};

/// Every way a reservation call can fail, as the caller can act on it. Failures of
/// this service or its dependencies keep their cause as the source, which
/// `platform::outcome` logs once per call; the client sees only the status.
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
    /// The reservation's state (`status`) forbids the move. The id is filled in by
    /// [`ApiError::of`] where the call knows it.
    #[error("{message}")]
    AlreadyDecided {
        reservation_id: Option<Uuid>,
        status: ReservationStatus,
        message: String,
    },
    /// Its payment is not (or no longer) approved, in `payment` when known.
    #[error("{message}")]
    PaymentNotApproved {
        reservation_id: Option<Uuid>,
        payment: Option<PaymentState>,
        message: String,
    },
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("payment-svc is unavailable ({left:?})")]
    PaymentUnavailable {
        #[source]
        cause: PaymentError,
        left: Left,
    },
    #[error("payment-svc did not answer in time ({left:?})")]
    PaymentDeadlineExceeded {
        #[source]
        cause: PaymentError,
        left: Left,
    },
    #[error("reservation call failed")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
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
        use platform::status::{Failure, RETRY_SOON, cause, unavailable};
        use talentshare_proto::common::ErrorReason as R;
        use tonic::Code;
        let conflict = |reason: R, id: &Option<Uuid>, message: &String| {
            let subject = id.map_or_else(
                || "reservations".to_owned(),
                |id| format!("reservations/{id}"),
            );
            let f = Failure::new(Code::FailedPrecondition, reason, message)
                .state_conflict(subject, message);
            match id {
                Some(id) => f.meta("reservation_id", id.to_string()),
                None => f,
            }
        };
        match &e {
            ApiError::Invalid(v) => platform::status::invalid_argument(v),
            ApiError::PermissionDenied(m) => platform::status::permission_denied(m),
            ApiError::NotFound(m) => platform::status::not_found("reservation", m),
            ApiError::AlreadyDecided {
                reservation_id,
                status,
                message,
            } => conflict(R::ReservationAlreadyDecided, reservation_id, message)
                .meta("reservation_status", to_proto_status(*status).as_str_name())
                .into_status(),
            ApiError::PaymentNotApproved {
                reservation_id,
                payment,
                message,
            } => {
                let f = conflict(R::PaymentNotApproved, reservation_id, message);
                match payment {
                    Some(p) => f.meta("payment_status", payment_status(*p).as_str_name()),
                    None => f,
                }
                .into_status()
            }
            ApiError::Unavailable(_) => unavailable(
                R::StorageUnavailable,
                "reservation storage is temporarily unavailable; retry",
                &e,
            ),
            ApiError::PaymentUnavailable { left, .. } => unavailable(
                R::PaymentServiceUnavailable,
                format!("the payment service is unavailable; {}", left.advice()),
                &e,
            ),
            ApiError::PaymentDeadlineExceeded { left, .. } => cause(
                Failure::new(
                    Code::DeadlineExceeded,
                    R::PaymentServiceTimeout,
                    format!(
                        "the payment service did not answer in time; {}",
                        left.advice()
                    ),
                )
                .retry_after(RETRY_SOON)
                .into_status(),
                &e,
            ),
            ApiError::Internal(_) => platform::status::internal(&e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("reservation not found".into()),
            StoreError::Refused(r) => r.into(),
            StoreError::Db(ref db) if platform::status::is_unavailable(db) => {
                ApiError::Unavailable(e)
            }
            e @ (StoreError::Db(_) | StoreError::Corrupt(_)) => ApiError::Internal(e.into()),
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
    caller.owns(r.customer_id().as_ref()) || may_manage(caller, r)
}

/// Whether the caller manages the talent `r` is booked with (a tombstone without a
/// booking belongs to no manager).
fn may_manage(caller: &Caller, r: &Reservation) -> bool {
    r.booking()
        .as_ref()
        .is_some_and(|b| caller.manages(b.talent_id.as_ref()))
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        let status = match r {
            Refused::InState { status, .. } => status,
            // A rejection in progress leaves the reservation REQUESTED.
            Refused::BeingRejected => ReservationStatus::Requested,
        };
        ApiError::AlreadyDecided {
            reservation_id: None,
            status,
            message: r.to_string(),
        }
    }
}

impl ApiError {
    /// The same error, about the reservation `id` (for the details of a state
    /// conflict, which the domain reports without the id).
    fn of(mut self, id: Uuid) -> Self {
        if let ApiError::AlreadyDecided { reservation_id, .. }
        | ApiError::PaymentNotApproved { reservation_id, .. } = &mut self
        {
            reservation_id.get_or_insert(id);
        }
        self
    }

    /// A failed payment call, and what it `left` behind.
    fn payment(cause: PaymentError, left: Left) -> Self {
        match cause {
            PaymentError::Unavailable(_) => ApiError::PaymentUnavailable { cause, left },
            PaymentError::DeadlineExceeded(_) => ApiError::PaymentDeadlineExceeded { cause, left },
            // The reservation's payment is not (or no longer) one that can back it.
            // Not payment-svc's own words: the manager is told what it means for them.
            PaymentError::NotFound(_) | PaymentError::Refused(_) => ApiError::PaymentNotApproved {
                reservation_id: None,
                payment: None,
                message: "the reservation's payment cannot back it: it is not found or \
                          cannot be refunded"
                    .into(),
            },
            PaymentError::Unexpected(_) | PaymentError::Malformed(_) => {
                ApiError::Internal(cause.into())
            }
        }
    }
}

impl From<ReservationError> for ApiError {
    fn from(e: ReservationError) -> Self {
        match e {
            ReservationError::Store(e) => e.into(),
            ReservationError::Refused(r) => r.into(),
            ReservationError::NotApproved(n) => ApiError::PaymentNotApproved {
                reservation_id: None,
                payment: Some(n.0),
                message: n.to_string(),
            },
            ReservationError::Payment(e) => ApiError::payment(e, Left::NothingChanged),
            ReservationError::RefundPending(e) => ApiError::payment(e, Left::RejectionPending),
            // The claim was dropped again: nothing is left of the call.
            ReservationError::RefundRefused(e) => ApiError::payment(e, Left::NothingChanged),
        }
    }
}

/// The `ReservationService` implementation.
pub struct ReservationApi {
    reservations: Reservations,
}

impl ReservationApi {
    /// An API over the use cases.
    pub fn new(reservations: Reservations) -> Self {
        Self { reservations }
    }

    /// The reservation `id`, if the caller manages its talent.
    async fn managed(&self, caller: &Caller, id: Uuid) -> Result<Reservation, ApiError> {
        match self.reservations.get(id).await {
            Ok(r) if may_manage(caller, &r) => Ok(r),
            Ok(_) | Err(ReservationError::Store(StoreError::NotFound)) => Err(not_yours(id)),
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
        self.reservations
            .confirm(current, &manager)
            .await
            .map_err(|e| ApiError::from(e).of(id))
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
        self.reservations
            .reject(id, &manager, &reason)
            .await
            .map_err(|e| ApiError::from(e).of(id))
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
        let (reservations, more) = self.reservations.list(&query).await?;
        let last = reservations.last().map(Reservation::reservation_id);
        let next_page_token = paging::next_token(more, last.as_ref());
        Ok(ListReservationsResponse {
            reservations: reservations.iter().map(to_proto).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl ReservationService for ReservationApi {
    #[tracing::instrument(skip_all, fields(reservation_id = %platform::telemetry::clip(&request.get_ref().reservation_id)))]
    async fn confirm_reservation(
        &self,
        request: Request<ConfirmReservationRequest>,
    ) -> Result<Response<ConfirmReservationResponse>, Status> {
        let caller = caller_of(&request)?;
        let reservation = self.confirm(&caller, request.into_inner()).await?;
        tracing::info!(status = ?reservation.status(), "confirm");
        Ok(Response::new(ConfirmReservationResponse {
            reservation: Some(to_proto(&reservation)),
        }))
    }

    #[tracing::instrument(skip_all, fields(reservation_id = %platform::telemetry::clip(&request.get_ref().reservation_id)))]
    async fn reject_reservation(
        &self,
        request: Request<RejectReservationRequest>,
    ) -> Result<Response<RejectReservationResponse>, Status> {
        let caller = caller_of(&request)?;
        let reservation = self.reject(&caller, request.into_inner()).await?;
        tracing::info!(status = ?reservation.status(), "reject");
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
        let reservation = match self.reservations.get(id).await {
            Ok(r) if may_see(&caller, &r) => r,
            Ok(_) | Err(ReservationError::Store(StoreError::NotFound)) => {
                return Err(not_yours(id).into());
            }
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

fn to_proto_status(s: ReservationStatus) -> pb::ReservationStatus {
    match s {
        ReservationStatus::Requested => pb::ReservationStatus::Requested,
        ReservationStatus::Confirmed => pb::ReservationStatus::Confirmed,
        ReservationStatus::Rejected => pb::ReservationStatus::Rejected,
        ReservationStatus::Cancelled => pb::ReservationStatus::Cancelled,
    }
}

fn payment_status(p: PaymentState) -> talentshare_proto::common::PaymentStatus {
    use talentshare_proto::common::PaymentStatus as P;
    match p {
        PaymentState::Approved => P::Approved,
        PaymentState::Declined => P::Declined,
        PaymentState::Refunded => P::Refunded,
        PaymentState::Voided => P::Voided,
    }
}

fn to_proto(r: &Reservation) -> pb::Reservation {
    let status = to_proto_status(r.status());
    let booking = r.booking();
    pb::Reservation {
        reservation_id: r.reservation_id().to_string(),
        order_id: r.order_id().to_string(),
        customer_id: r.customer_id().to_string(),
        // A tombstone whose approval never came has no booking to show.
        talent_id: booking.map(|b| b.talent_id.to_string()).unwrap_or_default(),
        session_start_time: booking.map(|b| to_timestamp(b.session_start)),
        session_minutes: booking.map_or(0, |b| b.session_minutes),
        payment_id: r.payment_id().map(|p| p.to_string()).unwrap_or_default(),
        status: status as i32,
        manager_id: r
            .manager_id()
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        reason: r.reason().unwrap_or_default().to_owned(),
        create_time: Some(to_timestamp(r.created_at())),
        update_time: Some(to_timestamp(r.updated_at())),
    }
}
