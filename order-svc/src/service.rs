//! The order use cases that span storage and payment-svc: placing and paying an
//! order, cancelling (and refunding) it, and settling an order left
//! PENDING_PAYMENT. The gRPC adapter and the reconciler both call these.
//!
//! A database transaction is never held across a call to payment-svc. Instead the
//! order is stored PENDING_PAYMENT first, and payment-svc's answer is recorded
//! afterwards as a conditional change. If that second step never happens (payment-svc
//! away, a crash, a lost answer), the order stays PENDING_PAYMENT until a retry of
//! PlaceOrder, a CancelOrder or the reconciler asks payment-svc what happened. So an
//! order is PAID only after an APPROVED answer, and an approved payment never stays
//! without its PAID (or cancelled and refunded) order.
//!
//! Cancelling a PAID order follows the same rule the other way round: the customer's
//! request is stored first (its own short transaction, no event), then payment-svc
//! refunds the payment, then the order becomes CANCELLED. Should the last step never
//! happen, the order stays PAID with its request recorded until a repeated
//! CancelOrder or the reconciler finishes it (Refund is idempotent per payment id),
//! so a refunded payment never stays behind a PAID order.
//!
//! Giving up an unpaid order is decided at payment-svc, not by a clock: the order is
//! voided there first (a terminal payment row, so a Pay arriving later charges
//! nothing and answers with the void), and only then ends CANCELLED. An approval that
//! still meets an order that ended without it (given up by an older version, or found
//! by the anti-entropy pass) is recorded as a refund owed before it is asked for, and
//! the reconciler finishes it.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use platform::values::CardNumber;
use uuid::Uuid;

use crate::domain::{NewOrder, Order, OrderStatus, PaymentOutcome, Seen};
use crate::payment::{self, PaymentError, PaymentFacts, PaymentGateway};
use crate::store::{ListQuery, OrderStore, Placed, StoreError};

/// The refund reason of a payment approved after its order had ended.
pub const LATE_PAYMENT_REASON: &str = "payment approved after the order had ended";

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// The order's payment may still be in flight: the request may succeed shortly.
    #[error("the order's payment is in progress; retry shortly")]
    PaymentInFlight(Uuid),
    /// The order ended without money to give back.
    #[error("the order is {1}; it has ended and holds no money")]
    Ended(Uuid, OrderStatus),
}

/// The order use cases. Cheap to clone.
#[derive(Clone)]
pub struct Orders {
    store: OrderStore,
    payments: PaymentGateway,
    /// How old a Pay attempt must be before its order may be given up.
    grace: TimeDelta,
}

