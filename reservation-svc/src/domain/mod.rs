//! The reservation domain: what a booking is, how the two upstream events (an
//! order's payment approved, the order cancelled) create or change it, and how a
//! manager confirms or rejects it. Pure: no I/O, no clocks (callers pass `now`), no
//! ids from thin air (callers pass them), so every rule is unit-tested here.
//!
//! States: REQUESTED leads to CONFIRMED, REJECTED or CANCELLED; CONFIRMED can still
//! become CANCELLED; REJECTED and CANCELLED are final.
//!
//! A rejection has to refund the payment before it may announce `reservation.rejected`,
//! and the refund is a call to another service that can fail, time out or be cut
//! short by a crash. So it is taken in three steps: the manager's rejection is first
//! recorded on the REQUESTED reservation as a [`PendingRejection`] (a durable claim,
//! announced to no one), then the payment is refunded, then the reservation becomes
//! REJECTED. While the claim stands the reservation cannot be confirmed, and whoever
//! finds it (a repeated reject, the reconciler) finishes it with the recorded manager
//! and reason. A cancellation of the order still wins over the claim: the order's
//! payment is refunded by order-svc either way, and the reservation ends CANCELLED
//! with its one `reservation.cancelled`.
//!
//! There is one reservation per order, whatever order the upstream events arrive in.
//! `payment.approved` and `order.cancelled` come from different services, so a
//! cancellation can overtake the approval it follows. It then leaves a *tombstone*:
//! the order's reservation, CANCELLED from the start, holding what the cancellation
//! knows. The approval arriving later finds it and only fills in the booking
//! details, so both delivery orders end in the same reservation ([`apply`]).

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use values::ExternalId;

/// Longest free-text reason, shared by every service.
pub use values::MAX_REASON_CHARS;

// The booking travels in `payment.approved`: one type across the services.
pub use values::{Booking, SESSION_MINUTES};

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

/// A reservation as stored. Its fields are private so that only the constructors
/// ([`Reservation::request`], [`Reservation::tombstone`]), the transitions and
/// [`Reservation::restore`] make one; read it through the accessors named after the
/// fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    reservation_id: Uuid,
    /// Unique: one reservation per order.
    order_id: Uuid,
    customer_id: ExternalId,
    /// `None` only for a tombstone whose approval has not arrived (yet, or ever).
    booking: Option<Booking>,
    /// The approved payment; `None` only for such a tombstone when the cancellation
    /// did not name a payment either.
    payment_id: Option<Uuid>,
    status: ReservationStatus,
    /// The manager who confirmed or rejected it.
    manager_id: Option<ExternalId>,
    /// The manager's reason when REJECTED, the customer's when CANCELLED.
    reason: Option<String>,
    /// A rejection recorded but not finished (refund not yet confirmed); only ever on
    /// a REQUESTED reservation. Not a change of state: no event, no new version.
    rejecting: Option<PendingRejection>,
    /// Starts at 1, +1 per announced change; the events' `aggregate_version`.
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A manager's rejection recorded before its refund, so that it survives a failed
/// call or a crash and is finished with exactly this manager and reason. State of a
/// [`Reservation`], so only the reservation makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRejection {
    manager_id: ExternalId,
    reason: RejectReason,
    /// When it was recorded: the reconciler finishes claims older than its grace.
    requested_at: DateTime<Utc>,
}

impl PendingRejection {
    /// The manager who rejected first; the rejection is finished in their name.
    #[must_use]
    pub fn manager_id(&self) -> &ExternalId {
        &self.manager_id
    }

    #[must_use]
    pub fn reason(&self) -> &RejectReason {
        &self.reason
    }

    /// When it was recorded: the reconciler finishes claims older than its grace.
    #[must_use]
    pub fn requested_at(&self) -> DateTime<Utc> {
        self.requested_at
    }
}

