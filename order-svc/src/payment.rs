//! The client side of payment-svc: Pay, Void, GetPayment and Refund over one lazily
//! connected channel, answers turned into the domain's [`PaymentOutcome`] and
//! failures into [`PaymentError`]. The channel gives each call the `PAYMENT_TIMEOUT`
//! deadline, retries included, and sends every attempt only the time left.
//!
//! Every call here is idempotent on payment-svc's side (Pay and Void per order id,
//! Refund per payment id), so a caller may repeat any of them after an error without
//! charging or refunding twice.

use platform::client::PaymentClientSettings;
use platform::client::{CallFailure, ResilientChannel, classify};
use platform::values::CardNumber;
use talentshare_proto::payment::{
    self as pb, BookingDetails, GetPaymentRequest, PayRequest, RefundRequest, VoidRequest,
    get_payment_request::Lookup, payment_service_client::PaymentServiceClient,
};
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::domain::{Order, PaymentOutcome};
use crate::events::timestamp;

/// Why a call to payment-svc gave no answer to act on.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// payment-svc could not be reached, or said it cannot serve now. Retry later.
    #[error("payment service unavailable: {0}")]
    Unavailable(String),
    /// No answer within the deadline: the call may or may not have taken effect.
    #[error("payment service did not answer in time: {0}")]
    DeadlineExceeded(String),
    /// An answer this service cannot have caused (a bug on one side or the other).
    #[error("unexpected answer from the payment service: {0}")]
    Unexpected(String),
}

impl PaymentError {
    /// Whether payment-svc is away (as opposed to answering something wrong).
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            PaymentError::Unavailable(_) | PaymentError::DeadlineExceeded(_)
        )
    }
}

impl From<Status> for PaymentError {
    fn from(s: Status) -> Self {
        let text = format!("{:?}: {}", s.code(), s.message());
        match classify(&s) {
            CallFailure::Unavailable => PaymentError::Unavailable(text),
            CallFailure::DeadlineExceeded => PaymentError::DeadlineExceeded(text),
            CallFailure::Answered => PaymentError::Unexpected(text),
        }
    }
}

/// An order's payment as the anti-entropy pass compares it.
#[derive(Clone, Debug)]
pub struct PaymentFacts {
    pub outcome: PaymentOutcome,
    /// When payment-svc last changed it (its refund, for a refunded payment).
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub refund_reason: Option<String>,
}

/// payment-svc as order-svc sees it. Cheap to clone.
#[derive(Clone)]
pub struct PaymentGateway {
    client: PaymentServiceClient<ResilientChannel>,
}

impl PaymentGateway {
    /// A gateway over a lazy channel: building it never waits for payment-svc.
    pub fn new(settings: &PaymentClientSettings) -> anyhow::Result<Self> {
        Ok(Self {
            client: PaymentServiceClient::new(settings.channel()?),
        })
    }

    // The deadline is the channel's: it sets `grpc-timeout` per attempt to the time
    // left, which a fixed timeout set here would defeat on a retry.
    fn request<T>(&self, message: T) -> Request<T> {
        Request::new(message)
    }

    /// Charges `card` for `order` (idempotent per order id).
    pub async fn pay(
        &self,
        order: &Order,
        card: &CardNumber,
    ) -> Result<PaymentOutcome, PaymentError> {
        let request = self.request(PayRequest {
            order_id: order.order_id.to_string(),
            customer_id: order.customer_id.to_string(),
            amount_minor: order.money.amount.get(),
            currency: order.money.currency.code().to_owned(),
            card_number: card.digits().to_owned(),
            booking: Some(BookingDetails {
                talent_id: order.booking.talent_id.to_string(),
                session_start_time: Some(timestamp(order.booking.session_start)),
                session_minutes: order.booking.session_minutes,
            }),
        });
        let payment = self.client.clone().pay(request).await?.into_inner().payment;
        outcome(payment)
    }

