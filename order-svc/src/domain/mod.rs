//! The order domain: what an order is, the terms a customer places it on, and the
//! state machine it moves through. Pure: no I/O, no clock (callers pass `now`), no
//! ids from thin air (callers pass them), so every rule is unit-tested here.
//!
//! States and the transitions [`OrderStatus::can_become`] allows:
//!
//! ```text
//! PENDING_PAYMENT ──▶ PAID ──▶ CANCELLED | REJECTED
//!        │
//!        └──▶ PAYMENT_DECLINED | CANCELLED | REJECTED
//! ```
//!
//! PAYMENT_DECLINED, CANCELLED and REJECTED are final. PENDING_PAYMENT → REJECTED
//! exists because events travel separately: reservation-svc may reject (and refund)
//! the booking of an approved payment before order-svc has recorded that approval.
//!
//! Every change raises the order's `version` by one and yields the [`OrderEvent`]
//! that announces it; a request that would leave the order where it already is
//! yields no change at all, which is what makes retries and redeliveries harmless.
//!
//! Cancelling a PAID order takes two steps around payment-svc's Refund: first the
//! customer's [`CancelRequest`] is recorded on the PAID order
//! ([`Order::request_cancellation`], no event), then, once the payment is refunded,
//! the order becomes CANCELLED ([`Order::finish_cancellation`]). A refund whose
//! CANCELLED was never recorded thus leaves a PAID order with a request behind,
//! which the reconciler finishes.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;
use values::{ExternalId, Money};

/// Longest free-text reason, shared by every service.
pub use values::MAX_REASON_CHARS;

/// Shortest and longest bookable session, in minutes.
pub const SESSION_MINUTES: std::ops::RangeInclusive<i32> = 15..=480;

/// The reason recorded when an order is given up because its payment never happened.
pub const ABANDONED_REASON: &str = "payment not completed";

/// The reason recorded when an order turns out to have been paid and refunded
/// without order-svc taking part (it learns so from payment-svc).
pub const REFUNDED_REASON: &str = "payment was refunded";

pub use values::Booking;

/// Whether a session starting at `session_start` can still be booked at `now`.
pub fn session_is_bookable(session_start: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    session_start > now
}

/// The terms a customer places an order on, validated. The card itself is not part
/// of it: it goes to payment-svc and only its last four digits stay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// The client's idempotency key: one order per request id, ever.
    pub request_id: Uuid,
    pub customer_id: ExternalId,
    pub booking: Booking,
    pub money: Money,
    pub card_last4: String,
}

/// Where an order stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    PaymentDeclined,
    Cancelled,
    Rejected,
}

impl OrderStatus {
    /// Every status, for exhaustive tests and storage round-trips.
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::PaymentDeclined,
        OrderStatus::Cancelled,
        OrderStatus::Rejected,
    ];

    /// The transition table: whether an order in `self` may move to `next`.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (
                PendingPayment,
                Paid | PaymentDeclined | Cancelled | Rejected
            ) | (Paid, Cancelled | Rejected)
        )
    }

    /// Whether the order has ended (no transition leaves this status).
    pub fn is_final(self) -> bool {
        OrderStatus::ALL.iter().all(|next| !self.can_become(*next))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OrderStatus::PendingPayment => "pending payment",
            OrderStatus::Paid => "paid",
            OrderStatus::PaymentDeclined => "payment declined",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
        })
    }
}

/// An order as stored. Its fields are private so that only [`Order::place`], the
/// transitions and [`Order::restore`] make one, and an order cannot be put into a
/// state the machine above does not allow; read it through the accessors named
/// after the fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    order_id: Uuid,
    request_id: Uuid,
    customer_id: ExternalId,
    booking: Booking,
    money: Money,
    /// Last four digits of the card the order was placed with; the only card data kept.
    card_last4: String,
    status: OrderStatus,
    /// The decided payment; set from PAID / PAYMENT_DECLINED on (and on CANCELLED or
    /// REJECTED when there was one).
    payment_id: Option<Uuid>,
    /// The `talentshare.payment.v1.DeclineReason` value name, kept opaque.
    decline_reason: Option<String>,
    /// True once the payment was refunded (cancellation or rejection).
    refunded: bool,
    /// Why the order ended (CANCELLED or REJECTED).
    reason: Option<String>,
    /// The customer's request to cancel, recorded on a PAID order before its refund
    /// was asked for; kept once the order has ended.
    cancel_request: Option<CancelRequest>,
    /// A payment approved for this order after it had ended without it, which must be
    /// refunded: recorded before the refund is asked for, cleared once it is done, so
    /// the money goes back even if this process stops in between.
    refund_due: Option<Uuid>,
    /// Starts at 1, +1 per change; the events' `aggregate_version`.
    version: i64,
    /// When the latest call to payment-svc's Pay for this order started. No Pay can
    /// be in flight once it is older than the Pay deadline, which is what lets an
    /// order whose payment never happened be given up safely (see [`Order::abandon`]).
    payment_attempted_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A customer's request to cancel a PAID order. It is stored before payment-svc is
