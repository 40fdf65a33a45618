//! The anti-entropy pass: a background task that compares every recently decided
//! order with its payment at payment-svc (the owner of the money's truth) and repairs
//! what a lost, dead-lettered or never-sent event left wrong, through the same
//! idempotent paths the events and the reconciler use.
//!
//! It walks the decided orders last changed more than `ANTI_ENTROPY_QUIET` ago that
//! either changed within `ANTI_ENTROPY_WINDOW` or are PAID for a session still to come
//! (however old their payment: a rejection can come any time before the session),
//! `ANTI_ENTROPY_BATCH` per `ANTI_ENTROPY_INTERVAL`, in id order, and starts again
//! from the first once it reaches the end; so any order that went wrong is looked at
//! within one full pass. For each it asks GetPayment and:
//!
//! - an order that has ended (CANCELLED, REJECTED, PAYMENT_DECLINED) whose payment is
//!   APPROVED keeps money it must not: the refund is recorded as owed and paid back
//!   (see [`Orders::owe_refund`]);
//! - a PAID order with no cancellation requested whose payment was REFUNDED (longer
//!   ago than the quiet time) was rejected by its talent's manager and never heard of
//!   it (`reservation.rejected` lost): it becomes REJECTED with the refund's reason,
//!   announced as `order.rejected` without a reservation id;
//! - a PAID order without any payment is reported: it breaks an invariant no repair
//!   can guess at.
//!
//! Every repair is logged at WARN with the order id and what was repaired. Several
//! replicas may run it: each repair is a conditional change or an idempotent call.

use std::time::Duration;

use chrono::TimeDelta;
use payment_client::AntiEntropySettings;
use platform::BackgroundTask;
use platform::walk::{self, Walk};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{Order, OrderStatus, PaymentOutcome, Seen};
use crate::service::{OrderError, Orders};

/// The pass as a task the host starts once ready and stops at shutdown.
pub fn task(orders: Orders, settings: AntiEntropySettings) -> BackgroundTask {
    platform::walk::periodic("anti-entropy pass", Pass::new(orders, settings))
}

/// Where the walk stands, across batches.
pub struct Pass {
    orders: Orders,
    settings: AntiEntropySettings,
    walk: Walk<Uuid>,
}

impl Pass {
    /// A walk from the start.
    pub fn new(orders: Orders, settings: AntiEntropySettings) -> Self {
        Self {
            orders,
            settings,
            walk: Walk::new("orders"),
        }
    }

    async fn check(
        &self,
        order: &Order,
        quiet_since: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, OrderError> {
        let Some(payment) = self.orders.inspect_payment(order.order_id()).await? else {
            if order.status() == OrderStatus::Paid {
                tracing::error!(order_id = %order.order_id(),
                    "anti-entropy: PAID order without any payment at payment-svc");
            }
            return Ok(false);
        };
        if order.owe_refund(&payment.outcome, Seen::Now).is_some() {
            tracing::warn!(order_id = %order.order_id(), status = ?order.status(),
                repair = "refund kept payment",
                "anti-entropy: ended order still holds an approved payment; refunding it");
            let order = self
                .orders
                .owe_refund(order.clone(), &payment.outcome, Seen::Now)
                .await?;
            return Ok(order.refund_due().is_none());
        }
        let refunded_by_rejection = order.status() == OrderStatus::Paid
            && order.cancel_request().is_none()
            && matches!(payment.outcome, PaymentOutcome::Refunded { payment_id }
                if order.payment_id() == Some(payment_id))
            && payment.updated_at < quiet_since;
        if refunded_by_rejection {
            tracing::warn!(order_id = %order.order_id(), repair = "record rejection",
                "anti-entropy: PAID order whose payment was refunded; recording its rejection");
            let reason = payment
                .refund_reason
                .unwrap_or_else(|| "rejected by the talent's manager".to_owned());
            let order = self
                .orders
                .record_rejection(order.order_id(), &reason)
                .await?;
            return Ok(order.status() == OrderStatus::Rejected);
        }
        Ok(false)
    }
}

impl walk::Pass for Pass {
    type Error = OrderError;

    fn interval(&self) -> Duration {
        self.settings.anti_entropy_interval
    }

    /// Checks the next batch; returns how many orders it repaired. At the end of the
    /// window the next call starts a new pass. The store failing, or payment-svc away,
    /// stops the batch: the same orders are checked again next time.
    async fn step(&mut self, stop: &CancellationToken) -> Result<usize, OrderError> {
        let now = platform::time::now();
        let since = now - delta(self.settings.anti_entropy_window);
        let quiet_since = now - delta(self.settings.anti_entropy_quiet);
        // A session that started a day ago is over; its booking can no longer change.
        let sessions_after = now - TimeDelta::days(1);
        let (batch, next) = self
            .orders
            .settled_between(
                since,
                quiet_since,
                sessions_after,
                self.walk.cursor(),
                self.settings.anti_entropy_batch,
            )
            .await?;
        for order in batch {
            if stop.is_cancelled() {
                break;
            }
            let outcome = self.check(&order, quiet_since).await;
            self.walk.tally(order.order_id(), outcome, is_outage)?;
        }
        Ok(self.walk.end_batch(next))
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Whether the error says payment-svc is away (the batch stops) rather than that one
/// order cannot be checked (it is reported and passed).
fn is_outage(e: &OrderError) -> bool {
    matches!(e, OrderError::Payment(p) if p.is_outage())
}
