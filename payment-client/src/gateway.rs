//! payment-svc as its callers see it: the calls order-svc and reservation-svc make,
//! taking and returning plain values, never prost types, and failing with one
//! [`PaymentError`] whose variants say what the caller may do next.
//!
//! Every call is idempotent on payment-svc's side (Pay and Void per order id, Refund
//! per payment id, the rest read), so a caller may repeat any of them after an error
//! without charging or refunding twice.

use chrono::{DateTime, Utc};
use talentshare_proto::payment::{
    self as pb, BookingDetails, GetPaymentRequest, ListPaymentsRequest, PayRequest, RefundRequest,
    VoidRequest, get_payment_request, payment_service_client::PaymentServiceClient,
};
use tonic::{Code, Status};
use uuid::Uuid;
use values::{Booking, CardNumber, ExternalId, Money};

use crate::channel::ResilientChannel;

/// Why a call to payment-svc gave no answer to act on. The cause, where there is
/// one, is the status payment-svc (or the channel) answered, kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// Unreachable, overloaded, without its database, or the breaker is open: retrying
    /// later may work.
    #[error("payment-svc is unavailable")]
    Unavailable(#[source] Status),
    /// No answer within the call's deadline: the call may or may not have taken effect.
    #[error("payment-svc did not answer in time")]
    DeadlineExceeded(#[source] Status),
    /// payment-svc holds no such payment.
    #[error("payment-svc has no such payment: {}", .0.message())]
    NotFound(#[source] Status),
    /// payment-svc refused the call for the payment's state (refunding a declined
    /// payment).
    #[error("payment-svc refused: {}", .0.message())]
    Refused(#[source] Status),
    /// An error this caller cannot have caused (a bug on one side or the other).
    #[error("payment-svc answered unexpectedly")]
    Unexpected(#[source] Status),
    /// An answer that does not parse: not trusted.
    #[error("payment-svc answered a malformed payment: {0}")]
    Malformed(String),
}

impl PaymentError {
    /// Whether payment-svc is away (as opposed to answering something wrong): the
    /// background passes stop their batch and try again later.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            PaymentError::Unavailable(_) | PaymentError::DeadlineExceeded(_)
        )
    }
}

impl From<Status> for PaymentError {
    fn from(s: Status) -> Self {
        match s.code() {
            // UNKNOWN is how tonic reports a broken connection (h2 and hyper errors it
            // cannot map); RESOURCE_EXHAUSTED is the callee shedding load.
            Code::Unavailable | Code::Unknown | Code::ResourceExhausted => Self::Unavailable(s),
            // payment-svc's server cuts an attempt at its grpc-timeout (the time left)
            // with CANCELLED; these callers never cancel a call any other way.
            Code::DeadlineExceeded | Code::Cancelled => Self::DeadlineExceeded(s),
            Code::NotFound => Self::NotFound(s),
            Code::FailedPrecondition => Self::Refused(s),
            _ => Self::Unexpected(s),
        }
    }
}

/// Where a payment stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Approved,
    /// Declined, with payment-svc's reason kept as the enum value's name, opaque, so
    /// new reasons reach clients as they are.
    Declined {
        reason: String,
    },
    Refunded,
    /// Closed before any charge (the caller gave up on the order first).
    Voided,
}

/// A payment as payment-svc answered it.
#[derive(Clone, Debug)]
pub struct Payment {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: ExternalId,
    pub status: PaymentStatus,
    /// What it pays for; `None` for payments made before payment-svc kept bookings.
    pub booking: Option<Booking>,
    pub created_at: DateTime<Utc>,
    /// When it last changed (its refund, for a refunded payment).
    pub updated_at: DateTime<Utc>,
    pub refund_reason: Option<String>,
}

/// A charge for an order.
#[derive(Clone, Copy, Debug)]
pub struct Charge<'a> {
    pub order_id: Uuid,
    pub customer_id: &'a ExternalId,
    pub money: Money,
    pub card: &'a CardNumber,
    pub booking: &'a Booking,
}

/// Closing an order's payment before any charge.
#[derive(Clone, Copy, Debug)]
pub struct Closing<'a> {
    pub order_id: Uuid,
    pub customer_id: &'a ExternalId,
    pub money: Money,
    pub reason: Option<&'a str>,
}

/// Which payment to look up.
#[derive(Clone, Copy, Debug)]
pub enum Lookup {
    /// The payment of an order (at most one per order).
    Order(Uuid),
    Payment(Uuid),
}

/// One page of payments, and where the next starts (empty after the last). A payment
/// that does not parse, or carries no booking, stands as `None` in its place, so a
/// walk over pages moves on over it.
pub type Page = (Vec<Option<Payment>>, String);

/// payment-svc. Cheap to clone; clones share the channel's breaker, concurrency limit
/// and retry budget.
#[derive(Clone)]
pub struct PaymentGateway {
    client: PaymentServiceClient<ResilientChannel>,
}

impl PaymentGateway {
    /// A gateway over `channel` (see [`crate::PaymentClientSettings::channel`]);
    /// building it never waits for payment-svc.
    pub fn new(channel: ResilientChannel) -> Self {
        Self {
            client: PaymentServiceClient::new(channel),
        }
    }