/// asked for the refund, so a refund whose CANCELLED was never recorded (a crash, a
/// database error) is found and finished later, with this reason. Part of an
/// [`Order`], so only the order makes one (its reason clipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelRequest {
    requested_at: DateTime<Utc>,
    /// The customer's reason, clipped; the refund and the CANCELLED order carry it.
    reason: Option<String>,
}

impl CancelRequest {
    #[must_use]
    pub fn requested_at(&self) -> DateTime<Utc> {
        self.requested_at
    }

    /// The customer's reason, clipped; the refund and the CANCELLED order carry it.
    #[must_use]
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// An order's stored parts, for [`Order::restore`] only: the store parses its
/// columns into this and hands it over, and `restore` checks what ties the parts
/// together. Plain data with public fields, so it checks nothing itself; nothing
/// else should build one. The cancellation request comes as its two columns, since
/// whether they make a request is one of the rules `restore` checks.
#[derive(Clone, Debug)]
pub struct OrderRecord {
    pub order_id: Uuid,
    pub request_id: Uuid,
    pub customer_id: ExternalId,
    pub booking: Booking,
    pub money: Money,
    pub card_last4: String,
    pub status: OrderStatus,
    pub payment_id: Option<Uuid>,
    pub decline_reason: Option<String>,
    pub refunded: bool,
    pub reason: Option<String>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub refund_due: Option<Uuid>,
    pub version: i64,
    pub payment_attempted_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why stored parts do not make an order: they break a rule the transitions keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("decided without a payment_id")]
    DecidedWithoutPayment,
    #[error("cancel_reason without cancel_requested_at")]
    CancelReasonWithoutRequest,
}

/// What a change announces; the adapter turns it, with the order after the change,
/// into an outbox event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderEvent {
    Placed,
    Paid,
    PaymentDeclined,
    Cancelled,
    /// `reservation_id` is `None` when the rejection was learnt from the refunded
    /// payment (the anti-entropy pass), not from `reservation.rejected`.
    Rejected {
        reservation_id: Option<Uuid>,
    },
}

/// The result of an allowed request: the order after the change and the event that
/// announces it, or `None` when the order already is where the request leads (a
/// retry, a redelivery, or another replica that got there first).
pub type Change = Option<(Order, OrderEvent)>;

/// How fresh what order-svc knows of a payment is (see [`Order::owe_refund`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The answer to a call (Pay, Void) that may have been overtaken since it was sent.
    InAnswer,
    /// payment-svc's state as read now (GetPayment).
    Now,
}

/// How payment-svc decided an order's payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentOutcome {
    Approved {
        payment_id: Uuid,
    },
    Declined {
        payment_id: Uuid,
        reason: String,
    },
    /// Approved and since refunded.
    Refunded {
        payment_id: Uuid,
    },
    /// Closed before any charge: the order was given up (see [`Order::abandon`]), and
    /// no Pay for it will ever charge.
    Voided,
}

/// Why an order cannot be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlaceRefused {
    #[error("the session must start in the future")]
    SessionNotInFuture,
}

/// Why a request to change an order is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the order is {from}; it cannot become {to}")]
    Transition { from: OrderStatus, to: OrderStatus },
    #[error("a paid order is cancelled only once its payment is refunded")]
    NotRefunded,
    #[error("a paid order is cancelled only once its cancellation is recorded")]
    NotRequested,
}

