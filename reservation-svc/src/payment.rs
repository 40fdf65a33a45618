//! The client side of payment-svc: the two unary calls the managers' actions need
//! (GetPayment before confirming, Refund before rejecting), with payment-svc's
//! answers turned into domain values and its failures into [`PaymentError`].
//!
//! The channel comes from `platform::client` (lazy, per-call deadline, concurrency
//! limit), so a payment-svc that is down costs each call a fast UNAVAILABLE rather
//! than a hang, and never affects this service's readiness.

use platform::client::{CallFailure, ResilientChannel, classify};
use talentshare_proto::payment::{
    self as pb, GetPaymentRequest, RefundRequest, get_payment_request,
    payment_service_client::PaymentServiceClient,
};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::domain::{Approval, Booking, PaymentState, RejectReason};
use platform::values::ExternalId;

/// Why payment-svc could not give the answer asked for.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// Unreachable, overloaded, or without its database: retrying later may work.
    #[error("payment-svc is unavailable: {0}")]
    Unavailable(String),
    /// No answer within the call's deadline: the outcome is unknown, so retry.
    #[error("payment-svc did not answer in time: {0}")]
    DeadlineExceeded(String),
    /// payment-svc does not know the payment.
    #[error("payment {0} is unknown to payment-svc")]
    NotFound(Uuid),
    /// payment-svc refused the call for the payment's state (a declined payment).
    #[error("payment-svc refused: {0}")]
    Refused(String),
    /// Anything else: a bug on one side or the other.
    #[error("payment-svc call failed: {0}")]
    Unexpected(String),
}

impl PaymentError {
    fn from_status(payment_id: Uuid, s: Status) -> Self {
        match classify(&s) {
            CallFailure::Unavailable => Self::Unavailable(s.message().into()),
            CallFailure::DeadlineExceeded => Self::DeadlineExceeded(s.message().into()),
            CallFailure::Answered => match s.code() {
                Code::NotFound => Self::NotFound(payment_id),
                Code::FailedPrecondition => Self::Refused(s.message().into()),
                code => Self::Unexpected(format!("{code:?}: {}", s.message())),
            },
        }
    }
}

/// An approved payment as the anti-entropy pass sees it: what `payment.approved`
/// carried.
#[derive(Clone, Debug)]
pub struct ApprovedPayment {
    pub approval: Approval,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

fn approved(p: pb::Payment) -> Option<ApprovedPayment> {
    let booking = p.booking?;
    Some(ApprovedPayment {
        approval: Approval {
            order_id: Uuid::parse_str(&p.order_id).ok()?,
            customer_id: ExternalId::try_from(p.customer_id).ok()?,
            payment_id: Uuid::parse_str(&p.payment_id).ok()?,
            booking: Booking {
                talent_id: ExternalId::try_from(booking.talent_id).ok()?,
                session_start: platform::time::from_proto(booking.session_start_time).ok()?,
                session_minutes: booking.session_minutes,
            },
        },
        created_at: platform::time::from_proto(p.create_time).ok()?,
    })
}

/// A payment as the anti-entropy pass compares it.
#[derive(Clone, Debug)]
pub struct PaymentFacts {
    pub state: PaymentState,
    /// When payment-svc last changed it (its refund, for a refunded payment).
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub refund_reason: Option<String>,
}

/// payment-svc, as reservation-svc uses it. Cheap to clone.
#[derive(Clone)]
pub struct PaymentGateway {
    client: PaymentServiceClient<ResilientChannel>,
}

impl PaymentGateway {
    /// A gateway over `channel` (from `PaymentClientSettings::channel`).
    pub fn new(channel: ResilientChannel) -> Self {
        Self {
            client: PaymentServiceClient::new(channel),
        }
    }

    /// Where the payment stands now.
    pub async fn state(&self, payment_id: Uuid) -> Result<PaymentState, PaymentError> {
        Ok(self.facts(payment_id).await?.state)
    }

    /// Where the payment stands, since when, and its refund reason (for the
    /// anti-entropy pass).
    pub async fn facts(&self, payment_id: Uuid) -> Result<PaymentFacts, PaymentError> {
        let payment = self
            .client
            .clone()
            .get_payment(GetPaymentRequest {
                lookup: Some(get_payment_request::Lookup::PaymentId(
                    payment_id.to_string(),
                )),
            })
            .await
            .map_err(|s| PaymentError::from_status(payment_id, s))?
            .into_inner()
            .payment;
        let (updated_at, refund_reason) = payment
            .as_ref()
            .and_then(platform::client::payment_change)
            .ok_or_else(|| PaymentError::Unexpected("payment without update_time".into()))?;
        Ok(PaymentFacts {
            state: payment_state(payment)?,
            updated_at,
            refund_reason,
        })
    }

    /// One page of approved payments, newest first, from `page_token` (empty: the
    /// newest), and the token of the next page (empty after the last). A payment
    /// whose fields do not parse, or that carries no booking (made before payment-svc
    /// kept bookings), comes back as `None` in its place: the walk moves on over it.
    pub async fn approved_page(
        &self,
        page_token: &str,
        page_size: i32,
    ) -> Result<(Vec<Option<ApprovedPayment>>, String), PaymentError> {
        let page = self
            .client
            .clone()
            .list_payments(pb::ListPaymentsRequest {
                page_size,
                page_token: page_token.to_owned(),
                customer_id: String::new(),
                status: pb::PaymentStatus::Approved as i32,
            })
            .await
            .map_err(|s| PaymentError::from_status(Uuid::nil(), s))?
            .into_inner();
        let payments = page.payments.into_iter().map(approved).collect();
        Ok((payments, page.next_page_token))
    }

    /// Refunds the payment. Idempotent in payment-svc, so a retry after a timeout
    /// never refunds twice.
    pub async fn refund(
        &self,
        payment_id: Uuid,
        reason: &RejectReason,
    ) -> Result<(), PaymentError> {
        let payment = self
            .client
            .clone()
            .refund(RefundRequest {
                payment_id: payment_id.to_string(),
                reason: reason.as_ref().to_owned(),
            })
            .await
            .map_err(|s| PaymentError::from_status(payment_id, s))?
            .into_inner()
            .payment;
        match payment_state(payment)? {
            PaymentState::Refunded => Ok(()),
            other => Err(PaymentError::Unexpected(format!(
                "refund answered with a payment in {other:?}"
            ))),
        }
    }
}

fn payment_state(payment: Option<pb::Payment>) -> Result<PaymentState, PaymentError> {
    let payment =
        payment.ok_or_else(|| PaymentError::Unexpected("answer without a payment".into()))?;
    match payment.status() {
        pb::PaymentStatus::Approved => Ok(PaymentState::Approved),
        pb::PaymentStatus::Declined => Ok(PaymentState::Declined),
        pb::PaymentStatus::Refunded => Ok(PaymentState::Refunded),
        pb::PaymentStatus::Voided => Ok(PaymentState::Voided),
        pb::PaymentStatus::Unspecified => Err(PaymentError::Unexpected(format!(
            "payment in unknown status {}",
            payment.status
        ))),
    }
}
