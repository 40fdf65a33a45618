//! The reservation use cases that span storage and payment-svc, called by the gRPC
//! adapter and the reconciler.
//!
//! Confirming checks the state twice: before calling payment-svc (so a repeat or a
//! refused action never reaches it) and again under the row lock when storing (the
//! reservation may have changed during the call); a failed payment call stores
//! nothing, so the caller can simply retry.
//!
//! Rejecting records the claim, refunds through payment-svc, then stores REJECTED
//! with `reservation.rejected` (see [`crate::domain`] for why it takes three steps).
//! Every step may be repeated: recording finds the claim already there, payment-svc
//! refunds a payment once however often it is asked, and storing finds the
//! reservation already REJECTED. So a caller's retry, a second manager, another
//! replica or the reconciler can each pick up a rejection wherever the last one
//! stopped, and the end is one refund and one event.

use chrono::{DateTime, Utc};
use platform::values::ExternalId;
use uuid::Uuid;

use crate::domain::{
    self, PaymentNotApproved, PendingRejection, Refused, RejectReason, Reservation, Transition,
};
use crate::payment::{self, PaymentError, PaymentGateway};
use crate::store::{Claimed, ListQuery, ReservationStore, StoreError};

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    /// Storage failed, the reservation is unknown, or its state refuses the change
    /// under the row lock (CONFIRMED, or CANCELLED meanwhile).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The reservation's state refuses the action.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Its payment is not (or no longer) approved: nothing to confirm.
    #[error(transparent)]
    NotApproved(#[from] PaymentNotApproved),
    /// Checking the payment failed; nothing was stored.
    #[error("the payment could not be checked")]
    Payment(#[source] PaymentError),
    /// The refund did not complete (payment-svc away, silent, or answering oddly).
    /// The claim stays: a retry or the reconciler finishes the rejection.
    #[error("refund not completed, rejection pending")]
    RefundPending(#[source] PaymentError),
    /// payment-svc refused the refund for good (unknown payment, or one that cannot
    /// be refunded). Nothing was refunded, so the claim has been dropped and the
    /// reservation is REQUESTED as before.
    #[error("refund refused, rejection dropped")]
    RefundRefused(#[source] PaymentError),
}

/// The reservation use cases. Cheap to clone.
#[derive(Clone)]
pub struct Reservations {
    store: ReservationStore,
    payment: PaymentGateway,
}

impl Reservations {
    /// Use cases over `store`, checking and refunding payments through `payment`.
    pub fn new(store: ReservationStore, payment: PaymentGateway) -> Self {
        Self { store, payment }
    }

    /// One reservation.
    pub async fn get(&self, reservation_id: Uuid) -> Result<Reservation, ReservationError> {
        Ok(self.store.get(reservation_id).await?)
    }

    /// One page of a talent's reservations and whether more follow.
    pub async fn list(
        &self,
        query: &ListQuery,
    ) -> Result<(Vec<Reservation>, bool), ReservationError> {
        Ok(self.store.list(query).await?)
    }

    /// A manager confirms `current` (as the caller last read it) once payment-svc
    /// says its payment is approved. A CONFIRMED reservation is returned as it is.
    ///
    /// # Errors
    ///
    /// See [`ReservationError`]; nothing is stored unless the confirmation is.
    pub async fn confirm(
        &self,
        current: Reservation,
        manager_id: &ExternalId,
    ) -> Result<Reservation, ReservationError> {
        match current.confirm(manager_id, Utc::now())? {
            Transition::AlreadyDone => return Ok(current),
            Transition::Changed(..) => {}
        }
        let payment_id = paid_with(&current)?;
        let state = payment::state(&self.payment, payment_id)
            .await
            .map_err(ReservationError::Payment)?;
        domain::require_approved(state)?;
        Ok(self
            .store
            .confirm(current.reservation_id(), manager_id)
            .await?)
    }

    /// A manager rejects a reservation: records the claim (or finds one already
    /// pending, whose manager and reason then stand), refunds, and stores REJECTED.
    /// A REJECTED reservation is returned as it is, without calling payment-svc.
    ///
    /// # Errors
    ///
    /// See [`ReservationError`]; a refused state (CONFIRMED, CANCELLED) refunds nothing.
    pub async fn reject(
        &self,
        reservation_id: Uuid,
        manager_id: &ExternalId,
        reason: &RejectReason,
    ) -> Result<Reservation, ReservationError> {
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
    /// See [`ReservationError`]. A reservation cancelled meanwhile is refused by the store
    /// (its cancellation already refunded the payment and announced its end).
    pub async fn finish(
        &self,
        reservation: &Reservation,
        pending: &PendingRejection,
    ) -> Result<Reservation, ReservationError> {
        let id = reservation.reservation_id();
        let payment_id = paid_with(reservation)?;
        match payment::refund(&self.payment, payment_id, pending.reason()).await {
            Ok(()) => {}
            Err(e @ (PaymentError::NotFound(_) | PaymentError::Refused(_))) => {
                self.store
                    .release_rejection(id, pending.requested_at())
                    .await?;
                return Err(ReservationError::RefundRefused(e));
            }
            Err(e) => return Err(ReservationError::RefundPending(e)),
        }
        Ok(self
            .store
            .reject(id, pending.manager_id(), pending.reason())
            .await?)
    }
}

/// The payment behind a reservation a manager may still act on. Storage guarantees
/// one (only a CANCELLED tombstone may lack it), so a miss is a corrupt row.
fn paid_with(r: &Reservation) -> Result<Uuid, StoreError> {
    r.payment_id().ok_or_else(|| {
        StoreError::Corrupt(format!(
            "reservation {} is {} without a payment",
            r.reservation_id(),
            r.status()
        ))
    })
}
