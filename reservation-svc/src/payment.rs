//! What payment-svc's answers mean for a reservation: the calls reservation-svc
//! makes (GetPayment before confirming, Refund before rejecting, ListPayments for the
//! anti-entropy pass) through the shared [`PaymentGateway`] (crate `payment-client`),
//! with its answers turned into domain values.
//!
//! A payment-svc that is down costs each call a fast UNAVAILABLE rather than a hang,
//! and never affects this service's readiness.

use payment_client::{Lookup, Payment, PaymentStatus};
use uuid::Uuid;

pub use payment_client::{PaymentError, PaymentGateway};

use crate::domain::{Approval, PaymentState, RejectReason};

/// An approved payment as the anti-entropy pass sees it: what `payment.approved`
/// carried.
#[derive(Clone, Debug)]
pub struct ApprovedPayment {
    pub approval: Approval,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A payment as the anti-entropy pass compares it.
#[derive(Clone, Debug)]
pub struct PaymentFacts {
    pub state: PaymentState,
    /// When payment-svc last changed it (its refund, for a refunded payment).
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub refund_reason: Option<String>,
}

/// Where the payment stands now.
pub async fn state(
    payments: &PaymentGateway,
    payment_id: Uuid,
) -> Result<PaymentState, PaymentError> {
    Ok(facts(payments, payment_id).await?.state)
}

/// Where the payment stands, since when, and its refund reason (for the
/// anti-entropy pass).
pub async fn facts(
    payments: &PaymentGateway,
    payment_id: Uuid,
) -> Result<PaymentFacts, PaymentError> {
    let payment = payments.get(Lookup::Payment(payment_id)).await?;
    Ok(PaymentFacts {
        state: payment_state(&payment.status),
        updated_at: payment.updated_at,
        refund_reason: payment.refund_reason,
    })
}

/// One page of approved payments, newest first, from `page_token` (empty: the
/// newest), and the token of the next page (empty after the last). A payment that
/// does not parse, or carries no booking (made before payment-svc kept bookings),
/// comes back as `None` in its place: the walk moves on over it.
pub async fn approved_page(
    payments: &PaymentGateway,
    page_token: &str,
    page_size: i32,
) -> Result<(Vec<Option<ApprovedPayment>>, String), PaymentError> {
    let (page, next) = payments.approved_page(page_token, page_size).await?;
    let approved = page.into_iter().map(|p| p.and_then(approved)).collect();
    Ok((approved, next))
}

/// Refunds the payment. Idempotent in payment-svc, so a retry after a timeout never
/// refunds twice.
pub async fn refund(
    payments: &PaymentGateway,
    payment_id: Uuid,
    reason: &RejectReason,
) -> Result<(), PaymentError> {
    payments
        .refund(payment_id, Some(reason.as_ref()))
        .await
        .map(drop)
}

fn approved(p: Payment) -> Option<ApprovedPayment> {
    Some(ApprovedPayment {
        approval: Approval {
            order_id: p.order_id,
            customer_id: p.customer_id,
            payment_id: p.payment_id,
            booking: p.booking?,
        },
        created_at: p.created_at,
    })
}

fn payment_state(status: &PaymentStatus) -> PaymentState {
    match status {
        PaymentStatus::Approved => PaymentState::Approved,
        PaymentStatus::Declined { .. } => PaymentState::Declined,
        PaymentStatus::Refunded => PaymentState::Refunded,
        PaymentStatus::Voided => PaymentState::Voided,
    }
}