/// A reservation's stored parts, for [`Reservation::restore`] only: the store parses
/// its columns into this and hands it over, and `restore` checks what ties the parts
/// together. Plain data with public fields, so it checks nothing itself; nothing
/// else should build one. The pending rejection comes as its three columns, since
/// whether they make one is among the rules `restore` checks.
#[derive(Clone, Debug)]
pub struct ReservationRecord {
    pub reservation_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: ExternalId,
    pub booking: Option<Booking>,
    pub payment_id: Option<Uuid>,
    pub status: ReservationStatus,
    pub manager_id: Option<ExternalId>,
    pub reason: Option<String>,
    pub reject_requested_at: Option<DateTime<Utc>>,
    pub reject_manager_id: Option<ExternalId>,
    pub reject_reason: Option<RejectReason>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why stored parts do not make a reservation: they break a rule the constructors
/// and transitions keep. The messages are the ones the store has always reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The session length is outside [`SESSION_MINUTES`].
    #[error("booking columns")]
    SessionMinutes,
    #[error("booking or payment missing outside a tombstone")]
    MissingOutsideTombstone,
    /// Only part of a pending rejection, or one on a reservation not REQUESTED.
    #[error("pending rejection columns")]
    Rejecting,
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
    /// Rebuilds a reservation from its stored parts, checking the rules the
    /// constructors and transitions keep and later code relies on: a booking lasts
    /// [`SESSION_MINUTES`], only a CANCELLED tombstone may lack its booking or
    /// payment, and a pending rejection is whole and only on a REQUESTED reservation.
    ///
    /// # Errors
    ///
    /// [`Invalid`] names the rule the parts break; the store reports it as corrupt.
    pub fn restore(r: ReservationRecord) -> Result<Reservation, Invalid> {
        if let Some(b) = &r.booking
            && !SESSION_MINUTES.contains(&b.session_minutes)
        {
            return Err(Invalid::SessionMinutes);
        }
        if r.status != ReservationStatus::Cancelled
            && (r.booking.is_none() || r.payment_id.is_none())
        {
            return Err(Invalid::MissingOutsideTombstone);
        }
        let rejecting = match (r.reject_requested_at, r.reject_manager_id, r.reject_reason) {
            (None, None, None) => None,
            (Some(requested_at), Some(manager_id), Some(reason))
                if r.status == ReservationStatus::Requested =>
            {
                Some(PendingRejection {
                    manager_id,
                    reason,
                    requested_at,
                })
            }
            _ => return Err(Invalid::Rejecting),
        };
        Ok(Reservation {
            reservation_id: r.reservation_id,
            order_id: r.order_id,
            customer_id: r.customer_id,
            booking: r.booking,
            payment_id: r.payment_id,
            status: r.status,
            manager_id: r.manager_id,
            reason: r.reason,
            rejecting,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    #[must_use]
    pub fn reservation_id(&self) -> Uuid {
        self.reservation_id
    }

    /// Unique: one reservation per order.
    #[must_use]
    pub fn order_id(&self) -> Uuid {
        self.order_id
    }

    #[must_use]
    pub fn customer_id(&self) -> &ExternalId {
        &self.customer_id
    }

    /// `None` only for a tombstone whose approval has not arrived (yet, or ever).
    #[must_use]
    pub fn booking(&self) -> Option<&Booking> {
        self.booking.as_ref()
    }

    /// The approved payment; `None` only for a tombstone that never learnt it.
    #[must_use]
    pub fn payment_id(&self) -> Option<Uuid> {
        self.payment_id
    }

    #[must_use]
    pub fn status(&self) -> ReservationStatus {
        self.status
    }

    /// The manager who confirmed or rejected it.
    #[must_use]
    pub fn manager_id(&self) -> Option<&ExternalId> {
        self.manager_id.as_ref()
    }

    /// The manager's reason when REJECTED, the customer's when CANCELLED.
    #[must_use]
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// A rejection recorded but not finished; only ever on a REQUESTED reservation.
    #[must_use]
    pub fn rejecting(&self) -> Option<&PendingRejection> {
        self.rejecting.as_ref()
    }

    /// Starts at 1, +1 per announced change; the events' `aggregate_version`.
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
            rejecting: None,
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
            rejecting: None,
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
    /// A pending rejection is dropped: the order's cancellation refunded the payment
    /// (order-svc refunds before it announces), so the one refund has happened and
    /// the one terminal event is `reservation.cancelled`; the rejection's own refund,
    /// if it also ran, was the same idempotent refund.
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
                    rejecting: None,
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
    /// manager who confirmed it first. One with a pending rejection is refused: its
    /// refund may already have happened.
    pub fn confirm(
        &self,
        manager_id: &ExternalId,
        now: DateTime<Utc>,
    ) -> Result<Transition, Refused> {
        match self.status {
            ReservationStatus::Confirmed => Ok(Transition::AlreadyDone),
            ReservationStatus::Rejected | ReservationStatus::Cancelled => Err(Refused::InState {
                status: self.status,
                action: "confirmed",
            }),
            ReservationStatus::Requested if self.rejecting.is_some() => Err(Refused::BeingRejected),
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

    /// Records a manager's rejection of a REQUESTED reservation before its refund
    /// (see the module doc). Nothing is announced and the version stays: the claim
    /// only blocks confirmation until [`Reservation::reject`] finishes it.
    pub fn claim_rejection(
        &self,
        manager_id: &ExternalId,
        reason: &RejectReason,
        now: DateTime<Utc>,
    ) -> Result<Claim, Refused> {
        match self.status {
            ReservationStatus::Rejected => Ok(Claim::AlreadyRejected),
            ReservationStatus::Confirmed | ReservationStatus::Cancelled => Err(Refused::InState {
                status: self.status,
                action: "rejected",
            }),
            ReservationStatus::Requested => match &self.rejecting {
                Some(pending) => Ok(Claim::Pending(pending.clone())),
                None => {
                    let pending = PendingRejection {
                        manager_id: manager_id.clone(),
                        reason: reason.clone(),
                        requested_at: now,
                    };
                    let claimed = Reservation {
                        rejecting: Some(pending.clone()),
                        ..self.clone()
                    };
                    Ok(Claim::Recorded(claimed, pending))
                }
            },
        }
    }

    /// Rejects a REQUESTED reservation (the caller has refunded its payment). A
    /// pending rejection's manager and reason win over the ones given: they are what
    /// was refunded first. A REJECTED one is returned as it is, keeping the first
    /// manager and reason.
    pub fn reject(
        &self,
        manager_id: &ExternalId,
        reason: &RejectReason,
        now: DateTime<Utc>,
    ) -> Result<Transition, Refused> {
        match self.status {
            ReservationStatus::Rejected => Ok(Transition::AlreadyDone),
            ReservationStatus::Confirmed | ReservationStatus::Cancelled => Err(Refused::InState {
                status: self.status,
                action: "rejected",
            }),
            ReservationStatus::Requested => {
                let (manager_id, reason) = match &self.rejecting {
                    Some(p) => (&p.manager_id, &p.reason),
                    None => (manager_id, reason),
                };
                let rejected = Reservation {
                    status: ReservationStatus::Rejected,
                    manager_id: Some(manager_id.clone()),
                    reason: Some(reason.as_ref().to_owned()),
                    rejecting: None,
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

    /// Drops the pending rejection recorded at `requested_at`, once payment-svc has
    /// refused its refund for good (the payment is unknown or cannot be refunded), so
    /// nothing was refunded and the reservation is simply REQUESTED again. `None`
    /// when that claim is no longer there (finished, cancelled, or another claim).
    pub fn release_rejection(&self, requested_at: DateTime<Utc>) -> Option<Reservation> {
        match &self.rejecting {
            Some(p)
                if self.status == ReservationStatus::Requested
                    && p.requested_at == requested_at =>
            {
                Some(Reservation {
                    rejecting: None,
                    ..self.clone()
                })
            }
            _ => None,
        }
    }
}

/// What recording a rejection found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per call and consumed at once; boxing buys nothing"
)]
pub enum Claim {
    /// The claim is new: store this reservation (no event), then refund.
    Recorded(Reservation, PendingRejection),
    /// A rejection is already pending (perhaps another manager's): refund and finish
    /// it as recorded.
    Pending(PendingRejection),
    /// The reservation is already REJECTED: nothing to do.
    AlreadyRejected,
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
pub enum Refused {
    #[error("the reservation is {status}, so it cannot be {action}")]
    InState {
        status: ReservationStatus,
        action: &'static str,
    },
    #[error("the reservation is being rejected, so it cannot be confirmed")]
    BeingRejected,
}

/// Where the order's payment stands, as PaymentService reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentState {
    Approved,
    Declined,
    Refunded,
    /// Closed before any charge (its order was given up); never met by a booking in
    /// practice, since bookings come from approved payments.
    Voided,
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
                Err(Refused::InState {
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
                Err(Refused::InState {
                    status,
                    action: "rejected"
                }),
                "{status}"
            );
        }
    }

    /// A REQUESTED reservation with mgr-1's rejection recorded.
    fn being_rejected() -> Reservation {
        let Ok(Claim::Recorded(r, _)) =
            requested().claim_rejection(&id("mgr-1"), &reason("double booked"), Utc::now())
        else {
            panic!("expected a new claim");
        };
        r
    }

    #[test]
    fn claiming_a_rejection_records_it_silently_without_a_new_version() {
        let r = requested();
        let at = Utc::now();
        let Ok(Claim::Recorded(claimed, pending)) =
            r.claim_rejection(&id("mgr-1"), &reason("double booked"), at)
        else {
            panic!("expected a new claim");
        };
        assert_eq!(claimed.status, ReservationStatus::Requested);
        assert_eq!(
            pending,
            PendingRejection {
                manager_id: id("mgr-1"),
                reason: reason("double booked"),
                requested_at: at,
            }
        );
        assert_eq!(claimed.rejecting, Some(pending));
        assert_eq!(
            (claimed.version, claimed.updated_at),
            (r.version, r.updated_at)
        );
        assert_eq!((claimed.manager_id, claimed.reason), (None, None));
    }

    #[test]
    fn claiming_again_continues_the_first_claim() {
        let r = being_rejected();
        assert_eq!(
            r.claim_rejection(&id("mgr-2"), &reason("other"), Utc::now()),
            Ok(Claim::Pending(r.rejecting.clone().unwrap()))
        );
    }

    #[test]
    fn claiming_is_refused_for_a_confirmed_or_cancelled_reservation_and_done_when_rejected() {
        for status in [ReservationStatus::Confirmed, ReservationStatus::Cancelled] {
            assert_eq!(
                in_status(status).claim_rejection(&id("mgr-1"), &reason("no"), Utc::now()),
                Err(Refused::InState {
                    status,
                    action: "rejected"
                }),
                "{status}"
            );
        }
        assert_eq!(
            in_status(ReservationStatus::Rejected).claim_rejection(
                &id("mgr-1"),
                &reason("no"),
                Utc::now()
            ),
            Ok(Claim::AlreadyRejected)
        );
    }

    #[test]
    fn confirm_is_refused_while_a_rejection_is_pending() {
        assert_eq!(
            being_rejected().confirm(&id("mgr-2"), Utc::now()),
            Err(Refused::BeingRejected)
        );
    }

    #[test]
    fn reject_finishes_a_pending_rejection_with_its_recorded_manager_and_reason() {
        let r = being_rejected();
        let Ok(Transition::Changed(rejected, e)) =
            r.reject(&id("mgr-2"), &reason("other"), Utc::now())
        else {
            panic!("expected a rejection");
        };
        assert_eq!(rejected.status, ReservationStatus::Rejected);
        assert_eq!(rejected.manager_id, Some(id("mgr-1")));
        assert_eq!(rejected.reason.as_deref(), Some("double booked"));
        assert_eq!(rejected.rejecting, None);
        assert_eq!(rejected.version, r.version + 1);
        assert!(matches!(
            e,
            ReservationEvent::Rejected { ref manager_id, ref reason, .. }
                if *manager_id == id("mgr-1") && reason.as_ref() == "double booked"
        ));
    }

    #[test]
    fn a_cancellation_cancels_a_reservation_being_rejected_and_drops_the_claim() {
        let r = being_rejected();
        let Change::Update(cancelled, Some(ReservationEvent::Cancelled { .. })) = apply(
            Some(&r),
            &OrderEvent::Cancelled(cancellation(r.order_id)),
            Uuid::now_v7(),
            Utc::now(),
        ) else {
            panic!("expected an announced cancellation");
        };
        assert_eq!(cancelled.status, ReservationStatus::Cancelled);
        assert_eq!(cancelled.rejecting, None);
        assert_eq!(cancelled.version, r.version + 1);
    }

    #[test]
    fn releasing_drops_only_the_same_pending_claim() {
        let r = being_rejected();
        let at = r.rejecting.as_ref().unwrap().requested_at;
        assert_eq!(
            r.release_rejection(at),
            Some(Reservation {
                rejecting: None,
                ..r.clone()
            })
        );
        assert_eq!(
            r.release_rejection(at + chrono::Duration::microseconds(1)),
            None
        );
        assert_eq!(requested().release_rejection(at), None);
    }

    #[test]
    fn only_an_approved_payment_allows_confirming() {
        assert_eq!(require_approved(PaymentState::Approved), Ok(()));
        for state in [
            PaymentState::Declined,
            PaymentState::Refunded,
            PaymentState::Voided,
        ] {
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

    fn record_of(r: &Reservation) -> ReservationRecord {
        let r = r.clone();
        ReservationRecord {
            reservation_id: r.reservation_id,
            order_id: r.order_id,
            customer_id: r.customer_id,
            booking: r.booking,
            payment_id: r.payment_id,
            status: r.status,
            manager_id: r.manager_id,
            reason: r.reason,
            reject_requested_at: r.rejecting.as_ref().map(|p| p.requested_at),
            reject_manager_id: r.rejecting.as_ref().map(|p| p.manager_id.clone()),
            reject_reason: r.rejecting.map(|p| p.reason),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }

    #[test]
    fn restoring_what_the_transitions_made_gives_the_same_reservation() {
        let tombstone =
            Reservation::tombstone(&cancellation(Uuid::now_v7()), Uuid::now_v7(), Utc::now()).0;
        for r in [requested(), being_rejected(), tombstone] {
            assert_eq!(Reservation::restore(record_of(&r)), Ok(r.clone()), "{r:?}");
        }
    }

    #[test]
    fn a_booking_outside_the_session_limits_is_not_restored() {
        let mut record = record_of(&requested());
        if let Some(b) = record.booking.as_mut() {
            b.session_minutes = SESSION_MINUTES.end() + 1;
        }
        assert_eq!(Reservation::restore(record), Err(Invalid::SessionMinutes));
    }

    #[test]
    fn only_a_tombstone_is_restored_without_its_booking_or_payment() {
        for record in [
            ReservationRecord {
                booking: None,
                ..record_of(&requested())
            },
            ReservationRecord {
                payment_id: None,
                ..record_of(&in_status(ReservationStatus::Confirmed))
            },
        ] {
            assert_eq!(
                Reservation::restore(record),
                Err(Invalid::MissingOutsideTombstone)
            );
        }
    }

    #[test]
    fn a_pending_rejection_is_restored_only_whole_and_only_on_a_requested_reservation() {
        let partial = ReservationRecord {
            reject_reason: None,
            ..record_of(&being_rejected())
        };
        let confirmed = ReservationRecord {
            status: ReservationStatus::Confirmed,
            ..record_of(&being_rejected())
        };
        for record in [partial, confirmed] {
            assert_eq!(Reservation::restore(record), Err(Invalid::Rejecting));
        }
    }
}
