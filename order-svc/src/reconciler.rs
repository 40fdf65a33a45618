//! The payment reconciler: a background task that settles orders left
//! PENDING_PAYMENT, because payment-svc was away, its answer was lost, or the
//! process stopped between Pay and recording the answer; and finishes cancellations
//! left PAID, because the process stopped (or the database failed) between Refund
//! and recording CANCELLED.
//!
//! Every `RECONCILE_INTERVAL` it takes the PENDING_PAYMENT orders whose latest Pay
//! attempt is older than `RECONCILE_AFTER` and asks payment-svc (`GetPayment` by
//! order id) what became of them: APPROVED → PAID, DECLINED → PAYMENT_DECLINED,
//! REFUNDED → CANCELLED (refunded), none → voided at payment-svc, then CANCELLED
//! ("payment not completed"). The void, not the clock, makes giving up safe: a Pay
//! still on its way finds the void and charges nothing. The grace (longer than the
//! Pay deadline) only keeps the reconciler from voiding a Pay that is about to land.
//!
//! Then it takes the PAID orders whose cancellation was requested more than
//! `RECONCILE_AFTER` ago, refunds their payment again (Refund is idempotent per
//! payment id, so an already refunded payment just answers REFUNDED) and records them
//! CANCELLED with the requested reason. An order REJECTED meanwhile is no longer PAID
//! and is left alone: reservation-svc refunded it. While payment-svc is unreachable
//! the reconciler leaves the rest of the round for the next one.
//!
//! Last, it pays back every refund an order owes (a payment approved after its order
//! ended, recorded before the refund was asked for) until payment-svc confirms it.
//!
//! Safe with several replicas: every outcome is a conditional change of the order
//! (see [`crate::store`]), so two replicas settling one order make one transition
//! and one event.

use std::time::Duration;

use platform::BackgroundTask;
use tokio_util::sync::CancellationToken;

use crate::domain::{ABANDONED_REASON, OrderStatus};
use crate::service::{OrderError, Orders};

/// Most orders settled in one round; the rest wait for the next.
const BATCH: u64 = 100;

/// The reconciler as a task the host starts once ready and stops at shutdown.
pub fn task(orders: Orders, interval: Duration) -> BackgroundTask {
    BackgroundTask::new("payment reconciler", move |stop| async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            match run_once(&orders, &stop).await {
                Ok(0) => {}
                Ok(settled) => tracing::info!(settled, "reconciled orders"),
                Err(e) => {
                    tracing::warn!(error = %platform::outcome::chain(&e), "reconciliation round stopped; next round retries")
                }
            }
        }
    })
}

/// One round; returns how many orders left PENDING_PAYMENT or were cancelled.
///
/// # Errors
///
/// The store failed, or payment-svc is away (the round stops early then, since
/// every other order would fail the same way).
pub async fn run_once(orders: &Orders, stop: &CancellationToken) -> Result<usize, OrderError> {
    Ok(settle_pending(orders, stop).await?
        + finish_cancellations(orders, stop).await?
        + pay_back_owed(orders, stop).await?)
}

async fn pay_back_owed(orders: &Orders, stop: &CancellationToken) -> Result<usize, OrderError> {
    let mut paid = 0;
    for order in orders.refunds_due(BATCH).await? {
        if stop.is_cancelled() {
            break;
        }
        match orders.pay_back(&order).await {
            Ok(_) => paid += 1,
            Err(OrderError::Payment(e)) if e.is_outage() => return Err(e.into()),
            Err(e) => {
                tracing::error!(order_id = %order.order_id(), error = %platform::outcome::chain(&e), "cannot pay back an owed refund");
            }
        }
    }
    Ok(paid)
}

async fn settle_pending(orders: &Orders, stop: &CancellationToken) -> Result<usize, OrderError> {
    let mut settled = 0;
    for order in orders.stale_pending(BATCH).await? {
        if stop.is_cancelled() {
            break;
        }
        match orders
            .resolve_pending(&order, Some(ABANDONED_REASON.to_owned()))
            .await
        {
            Ok(o) if o.status() != OrderStatus::PendingPayment => {
                tracing::info!(order_id = %o.order_id(), status = ?o.status(), "pending order settled");
                settled += 1;
            }
            Ok(_) => {}
            Err(OrderError::Payment(e)) if e.is_outage() => return Err(e.into()),
            Err(e) => {
                tracing::warn!(order_id = %order.order_id(), error = %platform::outcome::chain(&e), "cannot settle pending order");
            }
        }
    }
    Ok(settled)
}

async fn finish_cancellations(
    orders: &Orders,
    stop: &CancellationToken,
) -> Result<usize, OrderError> {
    let mut finished = 0;
    for order in orders.stalled_cancellations(BATCH).await? {
        if stop.is_cancelled() {
            break;
        }
        match orders.finish_cancellation(&order).await {
            Ok(o) if o.status() == OrderStatus::Cancelled => {
                tracing::info!(order_id = %o.order_id(), "interrupted cancellation finished");
                finished += 1;
            }
            // Ended another way since it was read (REJECTED); nothing left to do.
            Ok(o) => {
                tracing::info!(order_id = %o.order_id(), status = ?o.status(),
                    "order with a pending cancellation ended otherwise");
            }
            Err(OrderError::Payment(e)) if e.is_outage() => return Err(e.into()),
            Err(e) => {
                tracing::warn!(order_id = %order.order_id(), error = %platform::outcome::chain(&e), "cannot finish cancellation");
            }
        }
    }
    Ok(finished)
}
