//! The my-page domain: what one entry (one row per order) holds and how an event
//! changes it. Pure: no I/O, no clock, no wire or storage types, so every rule is
//! unit-tested here and the convergence property is checked over random stories.
//!
//! Events about one order come from three services over different paths, so they
//! arrive in any order and may repeat. [`apply`] is built so that folding any
//! permutation of a set of events, with any repetitions, gives the same entry:
//!
//! - each status dimension (order, payment, reservation) keeps the status of the
//!   highest `aggregate_version` seen for its aggregate — a maximum, which ignores
//!   order and repetition;
//! - descriptive fields (booking, price, ids, decline reason) are filled from
//!   whichever event carries them while still empty; the events that carry one
//!   field all carry the same value, so which one fills it does not matter;
//! - `updated_at` is the maximum `occurred_at` of the events folded in.
//!
//! [`check`] guards the one thing that must never be merged: an event that names
//! another customer, payment or reservation than the entry already holds.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use values::{ExternalId, Money};

/// Shortest and longest bookable session, in minutes.
pub const SESSION_MINUTES: std::ops::RangeInclusive<i32> = 15..=480;

/// Longest free-text reason, shared by every service.
pub use values::MAX_REASON_CHARS;

/// Where the order stands, as order-svc announced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    PaymentDeclined,
    Cancelled,
    Rejected,
}

/// Where the payment stands, as payment-svc announced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PaymentStatus {
    Approved,
    Declined,
    Refunded,
}

/// Where the booking stands with the talent's manager, as reservation-svc announced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReservationStatus {
    Requested,
    Confirmed,
    Rejected,
    Cancelled,
}

/// A status together with the version of its aggregate that announced it.
///
/// `Ord` compares the version first: the entry keeps the greatest one. Two different
/// statuses at one version cannot come from one aggregate; the status order then
/// only breaks the tie so that even such input folds to one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Versioned<S> {
    /// The aggregate's version after the change (1 for its first event).
    pub version: i64,
    /// The status it announced.
    pub status: S,
}

pub use values::Booking;

/// One customer's view of one order. Its fields are private so that only [`apply`]
/// (folding events) and [`Entry::restore`] make one, and the fold's rules (a status
/// only with the version that announced it, ids filled once) cannot be bypassed;
/// read it through the accessors named after the fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The order: the key of the entry.
    order_id: Uuid,
    /// The customer, from the first event of the order; never changes.
    customer_id: ExternalId,
    booking: Option<Booking>,
    price: Option<Money>,
    /// From `order.*` events.
    order: Option<Versioned<OrderStatus>>,
    /// From `payment.*` events (and `order.paid`/`order.payment_declined`, see [`apply`]).
    payment: Option<Versioned<PaymentStatus>>,
    /// From `reservation.*` events.
    reservation: Option<Versioned<ReservationStatus>>,
    payment_id: Option<Uuid>,
    reservation_id: Option<Uuid>,
    /// A `talentshare.payment.v1.DeclineReason` value name, kept as text.
    decline_reason: Option<String>,
    /// The latest `occurred_at` among the events folded in.
    updated_at: DateTime<Utc>,
}