impl Orders {
    /// Use cases over `store` and `payments`; `grace` is `RECONCILE_AFTER`, which the
    /// settings keep longer than the Pay deadline.
    pub fn new(store: OrderStore, payments: PaymentGateway, grace: Duration) -> Self {
        Self {
            store,
            payments,
            grace: TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX),
        }
    }

    /// Places an order and pays for it. A repeat with the same request id returns the
    /// first order, paying it first if it is still PENDING_PAYMENT (Pay is
    /// idempotent per order id, so this never charges twice).
    ///
    /// # Errors
    ///
    /// [`OrderError::Payment`] when payment-svc gave no usable answer: the order is
    /// then stored and still PENDING_PAYMENT.
    pub async fn place(
        &self,
        new: &NewOrder,
        card: &CardNumber,
        now: DateTime<Utc>,
    ) -> Result<Order, OrderError> {
        let order = match self.store.place(new, now).await? {
            Placed::Created(order) => order,
            Placed::Existing(order) => {
                let (order, to_pay) = self.store.begin_payment_attempt(order.order_id()).await?;
                if !to_pay {
                    return Ok(order);
                }
                order
            }
        };
        let outcome = payment::pay(&self.payments, &order, card).await?;
        self.apply(&order, &outcome).await
    }

    /// One order.
    pub async fn get(&self, order_id: Uuid) -> Result<Order, OrderError> {
        Ok(self.store.get(order_id).await?)
    }

    /// One page of a customer's orders and whether more follow.
    pub async fn list(&self, query: &ListQuery) -> Result<(Vec<Order>, bool), OrderError> {
        Ok(self.store.list(query).await?)
    }

    /// Cancels an order on the customer's behalf, refunding its payment first. A
    /// PENDING_PAYMENT order is settled with payment-svc first, as the reconciler
    /// would. A PAID order's request is recorded before the refund, so a repeat (or
    /// the reconciler) finishes a cancellation interrupted after its refund, with the
    /// first request's reason. Cancelling a CANCELLED order returns it unchanged.
    ///
    /// # Errors
    ///
    /// - [`OrderError::Ended`] or [`OrderError::PaymentInFlight`]: the order ended another way, or its
    ///   payment may still be in flight (retry shortly).
    /// - [`OrderError::Payment`]: the refund (or the payment lookup) could not be
    ///   made; the order stays PAID with its cancellation requested, which a retry
    ///   or the reconciler finishes.
    pub async fn cancel(
        &self,
        order_id: Uuid,
        reason: Option<String>,
    ) -> Result<Order, OrderError> {
        let mut order = self.store.get(order_id).await?;
        if order.status() == OrderStatus::PendingPayment {
            order = self.resolve_pending(&order, reason.clone()).await?;
        }
        if order.status() == OrderStatus::Paid {
            let requested = self.store.request_cancellation(order_id, reason).await?;
            order = self.finish_cancellation(&requested).await?;
        }
        match order.status() {
            OrderStatus::Cancelled => Ok(order),
            OrderStatus::PendingPayment => Err(OrderError::PaymentInFlight(order_id)),
            status @ (OrderStatus::PaymentDeclined | OrderStatus::Rejected) => {
                Err(OrderError::Ended(order_id, status))
            }
            // `finish_cancellation` ends every PAID order with a request; one without
            // would be a bug, reported rather than refunded on a guess.
            OrderStatus::Paid => Err(StoreError::Corrupt(format!(
                "order {order_id} stayed paid after its cancellation"
            ))
            .into()),
        }
    }

    /// Finishes the cancellation requested for a PAID order: refunds its payment
    /// (again, if the request's own attempt got that far: Refund is idempotent per
    /// payment id) and records it CANCELLED with the request's reason. An order that
    /// is not PAID or has no request is returned as it stands, as is one that ended
    /// another way meanwhile (REJECTED: reservation-svc refunded the same payment).
    pub async fn finish_cancellation(&self, order: &Order) -> Result<Order, OrderError> {
        let (OrderStatus::Paid, Some(request)) = (order.status(), order.cancel_request()) else {
            return Ok(order.clone());
        };
        let payment_id = order.payment_id().ok_or_else(|| {
            StoreError::Corrupt(format!(
                "order {} is paid without a payment",
                order.order_id()
            ))
        })?;
        self.payments.refund(payment_id, request.reason()).await?;
        Ok(self
            .store
            .change(order.order_id(), |o, now| {
                o.finish_cancellation(payment_id, now)
            })
            .await?)
    }

    /// Settles a PENDING_PAYMENT order with what payment-svc knows of it: its
    /// payment's decision, or, when it has none and the latest Pay attempt is older
    /// than the grace, a void at payment-svc and then CANCELLED with `abandon_reason`.
    /// Returns the order as it now stands (still PENDING_PAYMENT when its Pay attempt
    /// is too recent to judge).
    pub async fn resolve_pending(
        &self,
        order: &Order,
        abandon_reason: Option<String>,
    ) -> Result<Order, OrderError> {
        let order_id = order.order_id();
        let outcome = match payment::find_for_order(&self.payments, order_id).await? {
            // Voided by an earlier attempt that stopped before recording CANCELLED:
            // finish it with this request's reason.
            Some(PaymentOutcome::Voided) => {
                return Ok(self
                    .store
                    .change(order_id, |o, now| Ok(o.abandon(abandon_reason, now)))
                    .await?);
            }
            Some(outcome) => outcome,
            None => {
                // Read again: a retried PlaceOrder may have started a new attempt since.
                let current = self.store.get(order_id).await?;
                if current.status() != OrderStatus::PendingPayment
                    || !current.payment_attempt_expired(platform::time::now(), self.grace)
                {
                    return Ok(current);
                }
                match payment::void(&self.payments, &current, abandon_reason.as_deref()).await? {
                    PaymentOutcome::Voided => {
                        return Ok(self
                            .store
                            .change(order_id, |o, now| Ok(o.abandon(abandon_reason, now)))
                            .await?);
                    }
                    // A Pay got to payment-svc first: settle with what it decided.
                    decided => decided,
                }
            }
        };
        self.apply(order, &outcome).await
    }

    /// Records payment-svc's answer on the order, `seen` as this call last read or
    /// wrote it. An approval the order can no longer take (it ended without it)
    /// becomes a refund owed, recorded, then asked for.
    async fn apply(&self, seen: &Order, outcome: &PaymentOutcome) -> Result<Order, OrderError> {
        let settled = self
            .store
            .change_from(seen, |o, now| Ok(o.settle(outcome, now)))
            .await?;
        self.owe_refund(settled, outcome, Seen::InAnswer).await
    }

    /// Records the refund an approval meeting an ended order is owed, then tries it
    /// once; the reconciler retries until it is done. Returns the order as it stands.
    pub async fn owe_refund(
        &self,
        order: Order,
        outcome: &PaymentOutcome,
        seen: Seen,
    ) -> Result<Order, OrderError> {
        if order.owe_refund(outcome, seen).is_none() {
            return Ok(order);
        }
        let (owing, _) = self
            .store
            .amend(order.order_id(), |o, _| o.owe_refund(outcome, seen))
            .await?;
        tracing::error!(order_id = %owing.order_id(), payment_id = ?owing.refund_due(),
            status = ?owing.status(), "an ended order holds an approved payment; refund recorded as owed");
        match self.pay_back(&owing).await {
            Ok(order) => Ok(order),
            Err(e) => {
                tracing::warn!(order_id = %owing.order_id(), error = %platform::outcome::chain(&e),
                    "refund owed stays recorded; the reconciler retries it");
                Ok(owing)
            }
        }
    }

    /// Refunds the payment the order owes back (idempotent per payment id) and clears
    /// the debt. An order that owes nothing is returned as it is.
    pub async fn pay_back(&self, order: &Order) -> Result<Order, OrderError> {
        let Some(payment_id) = order.refund_due() else {
            return Ok(order.clone());
        };
        self.payments
            .refund(payment_id, Some(LATE_PAYMENT_REASON))
            .await?;
        let order = self
            .store
            .change(
                order.order_id(),
                |o, now| Ok(o.refund_paid(payment_id, now)),
            )
            .await?;
        tracing::info!(order_id = %order.order_id(), %payment_id, "owed refund paid back");
        Ok(order)
    }

    /// What payment-svc holds for the order (for the anti-entropy pass).
    pub async fn inspect_payment(
        &self,
        order_id: Uuid,
    ) -> Result<Option<PaymentFacts>, OrderError> {
        Ok(payment::inspect(&self.payments, order_id).await?)
    }

    /// The anti-entropy pass's next page of decided orders, and where the one after
    /// starts (see [`OrderStore::settled_between`]).
    pub async fn settled_between(
        &self,
        since: DateTime<Utc>,
        before: DateTime<Utc>,
        sessions_after: DateTime<Utc>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<(Vec<Order>, Option<Uuid>), OrderError> {
        Ok(self
            .store
            .settled_between(since, before, sessions_after, after, limit)
            .await?)
    }

    /// Ends a PAID order whose payment its manager's rejection refunded, when
    /// `reservation.rejected` never arrived: REJECTED with `reason`, announced without
    /// a reservation id. Idempotent like the event it stands in for.
    pub async fn record_rejection(
        &self,
        order_id: Uuid,
        reason: &str,
    ) -> Result<Order, OrderError> {
        Ok(self
            .store
            .change(order_id, |o, now| o.reject(None, None, reason, now))
            .await?)
    }

    /// Up to `limit` orders that owe a refund.
    pub async fn refunds_due(&self, limit: u64) -> Result<Vec<Order>, OrderError> {
        Ok(self.store.refunds_due(limit).await?)
    }

    /// Up to `limit` PENDING_PAYMENT orders whose Pay attempt is older than the grace.
    pub async fn stale_pending(&self, limit: u64) -> Result<Vec<Order>, OrderError> {
        let cutoff = platform::time::now() - self.grace;
        Ok(self.store.stale_pending(cutoff, limit).await?)
    }

    /// Up to `limit` PAID orders whose cancellation was requested longer than the
    /// grace ago. Their CancelOrder's Refund has ended by then (its deadline is
    /// shorter), so they are the reconciler's to finish; should that CancelOrder still
    /// be recording its answer, the conditional change lets one of the two win.
    pub async fn stalled_cancellations(&self, limit: u64) -> Result<Vec<Order>, OrderError> {
        let cutoff = platform::time::now() - self.grace;
        Ok(self.store.stalled_cancellations(cutoff, limit).await?)
    }
}
