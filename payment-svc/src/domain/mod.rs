//! The payment domain: what a charge request is, how it is decided, and how a payment
//! moves between states. Pure: no I/O, no clocks (callers pass `now`), no ids from
//! thin air (callers pass them), so every rule is unit-tested here.
//!
//! States: a charge is decided once, APPROVED or DECLINED; an APPROVED payment may be
//! REFUNDED once. Refunding again is a no-op; refunding a DECLINED payment is refused.
//! An order given up before any charge is VOIDED: a terminal payment with no card, so
//! that a Pay arriving after order-svc gave up finds it and charges nothing.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use values::{CardNumber, ExternalId, Money};

/// Amounts above this many minor units are declined with `LimitExceeded`.
pub const SINGLE_CHARGE_LIMIT_MINOR: i64 = 100_000_000;

/// Longest free-text reason, shared by every service.
pub use values::MAX_REASON_CHARS;

// The booking a payment pays for rides along into `PaymentApproved`, so that
// reservation-svc can create the booking from that one event.
pub use values::{Booking, SESSION_MINUTES};

/// A validated request to close an order's payment before any charge.
#[derive(Clone, Debug)]
pub struct VoidRequest {
    /// The idempotency key, shared with [`ChargeRequest::order_id`].
    pub order_id: Uuid,
    pub customer_id: ExternalId,
    pub money: Money,
    pub reason: Option<String>,
}

/// A validated request to charge a card for an order.
#[derive(Clone, Debug)]
pub struct ChargeRequest {
    /// The idempotency key: one payment per order, ever.
    pub order_id: Uuid,
    pub customer_id: ExternalId,
    pub money: Money,
    pub card: CardNumber,
    pub booking: Booking,
}

/// Payment states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Approved,
    Declined,
    Refunded,
    /// Closed before any charge; no card, nothing to refund.
    Voided,
}

/// Why a charge was declined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclineReason {
    CardDeclined,
    InsufficientFunds,
    ExpiredCard,
    LimitExceeded,
}

/// The outcome of deciding a charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Decline(DeclineReason),
}

/// Decides a charge. Deterministic, so tests and demos can choose the outcome:
///
/// | card number        | outcome                          |
/// |--------------------|----------------------------------|
/// | `4000000000000002` | declined, `CardDeclined`         |
/// | `4000000000009995` | declined, `InsufficientFunds`    |
/// | `4000000000000069` | declined, `ExpiredCard`          |
/// | any other valid    | approved, unless the amount is over [`SINGLE_CHARGE_LIMIT_MINOR`] (`LimitExceeded`) |
pub fn decide(card: &CardNumber, money: &Money) -> Decision {
    match card.digits() {
        "4000000000000002" => Decision::Decline(DeclineReason::CardDeclined),
        "4000000000009995" => Decision::Decline(DeclineReason::InsufficientFunds),
        "4000000000000069" => Decision::Decline(DeclineReason::ExpiredCard),
        _ if money.amount.get() > SINGLE_CHARGE_LIMIT_MINOR => {
            Decision::Decline(DeclineReason::LimitExceeded)
        }
        _ => Decision::Approve,
    }
}

