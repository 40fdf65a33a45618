//! An entry as a `my_page_entries` row and back. Each status column goes with the
//! version of the aggregate that announced it: `(NULL, 0)` until its first event.
//! Reading parses every column again: a row that does not parse is reported as
//! corrupt, never trusted.

use platform::store::optional_uuid;
use platform::values::{AmountMinor, Currency, ExternalId, Money};
use sea_orm::Set;
use uuid::Uuid;

use super::StoreError;
use super::schema::entity;
use crate::domain::{Booking, Entry, Versioned};

pub(super) fn to_row(e: &Entry) -> entity::ActiveModel {
    let (order_status, order_version) = versioned_columns(e.order);
    let (payment_status, payment_version) = versioned_columns(e.payment);
    let (reservation_status, reservation_version) = versioned_columns(e.reservation);
    entity::ActiveModel {
        order_id: Set(e.order_id.to_string()),
        customer_id: Set(e.customer_id.to_string()),
        talent_id: Set(e.booking.as_ref().map(|b| b.talent_id.to_string())),
        session_start_time: Set(e.booking.as_ref().map(|b| b.session_start)),
        session_minutes: Set(e.booking.as_ref().map(|b| b.session_minutes)),
        amount_minor: Set(e.price.map(|m| m.amount.get())),
        currency: Set(e.price.map(|m| m.currency.code().to_owned())),
        order_status: Set(order_status),
        order_version: Set(order_version),
        payment_status: Set(payment_status),
        payment_version: Set(payment_version),
        reservation_status: Set(reservation_status),
        reservation_version: Set(reservation_version),
        payment_id: Set(e.payment_id.map(|id| id.to_string())),
        reservation_id: Set(e.reservation_id.map(|id| id.to_string())),
        decline_reason: Set(e.decline_reason.clone()),
        update_time: Set(e.updated_at),
    }
}

pub(super) fn from_row(m: entity::Model) -> Result<Entry, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("entry {}: {what}", m.order_id));
    let booking = match (&m.talent_id, m.session_start_time, m.session_minutes) {
        (None, None, None) => None,
        (Some(talent), Some(session_start), Some(session_minutes)) => Some(Booking {
            talent_id: ExternalId::try_from(talent.clone()).map_err(|_| corrupt("talent_id"))?,
            session_start,
            session_minutes,
        }),
        _ => return Err(corrupt("booking columns are partly empty")),
    };
    let price = match (m.amount_minor, &m.currency) {
        (None, None) => None,
        (Some(amount), Some(currency)) => Some(Money {
            amount: AmountMinor::try_from(amount).map_err(|_| corrupt("amount_minor"))?,
            currency: Currency::try_from(currency.as_str()).map_err(|_| corrupt("currency"))?,
        }),
        _ => return Err(corrupt("price columns are partly empty")),
    };
    Ok(Entry {
        order_id: Uuid::parse_str(&m.order_id).map_err(|_| corrupt("order_id"))?,
        customer_id: ExternalId::try_from(m.customer_id.clone())
            .map_err(|_| corrupt("customer_id"))?,
        booking,
        price,
        order: versioned(m.order_status, m.order_version)
            .ok_or_else(|| corrupt("order_status/order_version"))?,
        payment: versioned(m.payment_status, m.payment_version)
            .ok_or_else(|| corrupt("payment_status/payment_version"))?,
        reservation: versioned(m.reservation_status, m.reservation_version)
            .ok_or_else(|| corrupt("reservation_status/reservation_version"))?,
        payment_id: optional_uuid(m.payment_id.as_deref()).map_err(|_| corrupt("payment_id"))?,
        reservation_id: optional_uuid(m.reservation_id.as_deref())
            .map_err(|_| corrupt("reservation_id"))?,
        decline_reason: m.decline_reason.clone(),
        updated_at: m.update_time,
    })
}

/// A status column and its version column: `(None, 0)` for "not yet".
fn versioned_columns<S, Stored: From<S>>(v: Option<Versioned<S>>) -> (Option<Stored>, i64) {
    match v {
        None => (None, 0),
        Some(v) => (Some(v.status.into()), v.version),
    }
}

/// Reads a status column and its version; `None` when they disagree.
fn versioned<Stored, S: From<Stored>>(
    status: Option<Stored>,
    version: i64,
) -> Option<Option<Versioned<S>>> {
    match status {
        None if version == 0 => Some(None),
        Some(s) if version >= 1 => Some(Some(Versioned {
            version,
            status: s.into(),
        })),
        _ => None,
    }
}