/// An entry's stored parts, for [`Entry::restore`] only: the store parses its
/// columns into this and hands it over, and `restore` checks what ties the parts
/// together. Plain data with public fields, so it checks nothing itself; nothing
/// else should build one. Each status comes with its version as stored, version 0
/// standing for "no event yet", since whether the two agree is what `restore` checks.
#[derive(Clone, Debug)]
pub struct EntryRecord {
    pub order_id: Uuid,
    pub customer_id: ExternalId,
    pub booking: Option<Booking>,
    pub price: Option<Money>,
    pub order_status: Option<OrderStatus>,
    pub order_version: i64,
    pub payment_status: Option<PaymentStatus>,
    pub payment_version: i64,
    pub reservation_status: Option<ReservationStatus>,
    pub reservation_version: i64,
    pub payment_id: Option<Uuid>,
    pub reservation_id: Option<Uuid>,
    pub decline_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Why stored parts do not make an entry: a status and its version disagree (a
/// status without a version of at least 1, or a version without a status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("order_status/order_version")]
    Order,
    #[error("payment_status/payment_version")]
    Payment,
    #[error("reservation_status/reservation_version")]
    Reservation,
}

impl Entry {
    /// Rebuilds an entry from its stored parts, checking that each status came with
    /// the version that announced it (at least 1) and that no version stands without
    /// its status: [`apply`] keeps statuses by version, so a mismatched pair would
    /// make it keep the wrong one.
    ///
    /// # Errors
    ///
    /// [`Invalid`] names the status whose version disagrees; the store reports it as
    /// corrupt.
    pub fn restore(r: EntryRecord) -> Result<Entry, Invalid> {
        Ok(Entry {
            order_id: r.order_id,
            customer_id: r.customer_id,
            booking: r.booking,
            price: r.price,
            order: versioned(r.order_status, r.order_version).ok_or(Invalid::Order)?,
            payment: versioned(r.payment_status, r.payment_version).ok_or(Invalid::Payment)?,
            reservation: versioned(r.reservation_status, r.reservation_version)
                .ok_or(Invalid::Reservation)?,
            payment_id: r.payment_id,
            reservation_id: r.reservation_id,
            decline_reason: r.decline_reason,
            updated_at: r.updated_at,
        })
    }

    /// The order: the key of the entry.
    #[must_use]
    pub fn order_id(&self) -> Uuid {
        self.order_id
    }

    /// The customer, from the first event of the order; never changes.
    #[must_use]
    pub fn customer_id(&self) -> &ExternalId {
        &self.customer_id
    }

    #[must_use]
    pub fn booking(&self) -> Option<&Booking> {
        self.booking.as_ref()
    }

    #[must_use]
    pub fn price(&self) -> Option<Money> {
        self.price
    }

    /// From `order.*` events.
    #[must_use]
    pub fn order(&self) -> Option<Versioned<OrderStatus>> {
        self.order
    }

    /// From `payment.*` events (and `order.paid`/`order.payment_declined`).
    #[must_use]
    pub fn payment(&self) -> Option<Versioned<PaymentStatus>> {
        self.payment
    }

    /// From `reservation.*` events.
    #[must_use]
    pub fn reservation(&self) -> Option<Versioned<ReservationStatus>> {
        self.reservation
    }

    #[must_use]
    pub fn payment_id(&self) -> Option<Uuid> {
        self.payment_id
    }

    #[must_use]
    pub fn reservation_id(&self) -> Option<Uuid> {
        self.reservation_id
    }

    /// A `talentshare.payment.v1.DeclineReason` value name, kept as text.
    #[must_use]
    pub fn decline_reason(&self) -> Option<&str> {
        self.decline_reason.as_deref()
    }

    /// The latest `occurred_at` among the events folded in.
    #[must_use]
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
}

/// A stored status and its version; `None` when they disagree.
fn versioned<S>(status: Option<S>, version: i64) -> Option<Option<Versioned<S>>> {
    match status {
        None if version == 0 => Some(None),
        Some(status) if version >= 1 => Some(Some(Versioned { version, status })),
        _ => None,
    }
}

/// One event about an order, parsed from the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainEvent {
    pub order_id: Uuid,
    pub customer_id: ExternalId,
    /// The `aggregate_version` of the aggregate that changed (at least 1).
    pub version: i64,
    pub occurred_at: DateTime<Utc>,
    pub change: Change,
}

