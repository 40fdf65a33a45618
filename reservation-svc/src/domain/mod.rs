//! The reservation domain: what a booking is, how the two upstream events (an
//! order's payment approved, the order cancelled) create or change it, and how a
//! manager confirms or rejects it. Pure: no I/O, no clocks (callers pass `now`), no
//! ids from thin air (callers pass them), so every rule is unit-tested here.
//!
//! States: REQUESTED leads to CONFIRMED, REJECTED or CANCELLED; CONFIRMED can still
//! become CANCELLED; REJECTED and CANCELLED are final.
//!
//! There is one reservation per order, whatever order the upstream events arrive in.
//! `payment.approved` and `order.cancelled` come from different services, so a
//! cancellation can overtake the approval it follows. It then leaves a *tombstone*:
//! the order's reservation, CANCELLED from the start, holding what the cancellation
//! knows. The approval arriving later finds it and only fills in the booking
//! details, so both delivery orders end in the same reservation ([`apply`]).

use std::fmt;
use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use platform::values::ExternalId;
use uuid::Uuid;

/// Longest accepted reason (rejection or cancellation), in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// Shortest and longest bookable session, in minutes.
pub const SESSION_MINUTES: RangeInclusive<i32> = 15..=480;

/// The talent session an order books, as the payment approval carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Booking {
    pub talent_id: ExternalId,
    pub session_start: DateTime<Utc>,
    pub session_minutes: i32,
}

/// Reservation states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationStatus {
    Requested,
    Confirmed,
    Rejected,
    Cancelled,
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReservationStatus::Requested => "requested",
            ReservationStatus::Confirmed => "confirmed",
            ReservationStatus::Rejected => "rejected",
            ReservationStatus::Cancelled => "cancelled",
        })
    }
}

/// A reservation as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub reservation_id: Uuid,
    /// Unique: one reservation per order.
    pub order_id: Uuid,
    pub customer_id: ExternalId,
    /// `None` only for a tombstone whose approval has not arrived (yet, or ever).
    pub booking: Option<Booking>,
    /// The approved payment; `None` only for such a tombstone when the cancellation
    /// did not name a payment either.
    pub payment_id: Option<Uuid>,
    pub status: ReservationStatus,
    /// The manager who confirmed or rejected it.
    pub manager_id: Option<ExternalId>,
    /// The manager's reason when REJECTED, the customer's when CANCELLED.
    pub reason: Option<String>,
    /// Starts at 1, +1 per announced change; the events' `aggregate_version`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a `payment.approved` event tells about an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    pub order_id: Uuid,
    pub customer_id: ExternalId,
    pub payment_id: Uuid,
    pub booking: Booking,
}

/// What an `order.cancelled` event tells about an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancellation {
    pub order_id: Uuid,
    pub customer_id: ExternalId,
    /// Empty when the order never got a payment.
    pub payment_id: Option<Uuid>,
    /// The customer's reason; `None` when they gave none.
    pub reason: Option<String>,
}

/// An upstream event the reservation side reacts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderEvent {
    Approved(Approval),
    Cancelled(Cancellation),
}

impl OrderEvent {
    /// The order the event belongs to: the key of its reservation.
    pub fn order_id(&self) -> Uuid {
        match self {
            OrderEvent::Approved(a) => a.order_id,
            OrderEvent::Cancelled(c) => c.order_id,
        }
    }
}

/// What a state change announces. The adapter turns it into an outbox event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReservationEvent {
    Requested {
        reservation: Reservation,
        payment_id: Uuid,
        booking: Booking,
    },
    Confirmed {
        reservation: Reservation,
        manager_id: ExternalId,
    },
    Rejected {
        reservation: Reservation,
        manager_id: ExternalId,
        reason: RejectReason,
    },
    Cancelled {
        reservation: Reservation,
    },
}

/// How an upstream event changes the order's reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per consumed event and consumed at once; boxing buys nothing"
)]
pub enum Change {
    /// The order has no reservation yet: insert this one and its event.
    Create(Reservation, ReservationEvent),
    /// Store the reservation's new state, and the event when the change is announced.
    Update(Reservation, Option<ReservationEvent>),
    /// Nothing to do (a repeat, or an event that no longer applies).
    Unchanged,
}