/// A payment as stored. Its fields are private so that only [`Payment::charge`],
/// [`Payment::void`], [`Payment::refund`] and [`Payment::restore`] make one; read it
/// through the accessors named after the fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    payment_id: Uuid,
    order_id: Uuid,
    customer_id: ExternalId,
    money: Money,
    status: PaymentStatus,
    decline_reason: Option<DeclineReason>,
    /// Empty for a voided payment: it never saw a card.
    card_last4: String,
    /// What the charge pays for, as the first Pay gave it; `None` for a void (and
    /// for payments stored before bookings were kept).
    booking: Option<Booking>,
    refund_reason: Option<String>,
    void_reason: Option<String>,
    /// Starts at 1, +1 per change; the events' `aggregate_version`.
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A payment's stored parts, for [`Payment::restore`] only: the store parses its
/// columns into this and hands it over. Plain data with public fields, so it checks
/// nothing itself; nothing else should build one.
#[derive(Clone, Debug)]
pub struct PaymentRecord {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: ExternalId,
    pub money: Money,
    pub status: PaymentStatus,
    pub decline_reason: Option<DeclineReason>,
    pub card_last4: String,
    pub booking: Option<Booking>,
    pub refund_reason: Option<String>,
    pub void_reason: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a state change announces. The adapter turns it into an outbox event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentEvent {
    Approved { payment: Payment, booking: Booking },
    Declined { payment: Payment },
    Refunded { payment: Payment },
}

impl Payment {
    /// Rebuilds a payment from its stored parts. Infallible: every part is already a
    /// parsed domain value, and a payment has no rule across its parts that the
    /// store checked before fields became private (the one it does check, a booking
    /// stored in part, is about columns and stays in the store).
    #[must_use]
    pub fn restore(r: PaymentRecord) -> Payment {
        Payment {
            payment_id: r.payment_id,
            order_id: r.order_id,
            customer_id: r.customer_id,
            money: r.money,
            status: r.status,
            decline_reason: r.decline_reason,
            card_last4: r.card_last4,
            booking: r.booking,
            refund_reason: r.refund_reason,
            void_reason: r.void_reason,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }

    #[must_use]
    pub fn payment_id(&self) -> Uuid {
        self.payment_id
    }

    /// The idempotency key: one payment per order.
    #[must_use]
    pub fn order_id(&self) -> Uuid {
        self.order_id
    }

    #[must_use]
    pub fn customer_id(&self) -> &ExternalId {
        &self.customer_id
    }

    #[must_use]
    pub fn money(&self) -> Money {
        self.money
    }

    #[must_use]
    pub fn status(&self) -> PaymentStatus {
        self.status
    }

    #[must_use]
    pub fn decline_reason(&self) -> Option<DeclineReason> {
        self.decline_reason
    }

    /// Empty for a voided payment: it never saw a card.
    #[must_use]
    pub fn card_last4(&self) -> &str {
        &self.card_last4
    }

    /// `None` for a void, and for payments stored before bookings were kept.
    #[must_use]
    pub fn booking(&self) -> Option<&Booking> {
        self.booking.as_ref()
    }

    #[must_use]
    pub fn refund_reason(&self) -> Option<&str> {
        self.refund_reason.as_deref()
    }

    #[must_use]
    pub fn void_reason(&self) -> Option<&str> {
        self.void_reason.as_deref()
    }

    /// Starts at 1, +1 per change; the events' `aggregate_version`.
    #[must_use]
    pub fn version(&self) -> i64 {
        self.version
    }

    #[must_use]
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    #[must_use]
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }

    /// Charges: decides and builds the new payment with the event announcing it.
    pub fn charge(
        req: &ChargeRequest,
        payment_id: Uuid,
        now: DateTime<Utc>,
    ) -> (Payment, PaymentEvent) {
        let decision = decide(&req.card, &req.money);
        let (status, decline_reason) = match decision {
            Decision::Approve => (PaymentStatus::Approved, None),
            Decision::Decline(r) => (PaymentStatus::Declined, Some(r)),
        };
        let payment = Payment {
            payment_id,
            order_id: req.order_id,
            customer_id: req.customer_id.clone(),
            money: req.money,
            status,
            decline_reason,
            card_last4: req.card.last4().to_owned(),
            booking: Some(req.booking.clone()),
            refund_reason: None,
            void_reason: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let event = match decision {
            Decision::Approve => PaymentEvent::Approved {
                payment: payment.clone(),
                booking: req.booking.clone(),
            },
            Decision::Decline(_) => PaymentEvent::Declined {
                payment: payment.clone(),
            },
        };
        (payment, event)
    }

    /// Closes an order's payment before any charge: the terminal row a later Pay
    /// finds instead of charging. No event: no money moved.
    pub fn void(req: &VoidRequest, payment_id: Uuid, now: DateTime<Utc>) -> Payment {
        Payment {
            payment_id,
            order_id: req.order_id,
            customer_id: req.customer_id.clone(),
            money: req.money,
            status: PaymentStatus::Voided,
            decline_reason: None,
            card_last4: String::new(),
            booking: None,
            refund_reason: None,
            void_reason: req.reason.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether a repeated charge request for the same order asks for the same thing.
    /// Only the last four card digits are kept, so a different card with the same
    /// last four counts as the same request. A voided payment never saw a card, so
    /// against it the customer and the money decide.
    pub fn matches(&self, req: &ChargeRequest) -> bool {
        self.order_id == req.order_id
            && self.customer_id == req.customer_id
            && self.money == req.money
            && (self.status == PaymentStatus::Voided || self.card_last4 == req.card.last4())
    }

    /// Whether a void request is about this payment's order, customer and money; a
    /// payment made first answers any void for its order whatever it says, since the
    /// void then changes nothing.
    pub fn matches_void(&self, req: &VoidRequest) -> bool {
        self.status != PaymentStatus::Voided
            || (self.order_id == req.order_id
                && self.customer_id == req.customer_id
                && self.money == req.money)
    }

    /// Refunds an approved payment.
    pub fn refund(
        &self,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Refund, RefundRefused> {
        match self.status {
            PaymentStatus::Refunded => Ok(Refund::AlreadyRefunded),
            status @ (PaymentStatus::Declined | PaymentStatus::Voided) => {
                Err(RefundRefused::NotCharged(status))
            }
            PaymentStatus::Approved => {
                let refunded = Payment {
                    status: PaymentStatus::Refunded,
                    refund_reason: reason,
                    version: self.version + 1,
                    updated_at: now,
                    ..self.clone()
                };
                let event = PaymentEvent::Refunded {
                    payment: refunded.clone(),
                };
                Ok(Refund::Refunded(refunded, event))
            }
        }
    }
}

/// The result of a refund that is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per Refund call and consumed at once; boxing buys nothing"
)]
pub enum Refund {
    /// The payment changed; store it and its event.
    Refunded(Payment, PaymentEvent),
    /// It was refunded before: nothing to do.
    AlreadyRefunded,
}

/// Why a refund is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefundRefused {
    /// The payment is in the status named (DECLINED or VOIDED).
    #[error("payment was declined or voided; nothing was charged, so there is nothing to refund")]
    NotCharged(PaymentStatus),
}

#[cfg(test)]
mod tests {
    use super::*;
    use values::{AmountMinor, Currency};

    fn request(card: &str, amount: i64) -> ChargeRequest {
        ChargeRequest {
            order_id: Uuid::now_v7(),
            customer_id: ExternalId::try_from("cust-1".to_owned()).unwrap(),
            money: Money {
                amount: AmountMinor::try_from(amount).unwrap(),
                currency: Currency::Usd,
            },
            card: CardNumber::try_from(card).unwrap(),
            booking: Booking {
                talent_id: ExternalId::try_from("talent-1".to_owned()).unwrap(),
                session_start: Utc::now(),
                session_minutes: 60,
            },
        }
    }

    #[test]
    fn an_ordinary_card_is_approved() {
        let req = request("4242424242424242", 5_000);
        let (p, e) = Payment::charge(&req, Uuid::now_v7(), Utc::now());
        assert_eq!(p.status, PaymentStatus::Approved);
        assert_eq!(p.card_last4, "4242");
        assert_eq!(p.version, 1);
        assert!(matches!(e, PaymentEvent::Approved { ref booking, .. } if booking == &req.booking));
    }

    #[test]
    fn each_test_card_declines_with_its_reason() {
        for (card, reason) in [
            ("4000000000000002", DeclineReason::CardDeclined),
            ("4000000000009995", DeclineReason::InsufficientFunds),
            ("4000000000000069", DeclineReason::ExpiredCard),
        ] {
            let (p, e) = Payment::charge(&request(card, 100), Uuid::now_v7(), Utc::now());
            assert_eq!(p.status, PaymentStatus::Declined, "{card}");
            assert_eq!(p.decline_reason, Some(reason), "{card}");
            assert!(matches!(e, PaymentEvent::Declined { .. }), "{card}");
        }
    }

