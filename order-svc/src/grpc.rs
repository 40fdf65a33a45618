//! The gRPC adapter: converts `talentshare.order.v1` messages into domain types at
//! the edge (reporting every bad field at once), calls the use cases, and turns
//! every error into a status in one `match` ([`ApiError`] → [`Status`]).

use chrono::{DateTime, SubsecRound, Utc};
use platform::auth::{Caller, Denied, caller_of};
use platform::paging;
use platform::values::{
    AmountMinor, CardNumber, Currency, ExternalId, Money, Violations, optional_reason, parse_uuid,
};
use talentshare_proto::order::{
    self as pb, CancelOrderRequest, CancelOrderResponse, GetOrderRequest, GetOrderResponse,
    ListOrdersRequest, ListOrdersResponse, PlaceOrderRequest, PlaceOrderResponse,
    order_service_server::OrderService,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{
    Booking, NewOrder, Order, OrderStatus, PlaceRefused, Refused, SESSION_MINUTES,
    session_is_bookable,
};
use crate::events::timestamp;
use crate::payment::PaymentError;
use crate::service::{OrderError, Orders};
use crate::store::{ListQuery, StoreError};

/// Every way an order call can fail, as the caller can act on it. Failures of this
/// service or its dependencies keep their cause as the source, which
/// `platform::outcome` logs once per call; the client sees only the status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(Violations),
    /// Not the caller's, or not there at all: the same answer either way (AIP-211).
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    /// The `request_id` (named) was used for an order with other details.
    #[error("request_id {0} was used for an order with other details")]
    RequestIdReused(Uuid),
    /// The order's payment may be in flight: retry shortly.
    #[error("the order's payment is in progress; retry shortly")]
    PaymentInFlight(Uuid),
    /// The order ended (in the status named) with no money to give back.
    #[error("the order is {1}; it has ended and holds no money")]
    Ended(Uuid, OrderStatus),
    /// The order, in the status named, cannot make the move (another change won).
    #[error("{2}")]
    StateConflict(Uuid, OrderStatus, String),
    #[error("payment-svc is unavailable")]
    PaymentUnavailable(#[source] PaymentError),
    #[error("payment-svc did not answer in time")]
    PaymentDeadline(#[source] PaymentError),
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("order call failed")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        use platform::status::{Failure, RETRY_SOON, cause, unavailable};
        use talentshare_proto::common::ErrorReason as R;
        use tonic::Code;
        let state = |order_id: &Uuid, status: OrderStatus, reason: R, message: String| {
            Failure::new(Code::FailedPrecondition, reason, message.clone())
                .meta("order_id", order_id.to_string())
                .meta("order_status", to_proto_status(status).as_str_name())
                .state_conflict(format!("orders/{order_id}"), message)
        };
        match &e {
            ApiError::Invalid(v) => platform::status::invalid_argument(v),
            ApiError::PermissionDenied(m) => platform::status::permission_denied(m),
            ApiError::NotFound(m) => platform::status::not_found("order", m),
            ApiError::RequestIdReused(request_id) => {
                Failure::new(Code::AlreadyExists, R::RequestIdReused, e.to_string())
                    .meta("request_id", request_id.to_string())
                    .into_status()
            }
            ApiError::PaymentInFlight(order_id) => state(
                order_id,
                OrderStatus::PendingPayment,
                R::PaymentInFlight,
                e.to_string(),
            )
            .retry_after(RETRY_SOON)
            .into_status(),
            ApiError::Ended(order_id, status) => {
                state(order_id, *status, R::OrderAlreadyEnded, e.to_string()).into_status()
            }
            ApiError::StateConflict(order_id, status, m) => {
                state(order_id, *status, R::OrderStateConflict, m.clone()).into_status()
            }
            ApiError::PaymentUnavailable(_) => unavailable(
                R::PaymentServiceUnavailable,
                "the payment service is unavailable; retry the same request",
                &e,
            ),
            ApiError::PaymentDeadline(_) => cause(
                Failure::new(
                    Code::DeadlineExceeded,
                    R::PaymentServiceTimeout,
                    "the payment service did not answer in time; retry the same request",
                )
                .retry_after(RETRY_SOON)
                .into_status(),
                &e,
            ),
            ApiError::Unavailable(_) => unavailable(
                R::StorageUnavailable,
                "order storage is temporarily unavailable; retry",
                &e,
            ),
            ApiError::Internal(_) => platform::status::internal(&e),
        }
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Store(e) => e.into(),
            OrderError::Payment(e @ PaymentError::Unavailable(_)) => {
                ApiError::PaymentUnavailable(e)
            }
            OrderError::Payment(e @ PaymentError::DeadlineExceeded(_)) => {
                ApiError::PaymentDeadline(e)
            }
            OrderError::Payment(e) => ApiError::Internal(e.into()),
            OrderError::PaymentInFlight(order_id) => ApiError::PaymentInFlight(order_id),
            OrderError::Ended(order_id, status) => ApiError::Ended(order_id, status),
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
            StoreError::Conflict(request) => ApiError::RequestIdReused(request),
            StoreError::NotFound => ApiError::NotFound("order not found".into()),
            StoreError::Place(PlaceRefused::SessionNotInFuture) => {
                let mut v = Violations::new();
                add_not_in_future(&mut v);
                ApiError::Invalid(v)
            }
            StoreError::Refused(order_id, r) => {
                let status = match r {
                    Refused::Transition { from, .. } => from,
                    Refused::NotRefunded | Refused::NotRequested => OrderStatus::Paid,
                };
                ApiError::StateConflict(order_id, status, r.to_string())
            }
            StoreError::Db(ref db) if platform::status::is_unavailable(db) => {
                ApiError::Unavailable(e)
            }
            e @ (StoreError::Db(_) | StoreError::Corrupt(_)) => ApiError::Internal(e.into()),
        }
    }
}

