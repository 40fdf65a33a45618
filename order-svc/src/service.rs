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

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use platform::values::CardNumber;
use uuid::Uuid;

use crate::domain::{ABANDONED_REASON, NewOrder, Order, OrderStatus, PaymentOutcome};
use crate::payment::{PaymentError, PaymentGateway};
use crate::store::{ListQuery, OrderStore, Placed, StoreError};

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// The order is in a state that does not allow the request.
    #[error("{0}")]
    FailedPrecondition(String),
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
                let (order, to_pay) = self.store.begin_payment_attempt(order.order_id).await?;
                if !to_pay {
                    return Ok(order);
                }
                order
            }
        };
        let outcome = self.payments.pay(&order, card).await?;
        let settled = self
            .store
            .change(order.order_id, |o, now| Ok(o.settle(&outcome, now)))
            .await?;
        self.refund_if_orphaned(&settled, &outcome).await;
        Ok(settled)
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
    /// - [`OrderError::FailedPrecondition`]: the order ended another way, or its
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
        if order.status == OrderStatus::PendingPayment {
            order = self.resolve_pending(&order, reason.clone()).await?;
        }
        if order.status == OrderStatus::Paid {
            let requested = self.store.request_cancellation(order_id, reason).await?;
            order = self.finish_cancellation(&requested).await?;
        }
        match order.status {
            OrderStatus::Cancelled => Ok(order),
            OrderStatus::PendingPayment => Err(OrderError::FailedPrecondition(
                "the order's payment is in progress; retry shortly".into(),
            )),
            status @ (OrderStatus::PaymentDeclined | OrderStatus::Rejected) => {
                Err(OrderError::FailedPrecondition(format!(
                    "the order is {status}; it has ended and holds no money"
                )))
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
        let (OrderStatus::Paid, Some(request)) = (order.status, &order.cancel_request) else {
            return Ok(order.clone());
        };
        let payment_id = order.payment_id.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "order {} is paid without a payment",
                order.order_id
            ))
        })?;
        self.payments
            .refund(payment_id, request.reason.as_deref())
            .await?;
        Ok(self
            .store
            .change(order.order_id, |o, now| {
                o.finish_cancellation(payment_id, now)
            })
            .await?)
    }

    /// Settles a PENDING_PAYMENT order with what payment-svc knows of it: its
    /// payment's decision, or, when it has none and the latest Pay attempt is older
    /// than the grace, CANCELLED with `abandon_reason`. Returns the order as it now
    /// stands (still PENDING_PAYMENT when its Pay attempt is too recent to judge).
    pub async fn resolve_pending(
        &self,
        order: &Order,
        abandon_reason: Option<String>,
    ) -> Result<Order, OrderError> {
        let order_id = order.order_id;
        let found = self.payments.find_for_order(order_id).await?;
        let resolved = match found {
            Some(outcome) => {
                let settled = self
                    .store
                    .change(order_id, |o, now| Ok(o.settle(&outcome, now)))
                    .await?;
                self.refund_if_orphaned(&settled, &outcome).await;
                settled
            }
            None => {
                let grace = self.grace;
                self.store
                    .change(order_id, |o, now| Ok(o.abandon(abandon_reason, now, grace)))
                    .await?
            }
        };
        Ok(resolved)
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

    /// The settings keep the grace far above the Pay deadline, so payment-svc cannot
    /// approve a payment for an order already given up. Should it happen anyway
    /// (clocks of two replicas far apart), the money goes back at once.
    async fn refund_if_orphaned(&self, order: &Order, outcome: &PaymentOutcome) {
        let PaymentOutcome::Approved { payment_id } = outcome else {
            return;
        };
        if order.status != OrderStatus::Cancelled || order.payment_id == Some(*payment_id) {
            return;
        }
        tracing::error!(order_id = %order.order_id, %payment_id,
            "payment approved for an order already given up; refunding it");
        if let Err(e) = self
            .payments
            .refund(*payment_id, Some(ABANDONED_REASON))
            .await
        {
            tracing::error!(order_id = %order.order_id, %payment_id, error = %e,
                "refund of an orphaned payment failed; refund it by hand");
        }
    }
}