    #[test]
    fn an_amount_over_the_limit_is_declined() {
        let at = request("4242424242424242", SINGLE_CHARGE_LIMIT_MINOR);
        assert_eq!(decide(&at.card, &at.money), Decision::Approve);
        let over = request("4242424242424242", SINGLE_CHARGE_LIMIT_MINOR + 1);
        assert_eq!(
            decide(&over.card, &over.money),
            Decision::Decline(DeclineReason::LimitExceeded)
        );
    }

    #[test]
    fn refund_moves_approved_to_refunded_once() {
        let (p, _) = Payment::charge(
            &request("4242424242424242", 100),
            Uuid::now_v7(),
            Utc::now(),
        );
        let Ok(Refund::Refunded(r, e)) = p.refund(Some("customer cancelled".into()), Utc::now())
        else {
            panic!("expected a refund");
        };
        assert_eq!(r.status, PaymentStatus::Refunded);
        assert_eq!(r.version, 2);
        assert!(matches!(e, PaymentEvent::Refunded { .. }));
        assert_eq!(r.refund(None, Utc::now()), Ok(Refund::AlreadyRefunded));
    }

    #[test]
    fn a_declined_payment_cannot_be_refunded() {
        let (p, _) = Payment::charge(
            &request("4000000000000002", 100),
            Uuid::now_v7(),
            Utc::now(),
        );
        assert_eq!(
            p.refund(None, Utc::now()),
            Err(RefundRefused::NotCharged(PaymentStatus::Declined))
        );
    }

    fn void_of(req: &ChargeRequest) -> VoidRequest {
        VoidRequest {
            order_id: req.order_id,
            customer_id: req.customer_id.clone(),
            money: req.money,
            reason: Some("payment not completed".into()),
        }
    }

    #[test]
    fn a_void_is_a_terminal_payment_without_a_card_that_cannot_be_refunded() {
        let req = request("4242424242424242", 100);
        let void = Payment::void(&void_of(&req), Uuid::now_v7(), Utc::now());
        assert_eq!(void.status, PaymentStatus::Voided);
        assert_eq!(void.card_last4, "");
        assert_eq!(void.void_reason.as_deref(), Some("payment not completed"));
        assert_eq!(
            void.refund(None, Utc::now()),
            Err(RefundRefused::NotCharged(PaymentStatus::Voided))
        );
    }

    #[test]
    fn a_pay_meeting_a_void_matches_by_customer_and_money_whatever_the_card() {
        let req = request("4242424242424242", 100);
        let void = Payment::void(&void_of(&req), Uuid::now_v7(), Utc::now());
        assert!(void.matches(&req));
        let mut other_card = req.clone();
        other_card.card = CardNumber::try_from("5555555555554444").unwrap();
        assert!(void.matches(&other_card));
        let mut other_amount = req.clone();
        other_amount.money.amount = AmountMinor::try_from(101).unwrap();
        assert!(!void.matches(&other_amount));
        assert!(void.matches_void(&void_of(&req)));
        assert!(!void.matches_void(&void_of(&other_amount)));
        let (paid, _) = Payment::charge(&req, Uuid::now_v7(), Utc::now());
        assert!(
            paid.matches_void(&void_of(&other_amount)),
            "a payment answers any void"
        );
    }

    #[test]
    fn a_repeat_matches_only_with_the_same_terms() {
        let req = request("4242424242424242", 100);
        let (p, _) = Payment::charge(&req, Uuid::now_v7(), Utc::now());
        assert!(p.matches(&req));
        let mut other = req.clone();
        other.money.amount = AmountMinor::try_from(101).unwrap();
        assert!(!p.matches(&other));
        let mut other = req.clone();
        other.card = CardNumber::try_from("5555555555554444").unwrap();
        assert!(!p.matches(&other));
    }
}
