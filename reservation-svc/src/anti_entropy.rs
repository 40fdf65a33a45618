//! The anti-entropy pass: a background task that compares every active booking with
//! its payment at payment-svc (the owner of the money's truth) and repairs what a
//! lost, dead-lettered or never-sent event left wrong, through the consumer's own
//! idempotent path.
//!
//! It walks the active reservations (REQUESTED or CONFIRMED, no rejection pending)
//! for sessions still to come, last changed more than `ANTI_ENTROPY_QUIET` ago,
//! `ANTI_ENTROPY_BATCH` per `ANTI_ENTROPY_INTERVAL`, in id order, and starts again
//! from the first once it reaches the end. For each it asks GetPayment:
//!
//! - a payment REFUNDED (longer ago than the quiet time) means the order was cancelled
//!   and `order.cancelled` never arrived (a rejection in progress would be pending on
//!   the reservation, and is skipped): the booking is cancelled as that event would
//!   have cancelled it, with the refund's reason, and `reservation.cancelled` is
//!   announced;
//! - a payment that is not approved in any other way (declined, voided, unknown) is
//!   reported: a booking is only ever made from an approved payment.
//!
//! In the same steps it walks the other way, through payment-svc's APPROVED payments
//! (ListPayments, newest first, a page per step) created within `ANTI_ENTROPY_WINDOW`
//! and more than `ANTI_ENTROPY_QUIET` ago: a paid order without any reservation lost
//! its `payment.approved`, and gets the booking that event would have made, from the
//! booking payment-svc keeps with the payment (`reservation.requested` is announced).
//!
//! Every repair is logged at WARN with the reservation and order ids. Several
//! replicas may run it: the repair is the consumer's conditional change.

use std::time::Duration;

use chrono::TimeDelta;
use payment_client::AntiEntropySettings;
use platform::BackgroundTask;
use platform::walk::{self, Walk};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{Cancellation, OrderEvent, PaymentState, Reservation};
use crate::payment::{self, ApprovedPayment, PaymentError, PaymentGateway};
use crate::store::{Applied, ReservationStore, StoreError};

/// Why a batch stopped.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Payment(#[from] PaymentError),
}

/// The pass as a task the host starts once ready and stops at shutdown.
pub fn task(
    store: ReservationStore,
    payments: PaymentGateway,
    settings: AntiEntropySettings,
) -> BackgroundTask {
    platform::walk::periodic("anti-entropy pass", Pass::new(store, payments, settings))
}

/// Where the walk stands, across batches.
pub struct Pass {
    store: ReservationStore,
    payments: PaymentGateway,
    settings: AntiEntropySettings,
    bookings: Walk<Uuid>,
    /// The next page of payment-svc's approved payments; empty: the newest.
    approvals_token: String,
}

impl Pass {
    /// A walk from the start.
    pub fn new(
        store: ReservationStore,
        payments: PaymentGateway,
        settings: AntiEntropySettings,
    ) -> Self {
        Self {
            store,
            payments,
            settings,
            bookings: Walk::new("bookings"),
            approvals_token: String::new(),
        }
    }

    /// Checks the next batch of active bookings against their payments.
    async fn step_bookings(
        &mut self,
        now: chrono::DateTime<chrono::Utc>,
        quiet_since: chrono::DateTime<chrono::Utc>,
        stop: &CancellationToken,
    ) -> Result<usize, PassError> {
        // A session that started a day ago is over; its booking can no longer change.
        let sessions_after = now - TimeDelta::days(1);
        let (batch, next) = self
            .store
            .active_between(
                quiet_since,
                sessions_after,
                self.bookings.cursor(),
                self.settings.anti_entropy_batch,
            )
            .await?;
        for reservation in batch {
            if stop.is_cancelled() {
                break;
            }
            let outcome = self.check(&reservation, quiet_since).await;
            self.bookings
                .tally(reservation.reservation_id(), outcome, is_outage)?;
        }
        Ok(self.bookings.end_batch(next))
    }