    /// Closes the order's payment before any charge: answers [`PaymentOutcome::Voided`],
    /// or the payment a Pay made first (idempotent per order id).
    pub async fn void(
        &self,
        order: &Order,
        reason: Option<&str>,
    ) -> Result<PaymentOutcome, PaymentError> {
        let request = self.request(VoidRequest {
            order_id: order.order_id.to_string(),
            customer_id: order.customer_id.to_string(),
            amount_minor: order.money.amount.get(),
            currency: order.money.currency.code().to_owned(),
            reason: reason.unwrap_or_default().to_owned(),
        });
        let payment = self
            .client
            .clone()
            .void(request)
            .await?
            .into_inner()
            .payment;
        outcome(payment)
    }

    /// What payment-svc holds for the order, with when it last changed and its refund
    /// reason (for the anti-entropy pass), or `None` when it has nothing.
    pub async fn inspect(&self, order_id: Uuid) -> Result<Option<PaymentFacts>, PaymentError> {
        let request = self.request(GetPaymentRequest {
            lookup: Some(Lookup::OrderId(order_id.to_string())),
        });
        let payment = match self.client.clone().get_payment(request).await {
            Ok(response) => response.into_inner().payment,
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(s.into()),
        };
        let (updated_at, refund_reason) = payment
            .as_ref()
            .and_then(platform::client::payment_change)
            .ok_or_else(|| PaymentError::Unexpected("payment without update_time".into()))?;
        Ok(Some(PaymentFacts {
            outcome: outcome(payment)?,
            updated_at,
            refund_reason,
        }))
    }

    /// The order's payment, or `None` when payment-svc has none for it.
    pub async fn find_for_order(
        &self,
        order_id: Uuid,
    ) -> Result<Option<PaymentOutcome>, PaymentError> {
        let request = self.request(GetPaymentRequest {
            lookup: Some(Lookup::OrderId(order_id.to_string())),
        });
        match self.client.clone().get_payment(request).await {
            Ok(response) => outcome(response.into_inner().payment).map(Some),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s.into()),
        }
    }

    /// Refunds a payment in full (idempotent per payment id).
    pub async fn refund(&self, payment_id: Uuid, reason: Option<&str>) -> Result<(), PaymentError> {
        let request = self.request(RefundRequest {
            payment_id: payment_id.to_string(),
            reason: reason.unwrap_or_default().to_owned(),
        });
        let payment = self
            .client
            .clone()
            .refund(request)
            .await?
            .into_inner()
            .payment;
        match outcome(payment)? {
            PaymentOutcome::Refunded { .. } => Ok(()),
            other => Err(PaymentError::Unexpected(format!(
                "refund answered {other:?}"
            ))),
        }
    }
}

/// Parses payment-svc's answer; one that does not parse is not trusted.
fn outcome(payment: Option<pb::Payment>) -> Result<PaymentOutcome, PaymentError> {
    let p = payment.ok_or_else(|| PaymentError::Unexpected("answer without a payment".into()))?;
    let payment_id = Uuid::parse_str(&p.payment_id)
        .map_err(|_| PaymentError::Unexpected(format!("payment id `{}`", p.payment_id)))?;
    match pb::PaymentStatus::try_from(p.status) {
        Ok(pb::PaymentStatus::Approved) => Ok(PaymentOutcome::Approved { payment_id }),
        Ok(pb::PaymentStatus::Declined) => Ok(PaymentOutcome::Declined {
            payment_id,
            // Kept as the value name, opaque: new reasons reach clients as they are.
            reason: pb::DeclineReason::try_from(p.decline_reason)
                .map(|r| r.as_str_name().to_owned())
                .unwrap_or_else(|_| format!("DECLINE_REASON_{}", p.decline_reason)),
        }),
        Ok(pb::PaymentStatus::Refunded) => Ok(PaymentOutcome::Refunded { payment_id }),
        Ok(pb::PaymentStatus::Voided) => Ok(PaymentOutcome::Voided),
        Ok(pb::PaymentStatus::Unspecified) | Err(_) => Err(PaymentError::Unexpected(format!(
            "payment status {}",
            p.status
        ))),
    }
}
