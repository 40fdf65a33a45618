//! The gRPC adapter: converts `talentshare.mypage.v1` requests into domain types at
//! the edge, decides whose page the caller may read, calls the use cases
//! ([`crate::service`]), and turns every error into a status in one `match`
//! ([`ApiError`] → [`Status`]). The stream behind `WatchMyPage` lives in
//! [`crate::watch`].

use platform::auth::{Denied, caller_of, token_expiry_of};
use platform::paging::{self, ResumeTokenError, decode_resume_token};
use platform::time::to_proto as to_timestamp;
use platform::values::{Violations, parse_uuid};
use talentshare_proto::mypage::{
    GetMyPageEntryRequest, GetMyPageEntryResponse, GetMyPageRequest, GetMyPageResponse,
    MyPageEntry, WatchMyPageRequest, my_page_service_server::MyPageService,
};
use talentshare_proto::{order as order_pb, payment as payment_pb, reservation as reservation_pb};
use tonic::{Request, Response, Status};

use crate::domain::{Entry, OrderStatus, PaymentStatus, ReservationStatus};
use crate::service::{MyPage, MyPageError};
use crate::store::StoreError;
use crate::watch::{HEARTBEAT_RANGE, Markers, Resume, WatchStream};

/// Every way a my-page call can fail, as the caller can act on it. Failures of this
/// service keep their cause as the source, which `platform::outcome` logs once per
/// call; the client sees only the status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(Violations),
    /// Not the caller's, or not there at all: the same answer either way (AIP-211).
    #[error("{0}")]
    PermissionDenied(String),
    /// Too many WatchMyPage streams are open on this instance.
    #[error("{0}")]
    Exhausted(String),
    /// A WatchMyPage client read too slowly and missed changes.
    #[error("{0}")]
    Lagging(String),
    /// The service is shutting down: reconnect to another replica.
    #[error("service is shutting down")]
    ShuttingDown,
    /// The token that opened a WatchMyPage stream has expired.
    #[error("the token expired")]
    TokenExpired,
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    /// The change feed (PostgreSQL LISTEN) is not connected yet.
    #[error("change notifications are not connected")]
    NotConnected,
    #[error("my page call failed")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How long a client refused for too many streams waits before trying again.
const WATCHERS_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        use platform::status::{Failure, RETRY_SOON, unavailable};
        use talentshare_proto::common::ErrorReason as R;
        use tonic::Code;
        match &e {
            ApiError::Invalid(v) => platform::status::invalid_argument(v),
            ApiError::PermissionDenied(m) => platform::status::permission_denied(m),
            ApiError::Exhausted(m) => Failure::new(Code::ResourceExhausted, R::TooManyWatchers, m)
                .retry_after(WATCHERS_RETRY)
                .into_status(),
            ApiError::Lagging(m) => {
                Failure::new(Code::Aborted, R::WatchFellBehind, m).into_status()
            }
            ApiError::ShuttingDown => Failure::new(
                Code::Unavailable,
                R::ShuttingDown,
                "my page is shutting down on this server; reconnect",
            )
            .retry_after(std::time::Duration::ZERO)
            .into_status(),
            ApiError::TokenExpired => Failure::new(
                Code::Unauthenticated,
                R::TokenExpired,
                "the token has expired; reconnect with a fresh one",
            )
            .into_status(),
            ApiError::Unavailable(_) => unavailable(
                R::StorageUnavailable,
                "my page storage is temporarily unavailable; retry",
                &e,
            ),
            ApiError::NotConnected => Failure::new(
                Code::Unavailable,
                R::ChangeFeedUnavailable,
                "my page change notifications are not connected yet; retry",
            )
            .retry_after(RETRY_SOON)
            .into_status(),
            ApiError::Internal(_) => platform::status::internal(&e),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        ApiError::PermissionDenied(d.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(ref db) if platform::status::is_unavailable(db) => {
                ApiError::Unavailable(e)
            }
            e @ (StoreError::Db(_) | StoreError::Corrupt(_)) => ApiError::Internal(e.into()),
        }
    }
}

