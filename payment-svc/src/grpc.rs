//! The gRPC adapter: converts `talentshare.payment.v1` messages into domain types at
//! the edge, calls the use cases ([`Payments`]), and turns every error into a status
//! in one `match` ([`ApiError`] → [`Status`]).

use platform::paging;
use platform::time::{from_proto as timestamp, to_proto as to_timestamp};
use platform::values::{
    AmountMinor, CardNumber, Currency, ExternalId, Money, ValueError, Violations, optional_reason,
    parse_uuid,
};
use talentshare_proto::payment::{
    self as pb, GetPaymentRequest, GetPaymentResponse, ListPaymentsRequest, ListPaymentsResponse,
    PayRequest, PayResponse, RefundRequest, RefundResponse, VoidRequest, VoidResponse,
    get_payment_request, payment_service_server::PaymentService,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{
    Booking, ChargeRequest, DeclineReason, Payment, PaymentStatus, RefundRefused, SESSION_MINUTES,
};
use crate::service::{PaymentError, Payments};
use crate::store::{ListQuery, Lookup, StoreError};

/// Every way a payment call can fail, as the caller can act on it. Failures of this
/// service keep their cause as the source, which `platform::outcome` logs once per
/// call; the client sees only the status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("{0}")]
    NotFound(String),
    /// The order (its id) already has a payment on other terms.
    #[error("{1}")]
    DetailsDiffer(Uuid, String),
    /// The payment (its id, its status) has nothing to refund.
    #[error("{2}")]
    NotRefundable(Uuid, PaymentStatus, String),
    #[error("the database is unavailable")]
    Unavailable(#[source] sea_orm::DbErr),
    #[error("payment call failed")]
    Internal(#[source] StoreError),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        use platform::status::Failure;
        use talentshare_proto::common::ErrorReason as R;
        use tonic::Code;
        match &e {
            ApiError::Invalid(v) => platform::status::invalid_argument(v),
            ApiError::NotFound(m) => platform::status::not_found("payment", m),
            ApiError::DetailsDiffer(order_id, m) => {
                Failure::new(Code::AlreadyExists, R::PaymentDetailsDiffer, m)
                    .meta("order_id", order_id.to_string())
                    .into_status()
            }
            ApiError::NotRefundable(payment_id, status, m) => {
                Failure::new(Code::FailedPrecondition, R::PaymentNotRefundable, m)
                    .meta("payment_id", payment_id.to_string())
                    .meta("payment_status", to_proto_status(*status).as_str_name())
                    .state_conflict(format!("payments/{payment_id}"), m)
                    .into_status()
            }
            ApiError::Unavailable(_) => platform::status::unavailable(
                R::StorageUnavailable,
                "payment storage is temporarily unavailable; retry",
                &e,
            ),
            ApiError::Internal(_) => platform::status::internal(&e),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::Conflict(order) => ApiError::DetailsDiffer(
                order,
                format!(
                    "order {order} already has a payment with a different amount, currency, customer or card"
                ),
            ),
            PaymentError::VoidConflict(order) => ApiError::DetailsDiffer(order, e.to_string()),
            PaymentError::Refused(payment_id, RefundRefused::NotCharged(status)) => {
                ApiError::NotRefundable(payment_id, status, e.to_string())
            }
            PaymentError::Store(StoreError::NotFound) => {
                ApiError::NotFound("payment not found".into())
            }
            PaymentError::Store(StoreError::Db(e)) if platform::status::is_unavailable(&e) => {
                ApiError::Unavailable(e)
            }
            PaymentError::Store(e) => ApiError::Internal(e),
        }
    }
}

/// The `PaymentService` implementation.
pub struct PaymentApi {
    payments: Payments,
}

impl PaymentApi {
    /// An API over the use cases `payments`.
    pub fn new(payments: Payments) -> Self {
        Self { payments }
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    #[tracing::instrument(skip_all, fields(order_id = %platform::telemetry::clip(&request.get_ref().order_id)))]
    async fn pay(&self, request: Request<PayRequest>) -> Result<Response<PayResponse>, Status> {
        let charge = charge_request(request.into_inner())?;
        let (payment, created) = self
            .payments
            .charge(&charge)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(payment_id = %payment.payment_id(), status = ?payment.status(), created, "pay");
        Ok(Response::new(PayResponse {
            payment: Some(to_proto(&payment)),
        }))
    }

    #[tracing::instrument(skip_all, fields(payment_id = %platform::telemetry::clip(&request.get_ref().payment_id)))]
    async fn refund(
        &self,
        request: Request<RefundRequest>,
    ) -> Result<Response<RefundResponse>, Status> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.check("payment_id", parse_uuid(&req.payment_id));
        let reason = v.check("reason", optional_reason(&req.reason));
        // Either field missing means `v` holds its violation.
        let (Some(id), Some(reason)) = (id, reason) else {
            return Err(ApiError::Invalid(v).into());
        };
        let payment = self
            .payments
            .refund(id, reason)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(status = ?payment.status(), "refund");
        Ok(Response::new(RefundResponse {
            payment: Some(to_proto(&payment)),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %platform::telemetry::clip(&request.get_ref().order_id)))]
    async fn void(&self, request: Request<VoidRequest>) -> Result<Response<VoidResponse>, Status> {
        let void = void_request(request.into_inner())?;
        let payment = self.payments.void(&void).await.map_err(ApiError::from)?;
        tracing::info!(payment_id = %payment.payment_id(), status = ?payment.status(), "void");
        Ok(Response::new(VoidResponse {
            payment: Some(to_proto(&payment)),
        }))
    }

    async fn get_payment(
        &self,
        request: Request<GetPaymentRequest>,
    ) -> Result<Response<GetPaymentResponse>, Status> {
        let lookup = match request.into_inner().lookup {
            Some(get_payment_request::Lookup::PaymentId(id)) => {
                uuid_field("payment_id", &id).map(Lookup::ByPaymentId)
            }
            Some(get_payment_request::Lookup::OrderId(id)) => {
                uuid_field("order_id", &id).map(Lookup::ByOrderId)
            }
            None => {
                let mut v = Violations::new();
                v.add("lookup", "set payment_id or order_id");
                Err(ApiError::Invalid(v))
            }
        }?;
        let payment = self.payments.get(lookup).await.map_err(ApiError::from)?;
        Ok(Response::new(GetPaymentResponse {
            payment: Some(to_proto(&payment)),
        }))
    }

    async fn list_payments(
        &self,
        request: Request<ListPaymentsRequest>,
    ) -> Result<Response<ListPaymentsResponse>, Status> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = v.check("page_size", paging::page_size(req.page_size));
        let after = v.check("page_token", paging::decode_token(&req.page_token));
        let customer_id = if req.customer_id.is_empty() {
            None
        } else {
            v.check("customer_id", ExternalId::try_from(req.customer_id))
        };
        let status = match pb::PaymentStatus::try_from(req.status) {
            Ok(pb::PaymentStatus::Unspecified) => None,
            Ok(pb::PaymentStatus::Approved) => Some(PaymentStatus::Approved),
            Ok(pb::PaymentStatus::Declined) => Some(PaymentStatus::Declined),
            Ok(pb::PaymentStatus::Refunded) => Some(PaymentStatus::Refunded),
            Ok(pb::PaymentStatus::Voided) => Some(PaymentStatus::Voided),
            Err(_) => {
                v.add(
                    "status",
                    format!("unknown PaymentStatus value {}", req.status),
                );
                None
            }
        };
        v.into_result().map_err(ApiError::Invalid)?;
        let query = ListQuery {
            customer_id,
            status,
            after: after.flatten(),
            limit: limit.unwrap_or(paging::DEFAULT_PAGE_SIZE),
        };
        let (payments, more) = self.payments.list(&query).await.map_err(ApiError::from)?;
        let last = payments.last().map(Payment::payment_id);
        let next_page_token = paging::next_token(more, last.as_ref());
        Ok(Response::new(ListPaymentsResponse {
            payments: payments.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }
}

fn uuid_field(field: &str, s: &str) -> Result<Uuid, ApiError> {
    parse_uuid(s).map_err(|e| {
        let mut v = Violations::new();
        v.add(field, e.to_string());
        ApiError::Invalid(v)
    })
}

/// Validates a `VoidRequest`, reporting every bad field at once.
pub fn void_request(req: pb::VoidRequest) -> Result<crate::domain::VoidRequest, ApiError> {
    let mut v = Violations::new();
    let order_id = v.check("order_id", parse_uuid(&req.order_id));
    let customer_id = v.check("customer_id", ExternalId::try_from(req.customer_id));
    let amount = v.check("amount_minor", AmountMinor::try_from(req.amount_minor));
    let currency = v.check("currency", Currency::try_from(req.currency.as_str()));
    let reason = v.check("reason", optional_reason(&req.reason));
    match (order_id, customer_id, amount, currency, reason) {
        (Some(order_id), Some(customer_id), Some(amount), Some(currency), Some(reason)) => {
            Ok(crate::domain::VoidRequest {
                order_id,
                customer_id,
                money: Money { amount, currency },
                reason,
            })
        }
        _ => Err(ApiError::Invalid(v)),
    }
}

/// Validates a `PayRequest` into a charge, reporting every bad field at once.
pub fn charge_request(req: PayRequest) -> Result<ChargeRequest, ApiError> {
    let mut v = Violations::new();
    let order_id = v.check("order_id", parse_uuid(&req.order_id));
    let customer_id = v.check("customer_id", ExternalId::try_from(req.customer_id));
    let amount = v.check("amount_minor", AmountMinor::try_from(req.amount_minor));
    let currency = v.check("currency", Currency::try_from(req.currency.as_str()));
    let card = v.check(
        "card_number",
        CardNumber::try_from(req.card_number.as_str()),
    );
    let booking = match req.booking {
        None => {
            v.add("booking", ValueError::Empty.to_string());
            None
        }
        Some(b) => {
            let talent_id = v.check("booking.talent_id", ExternalId::try_from(b.talent_id));
            let start = v.check(
                "booking.session_start_time",
                timestamp(b.session_start_time),
            );
            let minutes = if SESSION_MINUTES.contains(&b.session_minutes) {
                Some(b.session_minutes)
            } else {
                v.add(
                    "booking.session_minutes",
                    format!(
                        "must be between {} and {}",
                        SESSION_MINUTES.start(),
                        SESSION_MINUTES.end()
                    ),
                );
                None
            };
            match (talent_id, start, minutes) {
                (Some(talent_id), Some(session_start), Some(session_minutes)) => Some(Booking {
                    talent_id,
                    session_start,
                    session_minutes,
                }),
                _ => None,
            }
        }
    };
    match (order_id, customer_id, amount, currency, card, booking) {
        (
            Some(order_id),
            Some(customer_id),
            Some(amount),
            Some(currency),
            Some(card),
            Some(booking),
        ) if v.is_empty() => Ok(ChargeRequest {
            order_id,
            customer_id,
            money: Money { amount, currency },
            card,
            booking,
        }),
        _ => Err(ApiError::Invalid(v)),
    }
}

fn to_proto_status(s: PaymentStatus) -> pb::PaymentStatus {
    match s {
        PaymentStatus::Approved => pb::PaymentStatus::Approved,
        PaymentStatus::Declined => pb::PaymentStatus::Declined,
        PaymentStatus::Refunded => pb::PaymentStatus::Refunded,
        PaymentStatus::Voided => pb::PaymentStatus::Voided,
    }
}

fn to_proto(p: &Payment) -> pb::Payment {
    let status = to_proto_status(p.status());
    let decline_reason = match p.decline_reason() {
        None => pb::DeclineReason::Unspecified,
        Some(DeclineReason::CardDeclined) => pb::DeclineReason::CardDeclined,
        Some(DeclineReason::InsufficientFunds) => pb::DeclineReason::InsufficientFunds,
        Some(DeclineReason::ExpiredCard) => pb::DeclineReason::ExpiredCard,
        Some(DeclineReason::LimitExceeded) => pb::DeclineReason::LimitExceeded,
    };
    pb::Payment {
        payment_id: p.payment_id().to_string(),
        order_id: p.order_id().to_string(),
        customer_id: p.customer_id().to_string(),
        amount_minor: p.money().amount.get(),
        currency: p.money().currency.code().to_owned(),
        status: status as i32,
        decline_reason: decline_reason as i32,
        card_last4: p.card_last4().to_owned(),
        create_time: Some(to_timestamp(p.created_at())),
        update_time: Some(to_timestamp(p.updated_at())),
        refund_reason: p.refund_reason().unwrap_or_default().to_owned(),
        void_reason: p.void_reason().unwrap_or_default().to_owned(),
        booking: p.booking().map(|b| pb::BookingDetails {
            talent_id: b.talent_id.to_string(),
            session_start_time: Some(to_timestamp(b.session_start)),
            session_minutes: b.session_minutes,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIELDS: &[&str] = &[
        "order_id",
        "customer_id",
        "amount_minor",
        "currency",
        "card_number",
        "booking",
        "booking.talent_id",
        "booking.session_start_time",
        "booking.session_minutes",
    ];

    fn text_or(valid: &'static str) -> impl Strategy<Value = String> {
        prop_oneof![Just(valid.to_owned()), ".{0,80}", "[A-Za-z0-9._-]{0,70}"]
    }

    fn booking() -> impl Strategy<Value = Option<pb::BookingDetails>> {
        proptest::option::of(
            (
                text_or("talent-1"),
                proptest::option::of((any::<i64>(), any::<i32>())),
                prop_oneof![15..=480i32, any::<i32>()],
            )
                .prop_map(|(talent_id, ts, session_minutes)| pb::BookingDetails {
                    talent_id,
                    session_start_time: ts
                        .map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
                    session_minutes,
                }),
        )
    }

    fn request() -> impl Strategy<Value = PayRequest> {
        (
            text_or("0192f5a0-0000-7000-8000-000000000001"),
            text_or("cust-1"),
            prop_oneof![1..=1_000_000i64, any::<i64>()],
            prop_oneof![Just("USD".to_owned()), "[A-Za-z]{0,4}"],
            prop_oneof![
                Just("4242 4242 4242 4242".to_owned()),
                "[0-9 ]{0,24}",
                ".{0,30}"
            ],
            booking(),
        )
            .prop_map(
                |(order_id, customer_id, amount_minor, currency, card_number, booking)| {
                    PayRequest {
                        order_id,
                        customer_id,
                        amount_minor,
                        currency,
                        card_number,
                        booking,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn the_validator_never_panics_and_names_only_real_fields(req in request()) {
            match charge_request(req.clone()) {
                Ok(charge) => {
                    prop_assert_eq!(charge.money.amount.get(), req.amount_minor);
                    prop_assert_eq!(charge.order_id.to_string(), req.order_id.to_lowercase());
                }
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