    /// Charges the card for the order (idempotent per order id): answers the payment,
    /// approved or declined, or the one an earlier Pay or Void for the order made.
    pub async fn pay(&self, charge: Charge<'_>) -> Result<Payment, PaymentError> {
        let request = PayRequest {
            order_id: charge.order_id.to_string(),
            customer_id: charge.customer_id.to_string(),
            amount_minor: charge.money.amount.get(),
            currency: charge.money.currency.code().to_owned(),
            card_number: charge.card.digits().to_owned(),
            booking: Some(BookingDetails {
                talent_id: charge.booking.talent_id.to_string(),
                session_start_time: Some(values::time::to_proto(charge.booking.session_start)),
                session_minutes: charge.booking.session_minutes,
            }),
        };
        let answer = self.client.clone().pay(request).await?.into_inner();
        payment(answer.payment)
    }

    /// Closes the order's payment before any charge (idempotent per order id):
    /// answers the voided payment, or the one a Pay made first.
    pub async fn void(&self, closing: Closing<'_>) -> Result<Payment, PaymentError> {
        let request = VoidRequest {
            order_id: closing.order_id.to_string(),
            customer_id: closing.customer_id.to_string(),
            amount_minor: closing.money.amount.get(),
            currency: closing.money.currency.code().to_owned(),
            reason: closing.reason.unwrap_or_default().to_owned(),
        };
        let answer = self.client.clone().void(request).await?.into_inner();
        payment(answer.payment)
    }

    /// The payment, or [`PaymentError::NotFound`].
    pub async fn get(&self, lookup: Lookup) -> Result<Payment, PaymentError> {
        let lookup = match lookup {
            Lookup::Order(id) => get_payment_request::Lookup::OrderId(id.to_string()),
            Lookup::Payment(id) => get_payment_request::Lookup::PaymentId(id.to_string()),
        };
        let request = GetPaymentRequest {
            lookup: Some(lookup),
        };
        let answer = self.client.clone().get_payment(request).await?.into_inner();
        payment(answer.payment)
    }

    /// The payment, or `None` when payment-svc has none.
    pub async fn find(&self, lookup: Lookup) -> Result<Option<Payment>, PaymentError> {
        match self.get(lookup).await {
            Ok(payment) => Ok(Some(payment)),
            Err(PaymentError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Refunds the payment in full (idempotent per payment id): answers it REFUNDED,
    /// or [`PaymentError::Refused`] for a payment that cannot be refunded.
    pub async fn refund(
        &self,
        payment_id: Uuid,
        reason: Option<&str>,
    ) -> Result<Payment, PaymentError> {
        let request = RefundRequest {
            payment_id: payment_id.to_string(),
            reason: reason.unwrap_or_default().to_owned(),
        };
        let answer = self.client.clone().refund(request).await?.into_inner();
        let refunded = payment(answer.payment)?;
        match refunded.status {
            PaymentStatus::Refunded => Ok(refunded),
            other => Err(PaymentError::Malformed(format!(
                "a refund answered a payment {other:?}"
            ))),
        }
    }

    /// One page of approved payments with their bookings, newest first, from
    /// `page_token` (empty: the newest).
    pub async fn approved_page(
        &self,
        page_token: &str,
        page_size: i32,
    ) -> Result<Page, PaymentError> {
        let request = ListPaymentsRequest {
            page_size,
            page_token: page_token.to_owned(),
            customer_id: String::new(),
            status: pb::PaymentStatus::Approved as i32,
        };
        let page = self
            .client
            .clone()
            .list_payments(request)
            .await?
            .into_inner();
        let payments = page
            .payments
            .into_iter()
            .map(|p| payment(Some(p)).ok().filter(|p| p.booking.is_some()))
            .collect();
        Ok((payments, page.next_page_token))
    }
}

/// Parses payment-svc's answer.
fn payment(answer: Option<pb::Payment>) -> Result<Payment, PaymentError> {
    let p = answer.ok_or_else(|| PaymentError::Malformed("an answer without a payment".into()))?;
    let bad = |field: &str| PaymentError::Malformed(format!("payment {}: {field}", p.payment_id));
    let status = match pb::PaymentStatus::try_from(p.status) {
        Ok(pb::PaymentStatus::Approved) => PaymentStatus::Approved,
        Ok(pb::PaymentStatus::Declined) => PaymentStatus::Declined {
            reason: pb::DeclineReason::try_from(p.decline_reason)
                .map(|r| r.as_str_name().to_owned())
                .unwrap_or_else(|_| format!("DECLINE_REASON_{}", p.decline_reason)),
        },
        Ok(pb::PaymentStatus::Refunded) => PaymentStatus::Refunded,
        Ok(pb::PaymentStatus::Voided) => PaymentStatus::Voided,
        Ok(pb::PaymentStatus::Unspecified) | Err(_) => return Err(bad("status")),
    };
    let booking = match &p.booking {
        None => None,
        Some(b) => Some(Booking {
            talent_id: ExternalId::try_from(b.talent_id.clone())
                .map_err(|_| bad("booking.talent_id"))?,
            session_start: values::time::from_proto(b.session_start_time)
                .map_err(|_| bad("booking.session_start_time"))?,
            session_minutes: b.session_minutes,
        }),
    };
    Ok(Payment {
        payment_id: Uuid::parse_str(&p.payment_id).map_err(|_| bad("payment_id"))?,
        order_id: Uuid::parse_str(&p.order_id).map_err(|_| bad("order_id"))?,
        customer_id: ExternalId::try_from(p.customer_id.clone()).map_err(|_| bad("customer_id"))?,
        status,
        booking,
        created_at: values::time::from_proto(p.create_time).map_err(|_| bad("create_time"))?,
        updated_at: values::time::from_proto(p.update_time).map_err(|_| bad("update_time"))?,
        refund_reason: Some(p.refund_reason.clone()).filter(|r| !r.is_empty()),
    })
}