/// What happened, with what each event carries that an entry shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    OrderPlaced {
        booking: Booking,
        price: Money,
    },
    OrderPaid {
        payment_id: Uuid,
    },
    OrderPaymentDeclined {
        payment_id: Uuid,
        decline_reason: Option<String>,
    },
    OrderCancelled {
        /// None when the order never got a payment.
        payment_id: Option<Uuid>,
    },
    OrderRejected {
        /// None when order-svc learnt of the rejection from the refunded payment (its
        /// anti-entropy pass); the reservation's own events carry the id then.
        reservation_id: Option<Uuid>,
    },
    PaymentApproved {
        payment_id: Uuid,
        price: Money,
        booking: Booking,
    },
    PaymentDeclined {
        payment_id: Uuid,
        price: Money,
        decline_reason: Option<String>,
    },
    PaymentRefunded {
        payment_id: Uuid,
        price: Money,
    },
    ReservationRequested {
        reservation_id: Uuid,
        payment_id: Uuid,
        booking: Booking,
    },
    ReservationConfirmed {
        reservation_id: Uuid,
    },
    ReservationRejected {
        reservation_id: Uuid,
        payment_id: Uuid,
    },
    ReservationCancelled {
        reservation_id: Uuid,
    },
}

/// Everything an event can tell an entry, spelled out once so [`apply`] is one merge.
#[derive(Default)]
struct Facts {
    order: Option<OrderStatus>,
    payment: Option<PaymentStatus>,
    reservation: Option<ReservationStatus>,
    booking: Option<Booking>,
    price: Option<Money>,
    payment_id: Option<Uuid>,
    reservation_id: Option<Uuid>,
    decline_reason: Option<String>,
}

impl Change {
    fn facts(&self) -> Facts {
        match self.clone() {
            Change::OrderPlaced { booking, price } => Facts {
                order: Some(OrderStatus::PendingPayment),
                booking: Some(booking),
                price: Some(price),
                ..Facts::default()
            },
            // payment-svc decides a charge exactly once, in the payment's version 1,
            // so order-svc's word that the payment was approved (declined) is that
            // same version-1 fact. It lets the entry show the payment before
            // `payment.*` arrives, and it can never outrank a later refund.
            Change::OrderPaid { payment_id } => Facts {
                order: Some(OrderStatus::Paid),
                payment: Some(PaymentStatus::Approved),
                payment_id: Some(payment_id),
                ..Facts::default()
            },
            Change::OrderPaymentDeclined {
                payment_id,
                decline_reason,
            } => Facts {
                order: Some(OrderStatus::PaymentDeclined),
                payment: Some(PaymentStatus::Declined),
                payment_id: Some(payment_id),
                decline_reason,
                ..Facts::default()
            },
            Change::OrderCancelled { payment_id } => Facts {
                order: Some(OrderStatus::Cancelled),
                payment_id,
                ..Facts::default()
            },
            Change::OrderRejected { reservation_id } => Facts {
                order: Some(OrderStatus::Rejected),
                reservation_id,
                ..Facts::default()
            },
            Change::PaymentApproved {
                payment_id,
                price,
                booking,
            } => Facts {
                payment: Some(PaymentStatus::Approved),
                payment_id: Some(payment_id),
                price: Some(price),
                booking: Some(booking),
                ..Facts::default()
            },
            Change::PaymentDeclined {
                payment_id,
                price,
                decline_reason,
            } => Facts {
                payment: Some(PaymentStatus::Declined),
                payment_id: Some(payment_id),
                price: Some(price),
                decline_reason,
                ..Facts::default()
            },
            Change::PaymentRefunded { payment_id, price } => Facts {
                payment: Some(PaymentStatus::Refunded),
                payment_id: Some(payment_id),
                price: Some(price),
                ..Facts::default()
            },
            Change::ReservationRequested {
                reservation_id,
                payment_id,
                booking,
            } => Facts {
                reservation: Some(ReservationStatus::Requested),
                reservation_id: Some(reservation_id),
                payment_id: Some(payment_id),
                booking: Some(booking),
                ..Facts::default()
            },
            Change::ReservationConfirmed { reservation_id } => Facts {
                reservation: Some(ReservationStatus::Confirmed),
                reservation_id: Some(reservation_id),
                ..Facts::default()
            },
            Change::ReservationRejected {
                reservation_id,
                payment_id,
            } => Facts {
                reservation: Some(ReservationStatus::Rejected),
                reservation_id: Some(reservation_id),
                payment_id: Some(payment_id),
                ..Facts::default()
            },
            Change::ReservationCancelled { reservation_id } => Facts {
                reservation: Some(ReservationStatus::Cancelled),
                reservation_id: Some(reservation_id),
                ..Facts::default()
            },
        }
    }
}

