//! The rejection reconciler: a background task that finishes rejections left
//! pending because payment-svc was away, its answer was lost, or the process stopped
//! between recording a rejection and storing it REJECTED.
//!
//! Every `RECONCILE_INTERVAL` it takes the REQUESTED reservations whose rejection was
//! recorded more than `RECONCILE_AFTER` ago and finishes each one as
//! `RejectReservation` would: Refund again (payment-svc refunds once however often it
//! is asked), then REJECTED and `reservation.rejected` with the recorded manager and
//! reason. The grace is longer than the Refund deadline, so the reconciler does not
//! step in while the manager's own call may still be at work. While payment-svc is
//! unreachable it leaves the rest of the round for the next one.
//!
//! Safe with several replicas and alongside a retried RejectReservation: each step
//! is a conditional change under the row lock (see [`crate::store`]), so two finishing
//! one rejection make one transition and one event.

use std::time::Duration;

use chrono::Utc;
use payment_client::ReconcileSettings;
use platform::BackgroundTask;
use tokio_util::sync::CancellationToken;

use crate::payment::PaymentError;
use crate::service::{ReservationError, Reservations};
use crate::store::StoreError;

/// Most rejections finished in one round; the rest wait for the next.
const BATCH: u64 = 100;

/// The reconciler as a task the host starts once ready and stops at shutdown.
pub fn task(rejections: Reservations, settings: ReconcileSettings) -> BackgroundTask {
    BackgroundTask::new("rejection reconciler", move |stop| async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(settings.reconcile_interval) => {}
            }
            match run_once(&rejections, settings.reconcile_after, &stop).await {
                Ok(0) => {}
                Ok(finished) => tracing::info!(finished, "reconciled pending rejections"),
                Err(e) => {
                    tracing::warn!(error = %platform::outcome::chain(&e), "reconciliation round stopped; next round retries")
                }
            }
        }
    })
}

/// One round; returns how many pending rejections ended REJECTED.
///
/// # Errors
///
/// The store failed, or payment-svc is away (the round stops early then, since
/// every other refund would fail the same way).
pub async fn run_once(
    rejections: &Reservations,
    after: Duration,
    stop: &CancellationToken,
) -> Result<usize, ReservationError> {
    // The grace is validated at start to be a few seconds or minutes, far inside
    // chrono's range; saturate rather than fail if someone sets something absurd.
    let grace = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(grace)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let mut finished = 0;
    for reservation in rejections.stale(cutoff, BATCH).await? {
        if stop.is_cancelled() {
            break;
        }
        // `stale` returns only reservations with a pending rejection.
        let Some(pending) = reservation.rejecting() else {
            continue;
        };
        let id = reservation.reservation_id();
        match rejections.finish(&reservation, pending).await {
            Ok(r) => {
                tracing::info!(reservation_id = %id, status = %r.status(), "pending rejection finished");
                finished += 1;
            }
            Err(ReservationError::RefundPending(
                e @ (PaymentError::Unavailable(_) | PaymentError::DeadlineExceeded(_)),
            )) => return Err(ReservationError::RefundPending(e)),
            Err(ReservationError::Store(StoreError::Db(e)))
                if platform::status::is_unavailable(&e) =>
            {
                return Err(ReservationError::Store(StoreError::Db(e)));
            }
            Err(e) => {
                tracing::warn!(reservation_id = %id, error = %platform::outcome::chain(&e), "cannot finish pending rejection");
            }
        }
    }
    Ok(finished)
}