impl Order {
    /// Rebuilds an order from its stored parts, checking the rules the transitions
    /// keep and later code relies on: a decided order (PAID, PAYMENT_DECLINED) has
    /// its payment, and a cancellation reason comes only with its request.
    ///
    /// # Errors
    ///
    /// [`Invalid`] names the rule the parts break; the store reports it as corrupt.
    pub fn restore(r: OrderRecord) -> Result<Order, Invalid> {
        if matches!(r.status, OrderStatus::Paid | OrderStatus::PaymentDeclined)
            && r.payment_id.is_none()
        {
            return Err(Invalid::DecidedWithoutPayment);
        }
        let cancel_request = match (r.cancel_requested_at, r.cancel_reason) {
            (Some(requested_at), reason) => Some(CancelRequest {
                requested_at,
                reason,
            }),
            (None, None) => None,
            (None, Some(_)) => return Err(Invalid::CancelReasonWithoutRequest),
        };
        Ok(Order {
            order_id: r.order_id,
            request_id: r.request_id,
            customer_id: r.customer_id,
            booking: r.booking,
            money: r.money,
            card_last4: r.card_last4,
            status: r.status,
            payment_id: r.payment_id,
            decline_reason: r.decline_reason,
            refunded: r.refunded,
            reason: r.reason,
            cancel_request,
            refund_due: r.refund_due,
            version: r.version,
            payment_attempted_at: r.payment_attempted_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    #[must_use]
    pub fn order_id(&self) -> Uuid {
        self.order_id
    }

    /// The client's idempotency key the order was placed with.
    #[must_use]
    pub fn request_id(&self) -> Uuid {
        self.request_id
    }

    #[must_use]
    pub fn customer_id(&self) -> &ExternalId {
        &self.customer_id
    }

    #[must_use]
    pub fn booking(&self) -> &Booking {
        &self.booking
    }

    #[must_use]
    pub fn money(&self) -> Money {
        self.money
    }

    /// Last four digits of the card the order was placed with.
    #[must_use]
    pub fn card_last4(&self) -> &str {
        &self.card_last4
    }

    #[must_use]
    pub fn status(&self) -> OrderStatus {
        self.status
    }

    /// The decided payment, from PAID / PAYMENT_DECLINED on.
    #[must_use]
    pub fn payment_id(&self) -> Option<Uuid> {
        self.payment_id
    }

    /// The `talentshare.payment.v1.DeclineReason` value name, kept opaque.
    #[must_use]
    pub fn decline_reason(&self) -> Option<&str> {
        self.decline_reason.as_deref()
    }

    /// Whether the payment was refunded (cancellation or rejection).
    #[must_use]
    pub fn refunded(&self) -> bool {
        self.refunded
    }

    /// Why the order ended (CANCELLED or REJECTED).
    #[must_use]
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The customer's request to cancel, once recorded.
    #[must_use]
    pub fn cancel_request(&self) -> Option<&CancelRequest> {
        self.cancel_request.as_ref()
    }

    /// A payment approved after the order ended, still to be refunded.
    #[must_use]
    pub fn refund_due(&self) -> Option<Uuid> {
        self.refund_due
    }

    /// Starts at 1, +1 per change; the events' `aggregate_version`.
    #[must_use]
    pub fn version(&self) -> i64 {
        self.version
    }

    /// When the latest call to payment-svc's Pay for this order started.
    #[must_use]
    pub fn payment_attempted_at(&self) -> DateTime<Utc> {
        self.payment_attempted_at
    }

    #[must_use]
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    #[must_use]
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }

    /// Places an order in PENDING_PAYMENT at version 1.
    pub fn place(
        new: &NewOrder,
        order_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(Order, OrderEvent), PlaceRefused> {
        if !session_is_bookable(new.booking.session_start, now) {
            return Err(PlaceRefused::SessionNotInFuture);
        }
        let order = Order {
            order_id,
            request_id: new.request_id,
            customer_id: new.customer_id.clone(),
            booking: new.booking.clone(),
            money: new.money,
            card_last4: new.card_last4.clone(),
            status: OrderStatus::PendingPayment,
            payment_id: None,
            decline_reason: None,
            refunded: false,
            reason: None,
            cancel_request: None,
            refund_due: None,
            version: 1,
            payment_attempted_at: now,
            created_at: now,
            updated_at: now,
        };
        Ok((order, OrderEvent::Placed))
    }

    /// Whether a repeated PlaceOrder asks for exactly this order. Only the last four
    /// card digits are kept, so a different card with the same last four counts as
    /// the same request (payment-svc compares cards the same way).
    pub fn matches(&self, new: &NewOrder) -> bool {
        self.request_id == new.request_id
            && self.customer_id == new.customer_id
            && self.booking == new.booking
            && self.money == new.money
            && self.card_last4 == new.card_last4
    }

    /// Records that a Pay call starts now. Only a PENDING_PAYMENT order is paid; any
    /// other has been decided already and is returned as `None`. Not a state change
    /// anyone else needs to hear of, so the version stays.
    pub fn attempt_payment(&self, now: DateTime<Utc>) -> Option<Order> {
        (self.status == OrderStatus::PendingPayment).then(|| Order {
            payment_attempted_at: now,
            ..self.clone()
        })
    }

    /// Whether the latest Pay attempt is at least `grace` old.
    pub fn payment_attempt_expired(&self, now: DateTime<Utc>, grace: TimeDelta) -> bool {
        now - self.payment_attempted_at >= grace
    }

    /// Applies payment-svc's decision to a PENDING_PAYMENT order. An order decided
    /// already is left alone: payment-svc decides once per order, so a second report
    /// of that decision can only repeat the first.
    pub fn settle(&self, outcome: &PaymentOutcome, now: DateTime<Utc>) -> Change {
        if self.status != OrderStatus::PendingPayment {
            return None;
        }
        let (status, event) = match outcome {
            // A Pay that met the void answers with it: the order was given up.
            PaymentOutcome::Voided => return self.abandon(Some(ABANDONED_REASON.to_owned()), now),
            PaymentOutcome::Approved { .. } => (OrderStatus::Paid, OrderEvent::Paid),
            PaymentOutcome::Declined { .. } => {
                (OrderStatus::PaymentDeclined, OrderEvent::PaymentDeclined)
            }
            PaymentOutcome::Refunded { .. } => (OrderStatus::Cancelled, OrderEvent::Cancelled),
        };
        let mut next = self.next(status, now).ok()?;
        match outcome {
            PaymentOutcome::Approved { payment_id } => next.payment_id = Some(*payment_id),
            PaymentOutcome::Declined { payment_id, reason } => {
                next.payment_id = Some(*payment_id);
                next.decline_reason = Some(reason.clone());
            }
            PaymentOutcome::Refunded { payment_id } => {
                next.payment_id = Some(*payment_id);
                next.refunded = true;
                next.reason = Some(REFUNDED_REASON.to_owned());
            }
            PaymentOutcome::Voided => {}
        }
        Some((next, event))
    }

    /// Records that `outcome` approved a payment this order must give back: the order
    /// has ended (CANCELLED, REJECTED or PAYMENT_DECLINED), and an ended order never
    /// keeps an approved payment (every way of ending refunds or voids first). Voids
    /// make this impossible for orders given up by this version; it covers whatever
    /// still slips through (an order given up by an older version, a payment the
    /// anti-entropy pass finds). `None` when nothing is owed, or it is already recorded.
    ///
    /// An answer to a Pay may be older than the order: the approval of the very
    /// payment the order was since cancelled and refunded with, arriving late. So
    /// [`Seen::InAnswer`] never makes the order's own payment owed; only payment-svc's
    /// current state ([`Seen::Now`]) can show that it was never refunded.
    pub fn owe_refund(&self, outcome: &PaymentOutcome, seen: Seen) -> Option<Order> {
        let PaymentOutcome::Approved { payment_id } = outcome else {
            return None;
        };
        let ended = matches!(
            self.status,
            OrderStatus::Cancelled | OrderStatus::Rejected | OrderStatus::PaymentDeclined
        );
        let stale = seen == Seen::InAnswer && self.payment_id == Some(*payment_id);
        (ended && !stale && self.refund_due != Some(*payment_id)).then(|| Order {
            refund_due: Some(*payment_id),
            ..self.clone()
        })
    }

    /// Clears the refund owed once payment-svc has refunded `payment_id`, and shows
    /// the order with that payment, refunded: a new version, announced again with its
    /// own status (`order.cancelled`, `order.rejected`), so that my page shows what
    /// happened to the customer's money. `None` when `payment_id` is not owed.
    pub fn refund_paid(&self, payment_id: Uuid, now: DateTime<Utc>) -> Change {
        if self.refund_due != Some(payment_id) {
            return None;
        }
        let next = Order {
            refund_due: None,
            payment_id: self.payment_id.or(Some(payment_id)),
            refunded: true,
            version: self.version + 1,
            updated_at: now,
            ..self.clone()
        };
        let event = match self.status {
            OrderStatus::Rejected => OrderEvent::Rejected {
                reservation_id: None,
            },
            OrderStatus::PaymentDeclined => OrderEvent::PaymentDeclined,
            // Only ended orders ever owe a refund.
            _ => OrderEvent::Cancelled,
        };
        Some((next, event))
    }

    /// Records that the customer asked to cancel a PAID order; its refund is asked
    /// for only after this is stored. Not a state change anyone else needs to hear of,
    /// so the version stays. `None` when there is nothing to record: the order is not
    /// PAID (the caller looks at its status), or its cancellation was requested
    /// already, in which case the first request (and its reason) stands.
    pub fn request_cancellation(
        &self,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Option<Order> {
        if self.status != OrderStatus::Paid || self.cancel_request.is_some() {
            return None;
        }
        Some(Order {
            cancel_request: Some(CancelRequest {
                requested_at: now,
                reason: clip_reason(reason),
            }),
            ..self.clone()
        })
    }

    /// Ends a PAID order whose cancellation was requested, now that `refunded_payment`
    /// is refunded: CANCELLED, refunded, with the request's reason. An order that has
    /// ended meanwhile is left as it is: CANCELLED by another replica, or REJECTED
    /// (reservation-svc refunded the same payment). A PAID order is never cancelled
    /// without its request recorded and its own payment refunded.
    pub fn finish_cancellation(
        &self,
        refunded_payment: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Change, Refused> {
        if self.status != OrderStatus::Paid {
            return Ok(None);
        }
        let request = self.cancel_request.as_ref().ok_or(Refused::NotRequested)?;
        if self.payment_id != Some(refunded_payment) {
            return Err(Refused::NotRefunded);
        }
        let mut next = self.next(OrderStatus::Cancelled, now)?;
        next.refunded = true;
        next.reason = request.reason.clone();
        Ok(Some((next, OrderEvent::Cancelled)))
    }

    /// Gives up a PENDING_PAYMENT order whose payment payment-svc has voided, so none
    /// can ever be charged for it (the void, not a clock, is what makes this safe);
    /// once the order has moved on, this changes nothing.
    pub fn abandon(&self, reason: Option<String>, now: DateTime<Utc>) -> Change {
        if self.status != OrderStatus::PendingPayment {
            return None;
        }
        let mut next = self.next(OrderStatus::Cancelled, now).ok()?;
        next.reason = clip_reason(reason);
        Some((next, OrderEvent::Cancelled))
    }

    /// The talent's manager rejected the booking, and reservation-svc refunded its
    /// payment. Idempotent, and a no-op once the order has ended another way
    /// (the customer's cancellation refunded the same payment). A cancellation
    /// requested but not yet finished does not stand in its way: the payment is
    /// refunded either way, and an order no longer PAID is nothing to finish.
    pub fn reject(
        &self,
        reservation_id: Option<Uuid>,
        payment_id: Option<Uuid>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Change, Refused> {
        if matches!(self.status, OrderStatus::Rejected | OrderStatus::Cancelled) {
            return Ok(None);
        }
        let mut next = self.next(OrderStatus::Rejected, now)?;
        next.refunded = true;
        next.payment_id = self.payment_id.or(payment_id);
        next.reason = clip_reason(Some(reason.to_owned()));
        Ok(Some((next, OrderEvent::Rejected { reservation_id })))
    }

    /// The order one allowed step later: new status, version + 1, `updated_at`.
    fn next(&self, to: OrderStatus, now: DateTime<Utc>) -> Result<Order, Refused> {
        if !self.status.can_become(to) {
            return Err(Refused::Transition {
                from: self.status,
                to,
            });
        }
        Ok(Order {
            status: to,
            version: self.version + 1,
            updated_at: now,
            ..self.clone()
        })
    }
}

/// An empty reason is no reason; a long one (from an event) is cut to
/// [`MAX_REASON_CHARS`] rather than refused, since the event has happened anyway.
fn clip_reason(reason: Option<String>) -> Option<String> {
    let reason = reason?;
    if reason.is_empty() {
        return None;
    }
    Some(reason.chars().take(MAX_REASON_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use values::{AmountMinor, Currency};

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn new_order() -> NewOrder {
        NewOrder {
            request_id: Uuid::now_v7(),
            customer_id: ExternalId::try_from("cust-1".to_owned()).unwrap(),
            booking: Booking {
                talent_id: ExternalId::try_from("talent-1".to_owned()).unwrap(),
                session_start: t0() + TimeDelta::days(7),
                session_minutes: 60,
            },
            money: Money {
                amount: AmountMinor::try_from(5_000).unwrap(),
                currency: Currency::Usd,
            },
            card_last4: "4242".into(),
        }
    }

    fn pending() -> Order {
        Order::place(&new_order(), Uuid::now_v7(), t0()).unwrap().0
    }

    fn later() -> DateTime<Utc> {
        t0() + TimeDelta::seconds(1)
    }

    fn approved() -> (Uuid, PaymentOutcome) {
        let payment_id = Uuid::now_v7();
        (payment_id, PaymentOutcome::Approved { payment_id })
    }

    fn paid() -> Order {
        pending().settle(&approved().1, later()).unwrap().0
    }

    fn in_status(status: OrderStatus) -> Order {
        Order {
            status,
            payment_id: Some(Uuid::now_v7()),
            ..pending()
        }
    }

    #[test]
    fn placing_creates_a_pending_order_at_version_1_announced_as_placed() {
        let new = new_order();
        let id = Uuid::now_v7();
        let (order, event) = Order::place(&new, id, t0()).unwrap();
        assert_eq!(order.order_id, id);
        assert_eq!(order.status, OrderStatus::PendingPayment);
        assert_eq!(order.version, 1);
        assert_eq!(order.payment_attempted_at, t0());
        assert_eq!((order.payment_id, order.refunded), (None, false));
        assert_eq!(event, OrderEvent::Placed);
    }

    #[test]
    fn a_session_that_does_not_start_in_the_future_cannot_be_booked() {
        let mut new = new_order();
        new.booking.session_start = t0();
        assert_eq!(
            Order::place(&new, Uuid::now_v7(), t0()),
            Err(PlaceRefused::SessionNotInFuture)
        );
        assert!(session_is_bookable(t0() + TimeDelta::microseconds(1), t0()));
    }

    #[test]
    fn a_repeat_matches_only_with_the_same_terms() {
        let new = new_order();
        let (order, _) = Order::place(&new, Uuid::now_v7(), t0()).unwrap();
        assert!(order.matches(&new));
        let changes: [fn(&mut NewOrder); 5] = [
            |n| n.customer_id = ExternalId::try_from("cust-2".to_owned()).unwrap(),
            |n| n.booking.session_minutes = 90,
            |n| n.booking.session_start += TimeDelta::minutes(1),
            |n| n.money.currency = Currency::Eur,
            |n| n.card_last4 = "4444".into(),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut other = new.clone();
            change(&mut other);
            assert!(!order.matches(&other), "change {i}");
        }
    }

    #[test]
    fn the_transition_table_allows_exactly_the_documented_moves() {
        use OrderStatus::*;
        let allowed = [
            (PendingPayment, Paid),
            (PendingPayment, PaymentDeclined),
            (PendingPayment, Cancelled),
            (PendingPayment, Rejected),
            (Paid, Cancelled),
            (Paid, Rejected),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
        let finals: Vec<_> = OrderStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(finals, vec![PaymentDeclined, Cancelled, Rejected]);
    }

    #[test]
    fn an_approved_payment_makes_a_pending_order_paid() {
        let (payment_id, outcome) = approved();
        let (order, event) = pending().settle(&outcome, later()).unwrap();
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(order.payment_id, Some(payment_id));
        assert_eq!(order.version, 2);
        assert_eq!(order.updated_at, later());
        assert_eq!(event, OrderEvent::Paid);
    }

    #[test]
    fn a_declined_payment_makes_a_pending_order_payment_declined_with_its_reason() {
        let payment_id = Uuid::now_v7();
        let outcome = PaymentOutcome::Declined {
            payment_id,
            reason: "DECLINE_REASON_CARD_DECLINED".into(),
        };
        let (order, event) = pending().settle(&outcome, later()).unwrap();
        assert_eq!(order.status, OrderStatus::PaymentDeclined);
        assert_eq!(order.payment_id, Some(payment_id));
        assert_eq!(
            order.decline_reason.as_deref(),
            Some("DECLINE_REASON_CARD_DECLINED")
        );
        assert_eq!(event, OrderEvent::PaymentDeclined);
    }

    #[test]
    fn a_refunded_payment_makes_a_pending_order_cancelled_and_refunded() {
        let payment_id = Uuid::now_v7();
        let (order, event) = pending()
            .settle(&PaymentOutcome::Refunded { payment_id }, later())
            .unwrap();
        assert_eq!(order.status, OrderStatus::Cancelled);
        assert!(order.refunded);
        assert_eq!(order.reason.as_deref(), Some(REFUNDED_REASON));
        assert_eq!(event, OrderEvent::Cancelled);
    }

    #[test]
    fn settling_an_order_that_is_no_longer_pending_changes_nothing() {
        for status in OrderStatus::ALL {
            if status != OrderStatus::PendingPayment {
                assert_eq!(in_status(status).settle(&approved().1, later()), None);
            }
        }
    }

    #[test]
    fn a_payment_attempt_restamps_only_a_pending_order_and_keeps_its_version() {
        let order = pending();
        let stamped = order.attempt_payment(later()).unwrap();
        assert_eq!(stamped.payment_attempted_at, later());
        assert_eq!(stamped.version, order.version);
        assert_eq!(paid().attempt_payment(later()), None);
    }

    /// A PAID order with the customer's cancellation recorded at `later()`.
    fn cancel_requested(reason: &str) -> Order {
        paid()
            .request_cancellation(Some(reason.into()), later())
            .unwrap()
    }

    #[test]
    fn requesting_cancellation_records_it_on_a_paid_order_without_a_new_version() {
        let order = paid();
        let requested = order
            .request_cancellation(Some("changed my mind".into()), later())
            .unwrap();
        assert_eq!(
            requested.cancel_request,
            Some(CancelRequest {
                requested_at: later(),
                reason: Some("changed my mind".into())
            })
        );
        assert_eq!(requested.status, OrderStatus::Paid);
        assert_eq!(requested.version, order.version);
    }

    #[test]
    fn a_second_cancellation_request_keeps_the_first() {
        let requested = cancel_requested("first");
        assert_eq!(
            requested.request_cancellation(Some("second".into()), later()),
            None
        );
    }

    #[test]
    fn only_a_paid_order_records_a_cancellation_request() {
        for status in OrderStatus::ALL {
            if status != OrderStatus::Paid {
                assert_eq!(
                    in_status(status).request_cancellation(None, later()),
                    None,
                    "{status:?}"
                );
            }
        }
    }

    #[test]
    fn finishing_a_requested_cancellation_ends_the_order_cancelled_refunded_with_its_reason() {
        let order = cancel_requested("changed my mind");
        let payment_id = order.payment_id.unwrap();
        let (cancelled, event) = order
            .finish_cancellation(payment_id, later())
            .unwrap()
            .unwrap();
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert!(cancelled.refunded);
        assert_eq!(cancelled.payment_id, Some(payment_id));
        assert_eq!(cancelled.reason.as_deref(), Some("changed my mind"));
        assert_eq!(cancelled.version, 3);
        assert_eq!(event, OrderEvent::Cancelled);
    }

    #[test]
    fn a_paid_order_is_cancelled_only_with_its_request_recorded_and_its_own_payment_refunded() {
        let order = paid();
        let payment_id = order.payment_id.unwrap();
        assert_eq!(
            order.finish_cancellation(payment_id, later()),
            Err(Refused::NotRequested)
        );
        assert_eq!(
            cancel_requested("x").finish_cancellation(Uuid::now_v7(), later()),
            Err(Refused::NotRefunded)
        );
    }

    #[test]
    fn finishing_a_cancellation_of_an_order_that_has_ended_changes_nothing() {
        let order = cancel_requested("first");
        let payment_id = order.payment_id.unwrap();
        let (cancelled, _) = order
            .finish_cancellation(payment_id, later())
            .unwrap()
            .unwrap();
        assert_eq!(cancelled.finish_cancellation(payment_id, later()), Ok(None));
        let (rejected, _) = order
            .reject(Some(Uuid::now_v7()), None, "talent unavailable", later())
            .unwrap()
            .unwrap();
        assert_eq!(rejected.finish_cancellation(payment_id, later()), Ok(None));
    }

    #[test]
    fn a_rejection_ends_an_order_whose_cancellation_is_pending_rejected() {
        let (rejected, event) = cancel_requested("changed my mind")
            .reject(Some(Uuid::now_v7()), None, "talent unavailable", later())
            .unwrap()
            .unwrap();
        assert_eq!(rejected.status, OrderStatus::Rejected);
        assert!(rejected.refunded);
        assert_eq!(rejected.reason.as_deref(), Some("talent unavailable"));
        assert!(matches!(event, OrderEvent::Rejected { .. }));
    }

    #[test]
    fn a_pending_order_is_judged_abandonable_only_once_its_payment_attempt_is_older_than_the_grace()
    {
        let grace = TimeDelta::seconds(30);
        let order = pending();
        assert!(!order.payment_attempt_expired(t0() + TimeDelta::seconds(29), grace));
        let at = t0() + grace;
        assert!(order.payment_attempt_expired(at, grace));
        let restamped = order.attempt_payment(at).unwrap();
        assert!(
            !restamped.payment_attempt_expired(at, grace),
            "a fresh attempt"
        );
    }

    #[test]
    fn a_voided_order_is_abandoned_cancelled_without_a_payment_once() {
        let order = pending();
        let (abandoned, event) = order
            .abandon(Some("changed my mind".into()), later())
            .unwrap();
        assert_eq!(abandoned.status, OrderStatus::Cancelled);
        assert_eq!((abandoned.payment_id, abandoned.refunded), (None, false));
        assert_eq!(abandoned.reason.as_deref(), Some("changed my mind"));
        assert_eq!(event, OrderEvent::Cancelled);
        assert_eq!(
            abandoned.abandon(None, later()),
            None,
            "not pending any more"
        );
        assert_eq!(paid().abandon(None, later()), None, "not pending");
    }

    #[test]
    fn a_pay_answered_with_the_void_ends_the_order_given_up() {
        let (settled, event) = pending().settle(&PaymentOutcome::Voided, later()).unwrap();
        assert_eq!(settled.status, OrderStatus::Cancelled);
        assert_eq!(settled.reason.as_deref(), Some(ABANDONED_REASON));
        assert_eq!(settled.payment_id, None);
        assert_eq!(event, OrderEvent::Cancelled);
    }

    #[test]
    fn an_approval_meeting_an_order_that_ended_without_it_is_owed_back_until_paid() {
        let (abandoned, _) = pending().abandon(None, later()).unwrap();
        let (payment_id, approved) = approved();
        assert_eq!(
            abandoned.settle(&approved, later()),
            None,
            "no resurrection"
        );
        let owing = abandoned.owe_refund(&approved, Seen::InAnswer).unwrap();
        assert_eq!(owing.refund_due, Some(payment_id));
        assert_eq!(owing.version, abandoned.version, "no new version, no event");
        assert_eq!(
            owing.owe_refund(&approved, Seen::Now),
            None,
            "recorded once"
        );
        assert_eq!(
            owing.refund_paid(Uuid::now_v7(), later()),
            None,
            "only its own refund clears it"
        );
        let (repaid, event) = owing.refund_paid(payment_id, later()).unwrap();
        assert_eq!(repaid.refund_due, None);
        assert_eq!(
            (repaid.payment_id, repaid.refunded),
            (Some(payment_id), true)
        );
        assert_eq!(repaid.status, OrderStatus::Cancelled);
        assert_eq!(repaid.version, owing.version + 1, "shown, so announced");
        assert_eq!(event, OrderEvent::Cancelled);

        let paid_with_it = paid();
        let own = PaymentOutcome::Approved {
            payment_id: paid_with_it.payment_id.unwrap(),
        };
        assert_eq!(
            paid_with_it.owe_refund(&own, Seen::Now),
            None,
            "its own payment"
        );
        assert_eq!(
            pending().owe_refund(&approved, Seen::Now),
            None,
            "still to be settled"
        );
        let declined = PaymentOutcome::Declined {
            payment_id,
            reason: "DECLINE_REASON_CARD_DECLINED".into(),
        };
        assert_eq!(
            abandoned.owe_refund(&declined, Seen::Now),
            None,
            "nothing charged"
        );

        // The late approval of the payment a cancelled order was refunded with: an old
        // answer, not money kept. Seen now, the same approval would be.
        let requested = paid_with_it
            .request_cancellation(Some("changed my mind".into()), later())
            .unwrap();
        let (cancelled, _) = requested
            .finish_cancellation(paid_with_it.payment_id.unwrap(), later())
            .unwrap()
            .unwrap();
        assert_eq!(
            cancelled.owe_refund(&own, Seen::InAnswer),
            None,
            "a stale answer"
        );
        assert!(
            cancelled.owe_refund(&own, Seen::Now).is_some(),
            "never refunded"
        );
    }

    #[test]
    fn a_rejection_ends_a_paid_order_refunded_and_announces_the_reservation() {
        let order = paid();
        let reservation_id = Uuid::now_v7();
        let (rejected, event) = order
            .reject(
                Some(reservation_id),
                order.payment_id,
                "talent unavailable",
                later(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(rejected.status, OrderStatus::Rejected);
        assert!(rejected.refunded);
        assert_eq!(rejected.reason.as_deref(), Some("talent unavailable"));
        assert_eq!(rejected.version, 3);
        assert_eq!(
            event,
            OrderEvent::Rejected {
                reservation_id: Some(reservation_id)
            }
        );
    }

    #[test]
    fn a_rejection_that_overtakes_the_payment_approval_ends_a_pending_order() {
        let payment_id = Uuid::now_v7();
        let (rejected, _) = pending()
            .reject(Some(Uuid::now_v7()), Some(payment_id), "no", later())
            .unwrap()
            .unwrap();
        assert_eq!(rejected.status, OrderStatus::Rejected);
        assert_eq!(rejected.payment_id, Some(payment_id));
    }

    #[test]
    fn a_rejection_of_an_ended_order_changes_nothing_or_is_refused() {
        for status in [OrderStatus::Rejected, OrderStatus::Cancelled] {
            assert_eq!(
                in_status(status).reject(Some(Uuid::now_v7()), None, "x", later()),
                Ok(None),
                "{status:?}"
            );
        }
        assert!(matches!(
            in_status(OrderStatus::PaymentDeclined).reject(
                Some(Uuid::now_v7()),
                None,
                "x",
                later()
            ),
            Err(Refused::Transition { .. })
        ));
    }

    #[test]
    fn reasons_are_clipped_and_an_empty_one_is_none() {
        let long = "r".repeat(MAX_REASON_CHARS + 50);
        let (rejected, _) = paid()
            .reject(Some(Uuid::now_v7()), None, &long, later())
            .unwrap()
            .unwrap();
        assert_eq!(
            rejected.reason.map(|r| r.chars().count()),
            Some(MAX_REASON_CHARS)
        );
        let requested = paid().request_cancellation(Some(String::new()), later());
        assert_eq!(requested.unwrap().cancel_request.unwrap().reason, None);
    }

    fn record_of(o: &Order) -> OrderRecord {
        let o = o.clone();
        OrderRecord {
            order_id: o.order_id,
            request_id: o.request_id,
            customer_id: o.customer_id,
            booking: o.booking,
            money: o.money,
            card_last4: o.card_last4,
            status: o.status,
            payment_id: o.payment_id,
            decline_reason: o.decline_reason,
            refunded: o.refunded,
            reason: o.reason,
            cancel_requested_at: o.cancel_request.as_ref().map(|r| r.requested_at),
            cancel_reason: o.cancel_request.and_then(|r| r.reason),
            refund_due: o.refund_due,
            version: o.version,
            payment_attempted_at: o.payment_attempted_at,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }

    #[test]
    fn restoring_what_the_transitions_made_gives_the_same_order() {
        let requested = paid()
            .request_cancellation(Some("changed my mind".into()), later())
            .unwrap();
        for order in [pending(), paid(), requested] {
            assert_eq!(
                Order::restore(record_of(&order)),
                Ok(order.clone()),
                "{order:?}"
            );
        }
    }

    #[test]
    fn a_decided_order_is_not_restored_without_its_payment() {
        for status in [OrderStatus::Paid, OrderStatus::PaymentDeclined] {
            let record = OrderRecord {
                payment_id: None,
                ..record_of(&in_status(status))
            };
            assert_eq!(
                Order::restore(record),
                Err(Invalid::DecidedWithoutPayment),
                "{status}"
            );
        }
    }

    #[test]
    fn a_cancel_reason_is_not_restored_without_its_request() {
        let record = OrderRecord {
            cancel_reason: Some("why".into()),
            ..record_of(&paid())
        };
        assert_eq!(
            Order::restore(record),
            Err(Invalid::CancelReasonWithoutRequest)
        );
    }
}
