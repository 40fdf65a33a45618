//! Rejecting a reservation, shared by `RejectReservation` and the reconciler: record
//! the claim, refund through payment-svc, then store REJECTED with
//! `reservation.rejected` (see [`crate::domain`] for why it takes three steps).
//!
//! Every step may be repeated: recording finds the claim already there, payment-svc
//! refunds a payment once however often it is asked, and storing finds the
//! reservation already REJECTED. So a caller's retry, a second manager, another
//! replica or the reconciler can each pick up a rejection wherever the last one
//! stopped, and the end is one refund and one event.

use chrono::{DateTime, Utc};
use platform::values::ExternalId;
use uuid::Uuid;

use crate::domain::{PendingRejection, RejectReason, Reservation};
use crate::payment::{self, PaymentError, PaymentGateway};
use crate::store::{Claimed, ReservationStore, StoreError};

/// Why a rejection did not (yet) end REJECTED.
#[derive(Debug, thiserror::Error)]
pub enum RejectError {
    /// Storage failed, the reservation is unknown, or its state refuses a rejection
    /// (CONFIRMED, or CANCELLED meanwhile).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The refund did not complete (payment-svc away, silent, or answering oddly).
    /// The claim stays: a retry or the reconciler finishes the rejection.
    #[error("refund not completed, rejection pending: {0}")]
    RefundPending(PaymentError),
    /// payment-svc refused the refund for good (unknown payment, or one that cannot
    /// be refunded). Nothing was refunded, so the claim has been dropped and the
    /// reservation is REQUESTED as before.
    #[error("refund refused, rejection dropped: {0}")]
    RefundRefused(PaymentError),
}

/// Rejections over the store and payment-svc. Cheap to clone.
#[derive(Clone)]
pub struct Rejections {
    store: ReservationStore,
    payment: PaymentGateway,
}

impl Rejections {
    /// Rejections recorded in `store`, refunded through `payment`.
    pub fn new(store: ReservationStore, payment: PaymentGateway) -> Self {
        Self { store, payment }
    }

    /// A manager rejects a reservation: records the claim (or finds one already
    /// pending, whose manager and reason then stand), refunds, and stores REJECTED.
    /// A REJECTED reservation is returned as it is, without calling payment-svc.
    ///
    /// # Errors
    ///
    /// See [`RejectError`]; a refused state (CONFIRMED, CANCELLED) refunds nothing.
    pub async fn reject(
        &self,
        reservation_id: Uuid,
        manager_id: &ExternalId,
        reason: &RejectReason,
    ) -> Result<Reservation, RejectError> {
        match self
            .store
            .claim_rejection(reservation_id, manager_id, reason)
            .await?
        {
            Claimed::Rejected(done) => Ok(done),
            Claimed::Pending(reservation, pending) => self.finish(&reservation, &pending).await,
        }
    }

    /// Reservations whose rejection has been pending since before `cutoff`.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn stale(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Reservation>, StoreError> {
        self.store.stale_rejections(cutoff, limit).await
    }

    /// Finishes the pending rejection of `reservation`: refund (idempotent), then
    /// REJECTED and `reservation.rejected` with the recorded manager and reason.
    ///
    /// # Errors
    ///
    /// See [`RejectError`]. A reservation cancelled meanwhile is refused by the store
    /// (its cancellation already refunded the payment and announced its end).
    pub async fn finish(
        &self,
        reservation: &Reservation,
        pending: &PendingRejection,
    ) -> Result<Reservation, RejectError> {
        let id = reservation.reservation_id;
        // Storage guarantees a payment outside a CANCELLED tombstone.
        let payment_id = reservation.payment_id.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "reservation {id} is being rejected without a payment"
            ))
        })?;
        match payment::refund(&self.payment, payment_id, &pending.reason).await {
            Ok(()) => {}
            Err(e @ (PaymentError::NotFound(_) | PaymentError::Refused(_))) => {
                self.store
                    .release_rejection(id, pending.requested_at)
                    .await?;
                return Err(RejectError::RefundRefused(e));
            }
            Err(e) => return Err(RejectError::RefundPending(e)),
        }
        Ok(self
            .store
            .reject(id, &pending.manager_id, &pending.reason)
            .await?)
    }
}
