//! The booking: which talent, when, and for how long. Every service carries it (the
//! order books it, the payment pays for it and hands it to reservation-svc in
//! `payment.approved`, my page shows it), so it is one type, with one rule for the
//! session's length.

use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};

use crate::ExternalId;

/// Shortest and longest bookable session, in minutes.
pub const SESSION_MINUTES: RangeInclusive<i32> = 15..=480;

/// The talent session an order books.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Booking {
    pub talent_id: ExternalId,
    pub session_start: DateTime<Utc>,
    pub session_minutes: i32,
}
