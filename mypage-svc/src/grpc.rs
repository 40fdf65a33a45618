//! The gRPC adapter: converts `talentshare.mypage.v1` requests into domain types at
//! the edge, reads the store, and turns every error into a status in one `match`
//! ([`ApiError`] → [`Status`]). The stream behind `WatchMyPage` lives in
//! [`crate::watch`].

use std::sync::Arc;

use platform::auth::{Denied, caller_of, token_expiry_of};
use platform::paging;
use platform::time::to_proto as to_timestamp;
use platform::values::{Violations, parse_uuid};
use talentshare_proto::mypage::{
    GetMyPageEntryRequest, GetMyPageEntryResponse, GetMyPageRequest, GetMyPageResponse,
    MyPageEntry, WatchMyPageRequest, my_page_service_server::MyPageService,
};
use talentshare_proto::{order as order_pb, payment as payment_pb, reservation as reservation_pb};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::changes::Changes;
use crate::domain::{Entry, OrderStatus, PaymentStatus, ReservationStatus};
use crate::store::{MyPageStore, StoreError};
use crate::watch::{self, WatchStream};

/// Every way a my-page call can fail, as the caller can act on it.
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
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid(v) => platform::status::invalid_argument(&v),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::Exhausted(m) => Status::resource_exhausted(m),
            ApiError::Lagging(m) => Status::aborted(m),
            ApiError::ShuttingDown => {
                Status::unavailable("my page is shutting down on this server; reconnect")
            }
            ApiError::TokenExpired => {
                Status::unauthenticated("the token has expired; reconnect with a fresh one")
            }
            ApiError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                Status::unavailable("my page storage is temporarily unavailable; retry")
            }
            ApiError::Internal(m) => platform::status::internal("my page call failed", &m),
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
            StoreError::Db(e) if platform::status::is_unavailable(&e) => {
                ApiError::Unavailable(e.to_string())
            }
            StoreError::Db(e) => ApiError::Internal(e.to_string()),
            StoreError::Corrupt(m) => ApiError::Internal(m),
        }
    }
}

/// The `MyPageService` implementation.
pub struct MyPageApi {
    store: MyPageStore,
    changes: Changes,
    /// One permit per open WatchMyPage stream.
    watchers: Arc<Semaphore>,
    /// The service's shutdown token: open streams end with UNAVAILABLE when it
    /// fires, so the server's graceful drain does not wait on them.
    shutdown: CancellationToken,
}

impl MyPageApi {
    /// An API over `store`, streaming `changes` to at most `max_watchers` watchers
    /// until `shutdown`.
    pub fn new(
        store: MyPageStore,
        changes: Changes,
        max_watchers: usize,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            changes,
            watchers: Arc::new(Semaphore::new(max_watchers)),
            shutdown,
        }
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
        if let Some(after) = after
            && !self
                .store
                .belongs_to(after, &customer)
                .await
                .map_err(ApiError::from)?
        {
            let mut v = Violations::new();
            v.add(
                "page_token",
                "is not a token this service issued for this customer_id",
            );
            return Err(ApiError::Invalid(v).into());
        }
        let (entries, more) = self
            .store
            .page(&customer, after, limit)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = match (more, entries.last()) {
            (true, Some(last)) => paging::encode_token(&last.order_id),
            _ => String::new(),
        };
        Ok(Response::new(GetMyPageResponse {
            entries: entries.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
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
            .store
            .get(order_id)
            .await
            .map_err(ApiError::from)?
            .filter(|e| caller.owns(e.customer_id.as_ref()))
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
        // The stream carries only the caller's own rows: the customer comes from the
        // token, and a request naming anyone else is refused before it opens.
        let customer = caller
            .customer_for(&request.into_inner().customer_id)
            .map_err(ApiError::from)?;
        tracing::Span::current().record("customer_id", customer.as_ref());
        let permit = self.watchers.clone().try_acquire_owned().map_err(|_| {
            ApiError::Exhausted("too many WatchMyPage streams on this server; retry later".into())
        })?;
        // Subscribe before the stream reads the current rows, so a change that
        // commits in between is sent (perhaps twice) rather than lost.
        let changes = self.changes.subscribe();
        let stream = watch::watch(
            self.store.clone(),
            customer,
            changes,
            self.shutdown.clone(),
            permit,
        );
        Ok(Response::new(match expiry {
            Some(e) => stream.until(e.0),
            None => stream,
        }))
    }
}

/// An entry as the API (and WatchMyPage) shows it.
pub fn to_proto(e: &Entry) -> MyPageEntry {
    let order_status = match e.order.map(|v| v.status) {
        None => order_pb::OrderStatus::Unspecified,
        Some(OrderStatus::PendingPayment) => order_pb::OrderStatus::PendingPayment,
        Some(OrderStatus::Paid) => order_pb::OrderStatus::Paid,
        Some(OrderStatus::PaymentDeclined) => order_pb::OrderStatus::PaymentDeclined,
        Some(OrderStatus::Cancelled) => order_pb::OrderStatus::Cancelled,
        Some(OrderStatus::Rejected) => order_pb::OrderStatus::Rejected,
    };
    let payment_status = match e.payment.map(|v| v.status) {
        None => payment_pb::PaymentStatus::Unspecified,
        Some(PaymentStatus::Approved) => payment_pb::PaymentStatus::Approved,
        Some(PaymentStatus::Declined) => payment_pb::PaymentStatus::Declined,
        Some(PaymentStatus::Refunded) => payment_pb::PaymentStatus::Refunded,
    };
    let reservation_status = match e.reservation.map(|v| v.status) {
        None => reservation_pb::ReservationStatus::Unspecified,
        Some(ReservationStatus::Requested) => reservation_pb::ReservationStatus::Requested,
        Some(ReservationStatus::Confirmed) => reservation_pb::ReservationStatus::Confirmed,
        Some(ReservationStatus::Rejected) => reservation_pb::ReservationStatus::Rejected,
        Some(ReservationStatus::Cancelled) => reservation_pb::ReservationStatus::Cancelled,
    };
    MyPageEntry {
        order_id: e.order_id.to_string(),
        customer_id: e.customer_id.to_string(),
        talent_id: e
            .booking
            .as_ref()
            .map(|b| b.talent_id.to_string())
            .unwrap_or_default(),
        session_start_time: e.booking.as_ref().map(|b| to_timestamp(b.session_start)),
        session_minutes: e.booking.as_ref().map_or(0, |b| b.session_minutes),
        amount_minor: e.price.map_or(0, |m| m.amount.get()),
        currency: e
            .price
            .map(|m| m.currency.code().to_owned())
            .unwrap_or_default(),
        order_status: order_status as i32,
        payment_status: payment_status as i32,
        reservation_status: reservation_status as i32,
        payment_id: e.payment_id.map(|id| id.to_string()).unwrap_or_default(),
        reservation_id: e
            .reservation_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        update_time: Some(to_timestamp(e.updated_at)),
        decline_reason: e.decline_reason.clone().unwrap_or_default(),
    }
}