/// The `OrderService` implementation.
pub struct OrderApi {
    orders: Orders,
}

impl OrderApi {
    /// An API over the use cases.
    pub fn new(orders: Orders) -> Self {
        Self { orders }
    }

    /// The order `order_id`, if it is the caller's.
    async fn owned(&self, caller: &Caller, order_id: Uuid) -> Result<Order, ApiError> {
        match self.orders.get(order_id).await {
            Ok(o) if caller.owns(o.customer_id().as_ref()) => Ok(o),
            Ok(_) | Err(OrderError::Store(StoreError::NotFound)) => {
                Err(ApiError::PermissionDenied(format!(
                    "order {order_id} does not exist or is not the caller's"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    #[tracing::instrument(skip_all, fields(request_id = %platform::telemetry::clip(&request.get_ref().request_id)))]
    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<PlaceOrderResponse>, Status> {
        let caller = caller_of(&request)?;
        let mut req = request.into_inner();
        as_caller(&caller, &mut req.customer_id)?;
        let now = Utc::now().trunc_subsecs(6);
        let (new, card) = place_request(req, now)?;
        let order = self
            .orders
            .place(&new, &card, now)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(order_id = %order.order_id(), status = ?order.status(), "place order");
        Ok(Response::new(PlaceOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %platform::telemetry::clip(&request.get_ref().order_id)))]
    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        let caller = caller_of(&request)?;
        let order_id = uuid_field("order_id", &request.into_inner().order_id)?;
        let order = self.owned(&caller, order_id).await?;
        Ok(Response::new(GetOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let caller = caller_of(&request)?;
        let mut req = request.into_inner();
        as_caller(&caller, &mut req.customer_id)?;
        let query = list_query(req)?;
        let (orders, more) = self.orders.list(&query).await.map_err(ApiError::from)?;
        let last = orders.last().map(Order::order_id);
        let next_page_token = paging::next_token(more, last.as_ref());
        Ok(Response::new(ListOrdersResponse {
            orders: orders.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %platform::telemetry::clip(&request.get_ref().order_id)))]
    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        let caller = caller_of(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let order_id = v.check("order_id", parse_uuid(&req.order_id));
        let reason = v.check("reason", optional_reason(&req.reason));
        // Either field missing means `v` holds its violation.
        let (Some(order_id), Some(reason)) = (order_id, reason) else {
            return Err(ApiError::Invalid(v).into());
        };
        self.owned(&caller, order_id).await?;
        let order = self
            .orders
            .cancel(order_id, reason)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(status = ?order.status(), "cancel order");
        Ok(Response::new(CancelOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }
}

/// Resolves a request's `customer_id` to the caller's own id (empty means the caller);
/// anyone else's is refused.
fn as_caller(caller: &Caller, customer_id: &mut String) -> Result<(), ApiError> {
    *customer_id = caller.customer_for(customer_id)?.to_string();
    Ok(())
}

fn uuid_field(field: &str, s: &str) -> Result<Uuid, ApiError> {
    parse_uuid(s).map_err(|e| {
        let mut v = Violations::new();
        v.add(field, e.to_string());
        ApiError::Invalid(v)
    })
}

fn add_not_in_future(v: &mut Violations) {
    v.add("session_start_time", "must be in the future");
}

/// Validates a `PlaceOrderRequest` into the order's terms and the card to charge,
/// reporting every bad field at once.
///
/// Whether the session starts after `now` is the domain's rule, applied by the store
/// when the order is new: a replay of an earlier request is compared with the first
/// call instead, so it succeeds even once the session has begun. When other fields
/// are bad anyway, that rule is reported along with them.
pub fn place_request(
    req: PlaceOrderRequest,
    now: DateTime<Utc>,
) -> Result<(NewOrder, CardNumber), ApiError> {
    let mut v = Violations::new();
    let request_id = v.check("request_id", parse_uuid(&req.request_id));
    let customer_id = v.check("customer_id", ExternalId::try_from(req.customer_id));
    let talent_id = v.check("talent_id", ExternalId::try_from(req.talent_id));
    let start = v.check("session_start_time", session_start(req.session_start_time));
    let minutes = if SESSION_MINUTES.contains(&req.session_minutes) {
        Some(req.session_minutes)
    } else {
        v.add(
            "session_minutes",
            format!(
                "must be between {} and {}",
                SESSION_MINUTES.start(),
                SESSION_MINUTES.end()
            ),
        );
        None
    };
    let amount = v.check("amount_minor", AmountMinor::try_from(req.amount_minor));
    let currency = v.check("currency", Currency::try_from(req.currency.as_str()));
    let card = v.check(
        "card_number",
        CardNumber::try_from(req.card_number.as_str()),
    );
    match (
        request_id,
        customer_id,
        talent_id,
        start,
        minutes,
        amount,
        currency,
        card,
    ) {
        (
            Some(request_id),
            Some(customer_id),
            Some(talent_id),
            Some(session_start),
            Some(session_minutes),
            Some(amount),
            Some(currency),
            Some(card),
        ) if v.is_empty() => {
            let new = NewOrder {
                request_id,
                customer_id,
                booking: Booking {
                    talent_id,
                    session_start,
                    session_minutes,
                },
                money: Money { amount, currency },
                card_last4: card.last4().to_owned(),
            };
            Ok((new, card))
        }
        _ => {
            if start.is_some_and(|s| !session_is_bookable(s, now)) {
                add_not_in_future(&mut v);
            }
            Err(ApiError::Invalid(v))
        }
    }
}

/// Protobuf's Timestamp range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// A session start: required and in protobuf's range, cut to microseconds (what the
/// database keeps) so a replay compares equal to the stored order.
fn session_start(ts: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, String> {
    let ts = ts.ok_or("is required")?;
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err("nanos must be between 0 and 999999999".into());
    }
    if !TIMESTAMP_SECONDS.contains(&ts.seconds) {
        return Err("must be between 0001-01-01 and 9999-12-31".into());
    }
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
        .map(|t| t.trunc_subsecs(6))
        .ok_or_else(|| "is out of range".into())
}

/// Validates a `ListOrdersRequest` into a page query.
fn list_query(req: ListOrdersRequest) -> Result<ListQuery, ApiError> {
    let mut v = Violations::new();
    let limit = v.check("page_size", paging::page_size(req.page_size));
    let after = v.check("page_token", paging::decode_token(&req.page_token));
    let customer_id = v.check("customer_id", ExternalId::try_from(req.customer_id));
    let status = match pb::OrderStatus::try_from(req.status) {
        Ok(pb::OrderStatus::Unspecified) => None,
        Ok(pb::OrderStatus::PendingPayment) => Some(OrderStatus::PendingPayment),
        Ok(pb::OrderStatus::Paid) => Some(OrderStatus::Paid),
        Ok(pb::OrderStatus::PaymentDeclined) => Some(OrderStatus::PaymentDeclined),
        Ok(pb::OrderStatus::Cancelled) => Some(OrderStatus::Cancelled),
        Ok(pb::OrderStatus::Rejected) => Some(OrderStatus::Rejected),
        Err(_) => {
            v.add(
                "status",
                format!("unknown OrderStatus value {}", req.status),
            );
            None
        }
    };
    match (limit, after, customer_id) {
        (Some(limit), Some(after), Some(customer_id)) if v.is_empty() => Ok(ListQuery {
            customer_id,
            status,
            after,
            limit,
        }),
        _ => Err(ApiError::Invalid(v)),
    }
}

fn to_proto_status(s: OrderStatus) -> pb::OrderStatus {
    match s {
        OrderStatus::PendingPayment => pb::OrderStatus::PendingPayment,
        OrderStatus::Paid => pb::OrderStatus::Paid,
        OrderStatus::PaymentDeclined => pb::OrderStatus::PaymentDeclined,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
        OrderStatus::Rejected => pb::OrderStatus::Rejected,
    }
}

fn to_proto(o: &Order) -> pb::Order {
    pb::Order {
        order_id: o.order_id().to_string(),
        request_id: o.request_id().to_string(),
        customer_id: o.customer_id().to_string(),
        talent_id: o.booking().talent_id.to_string(),
        session_start_time: Some(timestamp(o.booking().session_start)),
        session_minutes: o.booking().session_minutes,
        amount_minor: o.money().amount.get(),
        currency: o.money().currency.code().to_owned(),
        status: to_proto_status(o.status()) as i32,
        payment_id: o.payment_id().map(|p| p.to_string()).unwrap_or_default(),
        card_last4: o.card_last4().to_owned(),
        decline_reason: o.decline_reason().unwrap_or_default().to_owned(),
        refunded: o.refunded(),
        create_time: Some(timestamp(o.created_at())),
        update_time: Some(timestamp(o.updated_at())),
        reason: o.reason().unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod validator_props {
    use super::*;
    use proptest::prelude::*;

    const FIELDS: &[&str] = &[
        "request_id",
        "customer_id",
        "talent_id",
        "session_start_time",
        "session_minutes",
        "amount_minor",
        "currency",
        "card_number",
    ];

    fn text_or(valid: &'static str) -> impl Strategy<Value = String> {
        prop_oneof![Just(valid.to_owned()), ".{0,80}", "[A-Za-z0-9._-]{0,70}"]
    }

    fn request() -> impl Strategy<Value = PlaceOrderRequest> {
        (
            (
                text_or("0192f5a0-0000-7000-8000-000000000001"),
                text_or("cust-1"),
                text_or("talent-1"),
            ),
            proptest::option::of((
                prop_oneof![1_900_000_000i64..2_000_000_000, any::<i64>()],
                any::<i32>(),
            )),
            prop_oneof![15..=480i32, any::<i32>()],
            prop_oneof![1..=1_000_000i64, any::<i64>()],
            prop_oneof![Just("KRW".to_owned()), "[A-Za-z]{0,4}"],
            prop_oneof![
                Just("4242424242424242".to_owned()),
                "[0-9 ]{0,24}",
                ".{0,30}"
            ],
        )
            .prop_map(
                |(
                    (request_id, customer_id, talent_id),
                    ts,
                    session_minutes,
                    amount_minor,
                    currency,
                    card_number,
                )| {
                    PlaceOrderRequest {
                        request_id,
                        customer_id,
                        talent_id,
                        session_start_time: ts
                            .map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
                        session_minutes,
                        amount_minor,
                        currency,
                        card_number,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn the_validator_never_panics_and_names_only_real_fields(req in request()) {
            let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid time");
            match place_request(req, now) {
                Ok(_) => {}
                Err(ApiError::Invalid(v)) => {
                    prop_assert!(!v.is_empty());
                    for violation in v.iter() {
                        prop_assert!(FIELDS.contains(&violation.field.as_str()), "{}", violation.field);
                    }
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}