/// Applies an upstream event to the order's reservation, `current` (or none yet).
/// `new_id` names the reservation if this event creates it.
///
/// - approval, no reservation: a REQUESTED reservation (`reservation.requested`);
/// - cancellation, no reservation: a CANCELLED tombstone (`reservation.cancelled`);
/// - approval, tombstone without booking: the booking is filled in; it stays
///   CANCELLED, unannounced, and keeps its version;
/// - approval, anything else: unchanged (one reservation per order);
/// - cancellation, REQUESTED or CONFIRMED: CANCELLED (`reservation.cancelled`);
/// - cancellation, REJECTED or CANCELLED: unchanged.
pub fn apply(
    current: Option<&Reservation>,
    event: &OrderEvent,
    new_id: Uuid,
    now: DateTime<Utc>,
) -> Change {
    match (current, event) {
        (None, OrderEvent::Approved(a)) => {
            let (r, e) = Reservation::request(a, new_id, now);
            Change::Create(r, e)
        }
        (None, OrderEvent::Cancelled(c)) => {
            let (r, e) = Reservation::tombstone(c, new_id, now);
            Change::Create(r, e)
        }
        (Some(r), OrderEvent::Approved(a)) => match r.booking {
            None => Change::Update(r.completed_by(a), None),
            Some(_) => Change::Unchanged,
        },
        (Some(r), OrderEvent::Cancelled(c)) => match r.cancel(c, now) {
            Some((cancelled, event)) => Change::Update(cancelled, Some(event)),
            None => Change::Unchanged,
        },
    }
}