impl From<MyPageError> for ApiError {
    fn from(e: MyPageError) -> Self {
        match e {
            MyPageError::Store(e) => e.into(),
            MyPageError::ForeignToken => {
                let mut v = Violations::new();
                v.add(
                    "page_token",
                    "is not a token this service issued for this customer_id",
                );
                ApiError::Invalid(v)
            }
            MyPageError::TooManyWatchers => ApiError::Exhausted(
                "too many WatchMyPage streams on this server; retry later".into(),
            ),
        }
    }
}

/// The `MyPageService` implementation.
pub struct MyPageApi {
    my_page: MyPage,
}

impl MyPageApi {
    /// An API over the use cases.
    pub fn new(my_page: MyPage) -> Self {
        Self { my_page }
    }
}

#[tonic::async_trait]
impl MyPageService for MyPageApi {
    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn get_my_page(
        &self,
        request: Request<GetMyPageRequest>,
    ) -> Result<Response<GetMyPageResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.into_inner();
        let customer = caller
            .customer_for(&req.customer_id)
            .map_err(ApiError::from)?;
        tracing::Span::current().record("customer_id", customer.as_ref());
        let mut v = Violations::new();
        let limit = v.check("page_size", paging::page_size(req.page_size));
        let after = v.check("page_token", paging::decode_token(&req.page_token));
        let (Some(limit), Some(after)) = (limit, after) else {
            return Err(ApiError::Invalid(v).into());
        };
        let (entries, more) = self
            .my_page
            .page(&customer, after, limit)
            .await
            .map_err(ApiError::from)?;
        let last = entries.last().map(Entry::order_id);
        let next_page_token = paging::next_token(more, last.as_ref());
        Ok(Response::new(GetMyPageResponse {
            entries: entries.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %platform::telemetry::clip(&request.get_ref().order_id)))]
    async fn get_my_page_entry(
        &self,
        request: Request<GetMyPageEntryRequest>,
    ) -> Result<Response<GetMyPageEntryResponse>, Status> {
        let caller = caller_of(&request)?;
        let mut v = Violations::new();
        let Some(order_id) = v.check("order_id", parse_uuid(&request.into_inner().order_id)) else {
            return Err(ApiError::Invalid(v).into());
        };
        let entry = self
            .my_page
            .entry(order_id)
            .await
            .map_err(ApiError::from)?
            .filter(|e| caller.owns(e.customer_id().as_ref()))
            .ok_or_else(|| {
                ApiError::PermissionDenied(format!(
                    "order {order_id} is not on the caller's my page (not theirs, or no event about it has arrived yet)"
                ))
            })?;
        Ok(Response::new(GetMyPageEntryResponse {
            entry: Some(to_proto(&entry)),
        }))
    }

    type WatchMyPageStream = WatchStream;

    #[tracing::instrument(skip_all, fields(customer_id))]
    async fn watch_my_page(
        &self,
        request: Request<WatchMyPageRequest>,
    ) -> Result<Response<Self::WatchMyPageStream>, Status> {
        let caller = caller_of(&request)?;
        let expiry = token_expiry_of(&request);
        let request = request.into_inner();
        // The stream carries only the caller's own rows: the customer comes from the
        // token, and a request naming anyone else is refused before it opens.
        let customer = caller
            .customer_for(&request.customer_id)
            .map_err(ApiError::from)?;
        tracing::Span::current().record("customer_id", customer.as_ref());
        let mut v = Violations::new();
        let heartbeat = v.check(
            "heartbeat_interval",
            heartbeat_interval(request.heartbeat_interval.as_ref()),
        );
        let scope = self
            .my_page
            .resume_scope(&customer)
            .await
            .map_err(ApiError::from)?;
        let resume_from = v
            .check(
                "resume_token",
                decode_resume_token(&request.resume_token, &scope),
            )
            .flatten();
        v.into_result().map_err(ApiError::Invalid)?;
        if let Some(from) = resume_from {
            // A position past the latest change was issued by another store (a
            // restored or replaced database): resuming from it would skip changes.
            let latest = self
                .my_page
                .change_number(&customer)
                .await
                .map_err(ApiError::from)?;
            if from > latest + 1 {
                let mut v = Violations::new();
                v.add("resume_token", ResumeTokenError.to_string());
                return Err(ApiError::Invalid(v).into());
            }
        }
        let markers = Markers {
            snapshot_end: request.send_snapshot_end,
            heartbeat: heartbeat.flatten(),
        };
        let stream = self
            .my_page
            .watch(
                customer,
                markers,
                Resume {
                    from: resume_from,
                    scope,
                },
            )
            .map_err(ApiError::from)?;
        Ok(Response::new(match expiry {
            Some(e) => stream.until(e.0),
            None => stream,
        }))
    }
}

