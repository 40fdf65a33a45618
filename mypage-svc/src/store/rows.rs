//! An entry as a `my_page_entries` row and back. Each status column goes with the
//! version of the aggregate that announced it: `(NULL, 0)` until its first event.
//! Reading parses every column again: a row that does not parse, or whose parts
//! [`Entry::restore`] refuses, is reported as corrupt, never trusted.

use platform::store::{booking_columns, optional_uuid, read_stored, stored};
use platform::values::{AmountMinor, Currency, ExternalId, Money};
use sea_orm::Set;
use uuid::Uuid;

use super::StoreError;
use super::schema::{StoredOrderStatus, StoredPaymentStatus, StoredReservationStatus, entity};
use crate::domain::{Entry, EntryRecord, Versioned};

/// The row of `e`, as changed by the customer's change number `change_seq`.
pub(super) fn to_row(e: &Entry, change_seq: i64) -> entity::ActiveModel {
    let (order_status, order_version) = versioned_columns::<_, StoredOrderStatus>(e.order());
    let (payment_status, payment_version) =
        versioned_columns::<_, StoredPaymentStatus>(e.payment());
    let (reservation_status, reservation_version) =
        versioned_columns::<_, StoredReservationStatus>(e.reservation());
    entity::ActiveModel {
        order_id: Set(e.order_id().to_string()),
        customer_id: Set(e.customer_id().to_string()),
        talent_id: Set(e.booking().map(|b| b.talent_id.to_string())),
        session_start_time: Set(e.booking().map(|b| b.session_start)),
        session_minutes: Set(e.booking().map(|b| b.session_minutes)),
        amount_minor: Set(e.price().map(|m| m.amount.get())),
        currency: Set(e.price().map(|m| m.currency.code().to_owned())),
        order_status: Set(order_status),
        order_version: Set(order_version),
        payment_status: Set(payment_status),
        payment_version: Set(payment_version),
        reservation_status: Set(reservation_status),
        reservation_version: Set(reservation_version),
        payment_id: Set(e.payment_id().map(|id| id.to_string())),
        reservation_id: Set(e.reservation_id().map(|id| id.to_string())),
        decline_reason: Set(e.decline_reason().map(str::to_owned)),
        update_time: Set(e.updated_at()),
        change_seq: Set(change_seq),
    }
}

pub(super) fn from_row(m: entity::Model) -> Result<Entry, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("entry {}: {what}", m.order_id));
    let booking = booking_columns(
        m.talent_id.as_deref(),
        m.session_start_time,
        m.session_minutes,
    )
    .map_err(corrupt)?;
    let price = match (m.amount_minor, &m.currency) {
        (None, None) => None,
        (Some(amount), Some(currency)) => Some(Money {
            amount: AmountMinor::try_from(amount).map_err(|_| corrupt("amount_minor"))?,
            currency: Currency::try_from(currency.as_str()).map_err(|_| corrupt("currency"))?,
        }),
        _ => return Err(corrupt("price columns are partly empty")),
    };
    Entry::restore(EntryRecord {
        order_id: Uuid::parse_str(&m.order_id).map_err(|_| corrupt("order_id"))?,
        customer_id: ExternalId::try_from(m.customer_id.clone())
            .map_err(|_| corrupt("customer_id"))?,
        booking,
        price,
        order_status: status_column::<StoredOrderStatus, _>(
            m.order_status.as_deref(),
            "order_status",
        )
        .map_err(|c| corrupt(&c))?,
        order_version: m.order_version,
        payment_status: status_column::<StoredPaymentStatus, _>(
            m.payment_status.as_deref(),
            "payment_status",
        )
        .map_err(|c| corrupt(&c))?,
        payment_version: m.payment_version,
        reservation_status: status_column::<StoredReservationStatus, _>(
            m.reservation_status.as_deref(),
            "reservation_status",
        )
        .map_err(|c| corrupt(&c))?,
        reservation_version: m.reservation_version,
        payment_id: optional_uuid(m.payment_id.as_deref()).map_err(|_| corrupt("payment_id"))?,
        reservation_id: optional_uuid(m.reservation_id.as_deref())
            .map_err(|_| corrupt("reservation_id"))?,
        decline_reason: m.decline_reason.clone(),
        updated_at: m.update_time,
    })
    .map_err(|e| corrupt(&e.to_string()))
}

/// A status column and its version column: `(None, 0)` for "not yet".
fn versioned_columns<S, Stored>(v: Option<Versioned<S>>) -> (Option<String>, i64)
where
    Stored: sea_orm::ActiveEnum<Value = String> + From<S>,
{
    match v {
        None => (None, 0),
        Some(v) => (Some(stored::<Stored>(v.status)), v.version),
    }
}

/// A stored status column; text no variant has is a corrupt row.
fn status_column<Stored, S>(text: Option<&str>, column: &str) -> Result<Option<S>, String>
where
    Stored: sea_orm::ActiveEnum<Value = String> + Into<S>,
{
    text.map(|t| {
        read_stored::<Stored>(t)
            .map(Into::into)
            .ok_or_else(|| column.to_owned())
    })
    .transpose()
}