impl Reservation {
    /// A new REQUESTED reservation for an approved payment.
    pub fn request(
        approval: &Approval,
        reservation_id: Uuid,
        now: DateTime<Utc>,
    ) -> (Reservation, ReservationEvent) {
        let reservation = Reservation {
            reservation_id,
            order_id: approval.order_id,
            customer_id: approval.customer_id.clone(),
            booking: Some(approval.booking.clone()),
            payment_id: Some(approval.payment_id),
            status: ReservationStatus::Requested,
            manager_id: None,
            reason: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let event = ReservationEvent::Requested {
            reservation: reservation.clone(),
            payment_id: approval.payment_id,
            booking: approval.booking.clone(),
        };
        (reservation, event)
    }

    /// A reservation born CANCELLED, for a cancellation that overtook its approval.
    pub fn tombstone(
        cancellation: &Cancellation,
        reservation_id: Uuid,
        now: DateTime<Utc>,
    ) -> (Reservation, ReservationEvent) {
        let reservation = Reservation {
            reservation_id,
            order_id: cancellation.order_id,
            customer_id: cancellation.customer_id.clone(),
            booking: None,
            payment_id: cancellation.payment_id,
            status: ReservationStatus::Cancelled,
            manager_id: None,
            reason: cancellation.reason.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let event = ReservationEvent::Cancelled {
            reservation: reservation.clone(),
        };
        (reservation, event)
    }

    /// The tombstone with the late approval's booking filled in. Not a change of
    /// state (no event announces it), so neither the version nor the update time moves.
    fn completed_by(&self, approval: &Approval) -> Reservation {
        Reservation {
            booking: Some(approval.booking.clone()),
            payment_id: self.payment_id.or(Some(approval.payment_id)),
            ..self.clone()
        }
    }

    /// Cancels a REQUESTED or CONFIRMED reservation; `None` when it is already final.
    fn cancel(
        &self,
        cancellation: &Cancellation,
        now: DateTime<Utc>,
    ) -> Option<(Reservation, ReservationEvent)> {
        match self.status {
            ReservationStatus::Rejected | ReservationStatus::Cancelled => None,
            ReservationStatus::Requested | ReservationStatus::Confirmed => {
                let cancelled = Reservation {
                    status: ReservationStatus::Cancelled,
                    reason: cancellation.reason.clone(),
                    version: self.version + 1,
                    updated_at: now,
                    ..self.clone()
                };
                let event = ReservationEvent::Cancelled {
                    reservation: cancelled.clone(),
                };
                Some((cancelled, event))
            }
        }
    }

    /// Confirms a REQUESTED reservation (the caller has checked its payment with
    /// [`require_approved`]). A CONFIRMED one is returned as it is, keeping the
    /// manager who confirmed it first.
    pub fn confirm(
        &self,
        manager_id: &ExternalId,
        now: DateTime<Utc>,
    ) -> Result<Transition, Refused> {
        match self.status {
            ReservationStatus::Confirmed => Ok(Transition::AlreadyDone),
            ReservationStatus::Rejected | ReservationStatus::Cancelled => Err(Refused {
                status: self.status,
                action: "confirmed",
            }),
            ReservationStatus::Requested => {
                let confirmed = Reservation {
                    status: ReservationStatus::Confirmed,
                    manager_id: Some(manager_id.clone()),
                    version: self.version + 1,
                    updated_at: now,
                    ..self.clone()
                };
                let event = ReservationEvent::Confirmed {
                    reservation: confirmed.clone(),
                    manager_id: manager_id.clone(),
                };
                Ok(Transition::Changed(confirmed, event))
            }
        }
    }

    /// Rejects a REQUESTED reservation (the caller has refunded its payment). A
    /// REJECTED one is returned as it is, keeping the first manager and reason.
    pub fn reject(
        &self,
        manager_id: &ExternalId,
        reason: &RejectReason,
        now: DateTime<Utc>,
    ) -> Result<Transition, Refused> {
        match self.status {
            ReservationStatus::Rejected => Ok(Transition::AlreadyDone),
            ReservationStatus::Confirmed | ReservationStatus::Cancelled => Err(Refused {
                status: self.status,
                action: "rejected",
            }),
            ReservationStatus::Requested => {
                let rejected = Reservation {
                    status: ReservationStatus::Rejected,
                    manager_id: Some(manager_id.clone()),
                    reason: Some(reason.as_ref().to_owned()),
                    version: self.version + 1,
                    updated_at: now,
                    ..self.clone()
                };
                let event = ReservationEvent::Rejected {
                    reservation: rejected.clone(),
                    manager_id: manager_id.clone(),
                    reason: reason.clone(),
                };
                Ok(Transition::Changed(rejected, event))
            }
        }
    }
}

/// The result of a manager's action that is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per call and consumed at once; boxing buys nothing"
)]
pub enum Transition {
    /// The reservation changed; store it and its event.
    Changed(Reservation, ReservationEvent),
    /// The same action was taken before: nothing to do.
    AlreadyDone,
}

/// A manager's action the reservation's state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the reservation is {status}, so it cannot be {action}")]
pub struct Refused {
    pub status: ReservationStatus,
    pub action: &'static str,
}

/// Where the order's payment stands, as PaymentService reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentState {
    Approved,
    Declined,
    Refunded,
}

/// A reservation is confirmed only while its payment is still approved (a refund
/// means the customer cancelled, or another manager rejected it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the reservation's payment is {0:?}, not approved")]
pub struct PaymentNotApproved(pub PaymentState);

/// Checks that a payment allows confirming its reservation.
pub fn require_approved(payment: PaymentState) -> Result<(), PaymentNotApproved> {
    match payment {
        PaymentState::Approved => Ok(()),
        other => Err(PaymentNotApproved(other)),
    }
}

/// A manager's reason for rejecting: 1 to [`MAX_REASON_CHARS`] characters, not only
/// whitespace. It is shown to the customer and used as the refund reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectReason(String);

/// Why a rejection reason was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReasonError {
    #[error("is required")]
    Empty,
    #[error("must not be only whitespace")]
    Blank,
    #[error("must be at most {MAX_REASON_CHARS} characters")]
    TooLong,
}