/// WatchMyPage's `heartbeat_interval`: unset or zero for none, else within
/// [`HEARTBEAT_RANGE`].
fn heartbeat_interval(
    d: Option<&prost_types::Duration>,
) -> Result<Option<std::time::Duration>, String> {
    let Some(d) = d else { return Ok(None) };
    if d.seconds == 0 && d.nanos == 0 {
        return Ok(None);
    }
    let out_of_range = || {
        format!(
            "must be unset, zero, or {} to {} seconds",
            HEARTBEAT_RANGE.start().as_secs(),
            HEARTBEAT_RANGE.end().as_secs()
        )
    };
    let every = std::time::Duration::try_from(*d).map_err(|_| out_of_range())?;
    if HEARTBEAT_RANGE.contains(&every) {
        Ok(Some(every))
    } else {
        Err(out_of_range())
    }
}

/// An entry as the API (and WatchMyPage) shows it.
pub fn to_proto(e: &Entry) -> MyPageEntry {
    let order_status = match e.order().map(|v| v.status) {
        None => order_pb::OrderStatus::Unspecified,
        Some(OrderStatus::PendingPayment) => order_pb::OrderStatus::PendingPayment,
        Some(OrderStatus::Paid) => order_pb::OrderStatus::Paid,
        Some(OrderStatus::PaymentDeclined) => order_pb::OrderStatus::PaymentDeclined,
        Some(OrderStatus::Cancelled) => order_pb::OrderStatus::Cancelled,
        Some(OrderStatus::Rejected) => order_pb::OrderStatus::Rejected,
    };
    let payment_status = match e.payment().map(|v| v.status) {
        None => payment_pb::PaymentStatus::Unspecified,
        Some(PaymentStatus::Approved) => payment_pb::PaymentStatus::Approved,
        Some(PaymentStatus::Declined) => payment_pb::PaymentStatus::Declined,
        Some(PaymentStatus::Refunded) => payment_pb::PaymentStatus::Refunded,
    };
    let reservation_status = match e.reservation().map(|v| v.status) {
        None => reservation_pb::ReservationStatus::Unspecified,
        Some(ReservationStatus::Requested) => reservation_pb::ReservationStatus::Requested,
        Some(ReservationStatus::Confirmed) => reservation_pb::ReservationStatus::Confirmed,
        Some(ReservationStatus::Rejected) => reservation_pb::ReservationStatus::Rejected,
        Some(ReservationStatus::Cancelled) => reservation_pb::ReservationStatus::Cancelled,
    };
    MyPageEntry {
        order_id: e.order_id().to_string(),
        customer_id: e.customer_id().to_string(),
        talent_id: e
            .booking()
            .as_ref()
            .map(|b| b.talent_id.to_string())
            .unwrap_or_default(),
        session_start_time: e.booking().map(|b| to_timestamp(b.session_start)),
        session_minutes: e.booking().map_or(0, |b| b.session_minutes),
        amount_minor: e.price().map_or(0, |m| m.amount.get()),
        currency: e
            .price()
            .map(|m| m.currency.code().to_owned())
            .unwrap_or_default(),
        order_status: order_status as i32,
        payment_status: payment_status as i32,
        reservation_status: reservation_status as i32,
        payment_id: e.payment_id().map(|id| id.to_string()).unwrap_or_default(),
        reservation_id: e
            .reservation_id()
            .map(|id| id.to_string())
            .unwrap_or_default(),
        update_time: Some(to_timestamp(e.updated_at())),
        decline_reason: e.decline_reason().unwrap_or_default().to_owned(),
    }
}