/// The payment version that `order.paid`/`order.payment_declined` speak for: the
/// version in which payment-svc decided the charge.
const DECIDED_PAYMENT_VERSION: i64 = 1;

/// Folds one event into the entry of its order (`None`: the order's first event).
///
/// The caller makes sure the event belongs to this entry (same order, and
/// [`check`] passed).
pub fn apply(row: Option<Entry>, event: &DomainEvent) -> Entry {
    let mut entry = row.unwrap_or_else(|| Entry {
        order_id: event.order_id,
        customer_id: event.customer_id.clone(),
        booking: None,
        price: None,
        order: None,
        payment: None,
        reservation: None,
        payment_id: None,
        reservation_id: None,
        decline_reason: None,
        updated_at: event.occurred_at,
    });
    let facts = event.change.facts();
    let payment_version = match event.change {
        Change::OrderPaid { .. } | Change::OrderPaymentDeclined { .. } => DECIDED_PAYMENT_VERSION,
        _ => event.version,
    };
    keep_newest(&mut entry.order, facts.order, event.version);
    keep_newest(&mut entry.payment, facts.payment, payment_version);
    keep_newest(&mut entry.reservation, facts.reservation, event.version);
    fill(&mut entry.booking, facts.booking);
    fill(&mut entry.price, facts.price);
    fill(&mut entry.payment_id, facts.payment_id);
    fill(&mut entry.reservation_id, facts.reservation_id);
    fill(&mut entry.decline_reason, facts.decline_reason);
    entry.updated_at = entry.updated_at.max(event.occurred_at);
    entry
}

fn keep_newest<S: Ord + Copy>(current: &mut Option<Versioned<S>>, status: Option<S>, version: i64) {
    if let Some(status) = status {
        let candidate = Versioned { version, status };
        // `None < Some(_)`, so the first status of a dimension always lands.
        if Some(candidate) > *current {
            *current = Some(candidate);
        }
    }
}

fn fill<T>(slot: &mut Option<T>, value: Option<T>) {
    if slot.is_none() {
        *slot = value;
    }
}

/// Why an event cannot be folded into an entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("order {order_id} belongs to customer {held}, the event names {named}")]
    Customer {
        order_id: Uuid,
        held: ExternalId,
        named: ExternalId,
    },
    #[error("order {order_id} has payment {held}, the event names payment {named}")]
    Payment {
        order_id: Uuid,
        held: Uuid,
        named: Uuid,
    },
    #[error("order {order_id} has reservation {held}, the event names reservation {named}")]
    Reservation {
        order_id: Uuid,
        held: Uuid,
        named: Uuid,
    },
}

/// Checks that `event` speaks about the same customer, payment and reservation as
/// `entry`. There is one payment and one reservation per order; versions of two
/// different aggregates cannot be compared, so merging them would corrupt the
/// entry. Such an event is refused, never folded.
pub fn check(entry: &Entry, event: &DomainEvent) -> Result<(), Conflict> {
    if entry.customer_id != event.customer_id {
        return Err(Conflict::Customer {
            order_id: entry.order_id,
            held: entry.customer_id.clone(),
            named: event.customer_id.clone(),
        });
    }
    let facts = event.change.facts();
    if let (Some(held), Some(named)) = (entry.payment_id, facts.payment_id)
        && held != named
    {
        return Err(Conflict::Payment {
            order_id: entry.order_id,
            held,
            named,
        });
    }
    if let (Some(held), Some(named)) = (entry.reservation_id, facts.reservation_id)
        && held != named
    {
        return Err(Conflict::Reservation {
            order_id: entry.order_id,
            held,
            named,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