impl TryFrom<String> for RejectReason {
    type Error = ReasonError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.is_empty() {
            return Err(ReasonError::Empty);
        }
        if s.chars().count() > MAX_REASON_CHARS {
            return Err(ReasonError::TooLong);
        }
        if s.trim().is_empty() {
            return Err(ReasonError::Blank);
        }
        Ok(Self(s))
    }
}

impl AsRef<str> for RejectReason {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(s: &str) -> ExternalId {
        ExternalId::try_from(s.to_owned()).unwrap()
    }

    fn approval(order_id: Uuid) -> Approval {
        Approval {
            order_id,
            customer_id: id("cust-1"),
            payment_id: Uuid::from_u128(7),
            booking: Booking {
                talent_id: id("talent-1"),
                session_start: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
                session_minutes: 60,
            },
        }
    }

    fn cancellation(order_id: Uuid) -> Cancellation {
        Cancellation {
            order_id,
            customer_id: id("cust-1"),
            payment_id: Some(Uuid::from_u128(7)),
            reason: Some("changed my mind".into()),
        }
    }

    fn requested() -> Reservation {
        Reservation::request(&approval(Uuid::now_v7()), Uuid::now_v7(), Utc::now()).0
    }

    fn in_status(status: ReservationStatus) -> Reservation {
        Reservation {
            status,
            ..requested()
        }
    }

    fn reason(s: &str) -> RejectReason {
        RejectReason::try_from(s.to_owned()).unwrap()
    }

    #[test]
    fn an_approval_creates_a_requested_reservation_announced_at_version_1() {
        let a = approval(Uuid::now_v7());
        let Change::Create(r, e) = apply(
            None,
            &OrderEvent::Approved(a.clone()),
            Uuid::now_v7(),
            Utc::now(),
        ) else {
            panic!("expected a new reservation");
        };
        assert_eq!(r.status, ReservationStatus::Requested);
        assert_eq!((r.order_id, r.payment_id), (a.order_id, Some(a.payment_id)));
        assert_eq!(r.booking, Some(a.booking.clone()));
        assert_eq!(r.version, 1);
        assert_eq!(
            e,
            ReservationEvent::Requested {
                reservation: r,
                payment_id: a.payment_id,
                booking: a.booking
            }
        );
    }

    #[test]
    fn a_cancellation_before_any_approval_leaves_an_announced_cancelled_tombstone() {
        let c = cancellation(Uuid::now_v7());
        let Change::Create(r, e) = apply(
            None,
            &OrderEvent::Cancelled(c.clone()),
            Uuid::now_v7(),
            Utc::now(),
        ) else {
            panic!("expected a tombstone");
        };
        assert_eq!(r.status, ReservationStatus::Cancelled);
        assert_eq!(r.booking, None);
        assert_eq!(r.payment_id, c.payment_id);
        assert_eq!(r.reason, c.reason);
        assert_eq!(r.version, 1);
        assert_eq!(e, ReservationEvent::Cancelled { reservation: r });
    }

    #[test]
    fn a_late_approval_fills_in_the_tombstone_silently_and_it_stays_cancelled() {
        let order = Uuid::now_v7();
        let mut c = cancellation(order);
        c.payment_id = None;
        let (tomb, _) = Reservation::tombstone(&c, Uuid::now_v7(), Utc::now());
        let a = approval(order);

        let change = apply(
            Some(&tomb),
            &OrderEvent::Approved(a.clone()),
            Uuid::now_v7(),
            Utc::now(),
        );

        let Change::Update(r, None) = change else {
            panic!("expected a silent update, got {change:?}");
        };
        assert_eq!(r.status, ReservationStatus::Cancelled);
        assert_eq!(r.booking, Some(a.booking));
        assert_eq!(r.payment_id, Some(a.payment_id));
        assert_eq!((r.version, r.updated_at), (tomb.version, tomb.updated_at));
        assert_eq!(r.reservation_id, tomb.reservation_id);
    }

    #[test]
    fn a_repeated_approval_changes_nothing() {
        let r = requested();
        let again = approval(r.order_id);
        assert_eq!(
            apply(
                Some(&r),
                &OrderEvent::Approved(again),
                Uuid::now_v7(),
                Utc::now()
            ),
            Change::Unchanged
        );
    }