    /// Books the paid orders of one page of approved payments that have no
    /// reservation; returns how many.
    async fn step_approvals(
        &mut self,
        now: chrono::DateTime<chrono::Utc>,
        quiet_since: chrono::DateTime<chrono::Utc>,
        stop: &CancellationToken,
    ) -> Result<usize, PassError> {
        let window_start = now - delta(self.settings.anti_entropy_window);
        // ListPayments pages hold at most 100.
        let size = i32::try_from(self.settings.anti_entropy_batch.min(100)).unwrap_or(100);
        let (page, next) =
            payment::approved_page(&self.payments, &self.approvals_token, size).await?;
        let in_window: Vec<&ApprovedPayment> = page
            .iter()
            .flatten()
            .filter(|p| p.created_at >= window_start && p.created_at < quiet_since)
            .collect();
        let past_window = page.iter().flatten().any(|p| p.created_at < window_start);
        let order_ids: Vec<Uuid> = in_window.iter().map(|p| p.approval.order_id).collect();
        let booked = self.store.orders_with_reservation(&order_ids).await?;
        let mut repaired = 0;
        for payment in in_window {
            if stop.is_cancelled() {
                return Ok(repaired);
            }
            let approval = &payment.approval;
            if booked.contains(&approval.order_id) {
                continue;
            }
            match self
                .store
                .apply_repair(&OrderEvent::Approved(approval.clone()))
                .await
            {
                Ok(Applied::Unchanged) => {}
                Ok(applied) => {
                    tracing::warn!(order_id = %approval.order_id,
                        payment_id = %approval.payment_id, ?applied, repair = "create booking",
                        "anti-entropy: approved payment without a booking; booked it");
                    repaired += 1;
                }
                Err(e) => {
                    let e = PassError::from(e);
                    if is_outage(&e) {
                        return Err(e);
                    }
                    tracing::error!(order_id = %approval.order_id, error = %platform::outcome::chain(&e),
                        "anti-entropy cannot book this approved payment");
                }
            }
        }
        self.approvals_token = if past_window { String::new() } else { next };
        Ok(repaired)
    }

    async fn check(
        &self,
        reservation: &Reservation,
        quiet_since: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, PassError> {
        // `active_between` returns only reservations with a payment.
        let Some(payment_id) = reservation.payment_id() else {
            return Ok(false);
        };
        let payment = payment::facts(&self.payments, payment_id).await?;
        match payment.state {
            PaymentState::Approved => Ok(false),
            PaymentState::Refunded if payment.updated_at < quiet_since => {
                let cancelled = OrderEvent::Cancelled(Cancellation {
                    order_id: reservation.order_id(),
                    customer_id: reservation.customer_id().clone(),
                    payment_id: Some(payment_id),
                    reason: payment.refund_reason,
                });
                let applied = self.store.apply_repair(&cancelled).await?;
                if applied == Applied::Unchanged {
                    return Ok(false);
                }
                tracing::warn!(reservation_id = %reservation.reservation_id(),
                    order_id = %reservation.order_id(), repair = "cancel booking",
                    "anti-entropy: active booking whose payment was refunded; cancelled it");
                Ok(true)
            }
            PaymentState::Refunded => Ok(false),
            other => {
                tracing::error!(reservation_id = %reservation.reservation_id(), payment = ?other,
                    "anti-entropy: active booking without an approved payment");
                Ok(false)
            }
        }
    }
}

impl walk::Pass for Pass {
    type Error = PassError;

    fn interval(&self) -> Duration {
        self.settings.anti_entropy_interval
    }

    /// Checks the next batch of each walk; returns how many records it repaired. The
    /// two walks stop independently: one blocked by an outage leaves the other going.
    ///
    /// # Errors
    ///
    /// Both walks stopped (the store failed, or payment-svc is away); the same
    /// records are checked again next time.
    async fn step(&mut self, stop: &CancellationToken) -> Result<usize, PassError> {
        let now = platform::time::now();
        let quiet_since = now - delta(self.settings.anti_entropy_quiet);
        let approvals = self.step_approvals(now, quiet_since, stop).await;
        let bookings = self.step_bookings(now, quiet_since, stop).await;
        match (approvals, bookings) {
            (Ok(a), Ok(b)) => Ok(a + b),
            (Ok(n), Err(e)) | (Err(e), Ok(n)) => {
                tracing::warn!(error = %platform::outcome::chain(&e), "one anti-entropy walk stopped; the next batch retries");
                Ok(n)
            }
            (Err(e), Err(_)) => Err(e),
        }
    }
}

/// Whether the error says a dependency is away (then the walk stops for this batch)
/// rather than that one record is wrong (then it is reported and skipped).
fn is_outage(e: &PassError) -> bool {
    match e {
        PassError::Payment(PaymentError::Unavailable(_) | PaymentError::DeadlineExceeded(_)) => {
            true
        }
        PassError::Store(StoreError::Db(db)) => platform::status::is_unavailable(db),
        _ => false,
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}
