//! What payment-svc's answers mean for an order: the calls order-svc makes through
//! the shared [`PaymentGateway`] (crate `payment-client`: deadline, budgeted
//! retries, breaker, concurrency limit), with the order's values going in and the
//! domain's [`PaymentOutcome`] coming out.
//!
//! Every call here is idempotent on payment-svc's side (Pay and Void per order id,
//! Refund per payment id), so a caller may repeat any of them after an error without
//! charging or refunding twice.

use payment_client::{Charge, Closing, Lookup, Payment, PaymentStatus};
use platform::values::CardNumber;
use uuid::Uuid;

pub use payment_client::{PaymentError, PaymentGateway};

use crate::domain::{Order, PaymentOutcome};

/// An order's payment as the anti-entropy pass compares it.
#[derive(Clone, Debug)]
pub struct PaymentFacts {
    pub outcome: PaymentOutcome,
    /// When payment-svc last changed it (its refund, for a refunded payment).
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub refund_reason: Option<String>,
}

/// Charges `card` for `order` (idempotent per order id).
pub async fn pay(
    payments: &PaymentGateway,
    order: &Order,
    card: &CardNumber,
) -> Result<PaymentOutcome, PaymentError> {
    let charge = Charge {
        order_id: order.order_id(),
        customer_id: order.customer_id(),
        money: order.money(),
        card,
        booking: order.booking(),
    };
    Ok(outcome(&payments.pay(charge).await?))
}

/// Closes the order's payment before any charge: answers [`PaymentOutcome::Voided`],
/// or the payment a Pay made first (idempotent per order id).
pub async fn void(
    payments: &PaymentGateway,
    order: &Order,
    reason: Option<&str>,
) -> Result<PaymentOutcome, PaymentError> {
    let closing = Closing {
        order_id: order.order_id(),
        customer_id: order.customer_id(),
        money: order.money(),
        reason,
    };
    Ok(outcome(&payments.void(closing).await?))
}

/// The order's payment, or `None` when payment-svc has none for it.
pub async fn find_for_order(
    payments: &PaymentGateway,
    order_id: Uuid,
) -> Result<Option<PaymentOutcome>, PaymentError> {
    Ok(payments
        .find(Lookup::Order(order_id))
        .await?
        .as_ref()
        .map(outcome))
}

/// What payment-svc holds for the order, with when it last changed and its refund
/// reason (for the anti-entropy pass), or `None` when it has nothing.
pub async fn inspect(
    payments: &PaymentGateway,
    order_id: Uuid,
) -> Result<Option<PaymentFacts>, PaymentError> {
    Ok(payments
        .find(Lookup::Order(order_id))
        .await?
        .map(|p| PaymentFacts {
            outcome: outcome(&p),
            updated_at: p.updated_at,
            refund_reason: p.refund_reason,
        }))
}

fn outcome(p: &Payment) -> PaymentOutcome {
    let payment_id = p.payment_id;
    match &p.status {
        PaymentStatus::Approved => PaymentOutcome::Approved { payment_id },
        PaymentStatus::Declined { reason } => PaymentOutcome::Declined {
            payment_id,
            reason: reason.clone(),
        },
        PaymentStatus::Refunded => PaymentOutcome::Refunded { payment_id },
        PaymentStatus::Voided => PaymentOutcome::Voided,
    }
}