    #[test]
    fn a_cancellation_cancels_a_requested_or_confirmed_reservation() {
        for status in [ReservationStatus::Requested, ReservationStatus::Confirmed] {
            let mut r = in_status(status);
            r.manager_id = Some(id("mgr-1"));
            let c = cancellation(r.order_id);
            let Change::Update(cancelled, Some(e)) = apply(
                Some(&r),
                &OrderEvent::Cancelled(c.clone()),
                Uuid::now_v7(),
                Utc::now(),
            ) else {
                panic!("{status}: expected an announced cancellation");
            };
            assert_eq!(cancelled.status, ReservationStatus::Cancelled, "{status}");
            assert_eq!(cancelled.reason, c.reason, "{status}");
            assert_eq!(cancelled.version, r.version + 1, "{status}");
            assert_eq!(cancelled.manager_id, r.manager_id, "{status}");
            assert_eq!(
                e,
                ReservationEvent::Cancelled {
                    reservation: cancelled
                },
                "{status}"
            );
        }
    }

    #[test]
    fn a_cancellation_leaves_a_rejected_or_cancelled_reservation_as_it_is() {
        for status in [ReservationStatus::Rejected, ReservationStatus::Cancelled] {
            let r = in_status(status);
            let c = OrderEvent::Cancelled(cancellation(r.order_id));
            assert_eq!(
                apply(Some(&r), &c, Uuid::now_v7(), Utc::now()),
                Change::Unchanged,
                "{status}"
            );
        }
    }

    #[test]
    fn confirm_moves_requested_to_confirmed_once_and_keeps_the_first_manager() {
        let r = requested();
        let Ok(Transition::Changed(confirmed, e)) = r.confirm(&id("mgr-1"), Utc::now()) else {
            panic!("expected a confirmation");
        };
        assert_eq!(confirmed.status, ReservationStatus::Confirmed);
        assert_eq!(confirmed.manager_id, Some(id("mgr-1")));
        assert_eq!(confirmed.version, 2);
        assert!(
            matches!(e, ReservationEvent::Confirmed { ref manager_id, .. } if *manager_id == id("mgr-1"))
        );
        assert_eq!(
            confirmed.confirm(&id("mgr-2"), Utc::now()),
            Ok(Transition::AlreadyDone)
        );
    }

    #[test]
    fn confirm_is_refused_for_a_rejected_or_cancelled_reservation() {
        for status in [ReservationStatus::Rejected, ReservationStatus::Cancelled] {
            assert_eq!(
                in_status(status).confirm(&id("mgr-1"), Utc::now()),
                Err(Refused {
                    status,
                    action: "confirmed"
                }),
                "{status}"
            );
        }
    }

    #[test]
    fn reject_moves_requested_to_rejected_once_with_the_reason() {
        let r = requested();
        let Ok(Transition::Changed(rejected, e)) =
            r.reject(&id("mgr-1"), &reason("double booked"), Utc::now())
        else {
            panic!("expected a rejection");
        };
        assert_eq!(rejected.status, ReservationStatus::Rejected);
        assert_eq!(rejected.reason.as_deref(), Some("double booked"));
        assert_eq!(rejected.manager_id, Some(id("mgr-1")));
        assert_eq!(rejected.version, 2);
        assert!(
            matches!(e, ReservationEvent::Rejected { ref reason, .. } if reason.as_ref() == "double booked")
        );
        assert_eq!(
            rejected.reject(&id("mgr-2"), &reason("other"), Utc::now()),
            Ok(Transition::AlreadyDone)
        );
    }

    #[test]
    fn reject_is_refused_for_a_confirmed_or_cancelled_reservation() {
        for status in [ReservationStatus::Confirmed, ReservationStatus::Cancelled] {
            assert_eq!(
                in_status(status).reject(&id("mgr-1"), &reason("no"), Utc::now()),
                Err(Refused {
                    status,
                    action: "rejected"
                }),
                "{status}"
            );
        }
    }

