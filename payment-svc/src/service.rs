//! The payment use cases: charge once per order, void an order before any charge,
//! refund once, and read payments. Each one lets the domain decide and the store keep
//! the decision (with its event, in one transaction); the gRPC adapter calls these.
//!
//! Between a Pay and a Void for one order the first to commit decides: both insert
//! under the order id, and the other reads what was decided and answers with it.

use platform::time::now;
use uuid::Uuid;

use crate::domain::{ChargeRequest, Payment, Refund, RefundRefused, VoidRequest};
use crate::store::{Inserted, ListQuery, Lookup, PaymentStore, StoreError};

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("a payment for order {0} already exists with different terms")]
    Conflict(Uuid),
    #[error("order {0} was voided for a different customer, amount or currency")]
    VoidConflict(Uuid),
    /// The payment (its id) cannot be refunded.
    #[error("{1}")]
    Refused(Uuid, #[source] RefundRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The payment use cases. Cheap to clone.
#[derive(Clone)]
pub struct Payments {
    store: PaymentStore,
}

impl Payments {
    /// Use cases over `store`.
    pub fn new(store: PaymentStore) -> Self {
        Self { store }
    }

    /// Charges once per order. Returns the payment and whether this call created it; a
    /// repeat on the same terms gets the first payment (declined stays declined).
    ///
    /// # Errors
    ///
    /// [`PaymentError::Conflict`] when the order's payment was made on other terms.
    pub async fn charge(&self, req: &ChargeRequest) -> Result<(Payment, bool), PaymentError> {
        let (payment, event) = Payment::charge(req, Uuid::now_v7(), now());
        match self.store.insert_once(&payment, Some(&event)).await? {
            Inserted::New => Ok((payment, true)),
            Inserted::Existing(existing) if existing.matches(req) => Ok((existing, false)),
            Inserted::Existing(_) => Err(PaymentError::Conflict(req.order_id)),
        }
    }

    /// Closes the order's payment unless one exists: returns the VOIDED payment this
    /// call (or an earlier one) recorded, or the payment a Pay made first, unchanged.
    ///
    /// # Errors
    ///
    /// [`PaymentError::VoidConflict`] when the order was voided on other terms.
    pub async fn void(&self, req: &VoidRequest) -> Result<Payment, PaymentError> {
        let void = Payment::void(req, Uuid::now_v7(), now());
        match self.store.insert_once(&void, None).await? {
            Inserted::New => Ok(void),
            Inserted::Existing(existing) if existing.matches_void(req) => Ok(existing),
            Inserted::Existing(_) => Err(PaymentError::VoidConflict(req.order_id)),
        }
    }

    /// Refunds a payment once; later calls return it unchanged.
    ///
    /// # Errors
    ///
    /// [`PaymentError::Refused`] when nothing was charged.
    pub async fn refund(
        &self,
        payment_id: Uuid,
        reason: Option<String>,
    ) -> Result<Payment, PaymentError> {
        self.store
            .change(payment_id, |current| {
                match current
                    .refund(reason, now())
                    .map_err(|r| PaymentError::Refused(payment_id, r))?
                {
                    Refund::AlreadyRefunded => Ok(None),
                    Refund::Refunded(refunded, event) => Ok(Some((refunded, event))),
                }
            })
            .await
    }

    /// One payment.
    pub async fn get(&self, lookup: Lookup) -> Result<Payment, PaymentError> {
        Ok(self.store.get(lookup).await?)
    }

    /// One page of payments, newest first, and whether more follow.
    pub async fn list(&self, query: &ListQuery) -> Result<(Vec<Payment>, bool), PaymentError> {
        Ok(self.store.list(query).await?)
    }
}