    #[test]
    fn only_an_approved_payment_allows_confirming() {
        assert_eq!(require_approved(PaymentState::Approved), Ok(()));
        for state in [PaymentState::Declined, PaymentState::Refunded] {
            assert_eq!(require_approved(state), Err(PaymentNotApproved(state)));
        }
    }

    #[test]
    fn reject_reason_rules() {
        assert_eq!(
            RejectReason::try_from(String::new()),
            Err(ReasonError::Empty)
        );
        assert_eq!(
            RejectReason::try_from(" \t\n".to_owned()),
            Err(ReasonError::Blank)
        );
        assert_eq!(
            RejectReason::try_from("é".repeat(201)),
            Err(ReasonError::TooLong)
        );
        assert_eq!(reason(&"é".repeat(200)).as_ref().chars().count(), 200);
    }

    /// What must not depend on delivery order: everything but ids, times and versions.
    fn essence(r: &Reservation) -> impl PartialEq + fmt::Debug {
        (
            r.order_id,
            r.customer_id.clone(),
            r.booking.clone(),
            r.payment_id,
            r.status,
            r.reason.clone(),
        )
    }

    proptest! {
        /// Approval and cancellation of one order, each delivered one to three times,
        /// in any interleaving: exactly one reservation, always ending in the same state.
        #[test]
        fn any_delivery_order_and_duplication_ends_in_the_same_reservation(
            approvals in 1..=3usize,
            cancellations in 0..=3usize,
            seed in any::<u64>(),
        ) {
            let order = Uuid::now_v7();
            let mut deliveries: Vec<OrderEvent> = std::iter::repeat_n(OrderEvent::Approved(approval(order)), approvals)
                .chain(std::iter::repeat_n(OrderEvent::Cancelled(cancellation(order)), cancellations))
                .collect();
            // A deterministic shuffle from the seed, so failures shrink and replay.
            let mut state = seed;
            for i in (1..deliveries.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                deliveries.swap(i, (state >> 33) as usize % (i + 1));
            }

            let mut current: Option<Reservation> = None;
            let mut created = 0;
            let mut announced_versions = Vec::new();
            for event in &deliveries {
                match apply(current.as_ref(), event, Uuid::now_v7(), Utc::now()) {
                    Change::Create(r, e) => {
                        prop_assert!(current.is_none());
                        created += 1;
                        announced_versions.push(version_of(&e));
                        current = Some(r);
                    }
                    Change::Update(r, e) => {
                        let before = current.as_ref().map(|c| c.reservation_id);
                        prop_assert_eq!(before, Some(r.reservation_id));
                        announced_versions.extend(e.as_ref().map(version_of));
                        current = Some(r);
                    }
                    Change::Unchanged => {}
                }
            }

            // The reference: one approval, then (if any) one cancellation.
            let mut expected = None;
            let mut reference = vec![OrderEvent::Approved(approval(order))];
            if cancellations > 0 {
                reference.push(OrderEvent::Cancelled(cancellation(order)));
            }
            for event in &reference {
                match apply(expected.as_ref(), event, Uuid::now_v7(), Utc::now()) {
                    Change::Create(r, _) | Change::Update(r, _) => expected = Some(r),
                    Change::Unchanged => {}
                }
            }

            prop_assert_eq!(created, 1);
            let (got, want) = (current.unwrap(), expected.unwrap());
            prop_assert_eq!(essence(&got), essence(&want));
            // Announced versions count up from 1 without gaps.
            let wanted_versions: Vec<i64> = (1..=announced_versions.len() as i64).collect();
            prop_assert_eq!(announced_versions, wanted_versions);
        }
    }

    fn version_of(e: &ReservationEvent) -> i64 {
        match e {
            ReservationEvent::Requested { reservation, .. }
            | ReservationEvent::Confirmed { reservation, .. }
            | ReservationEvent::Rejected { reservation, .. }
            | ReservationEvent::Cancelled { reservation } => reservation.version,
        }
    }
}
