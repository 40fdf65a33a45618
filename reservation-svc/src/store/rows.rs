//! A reservation as a `reservations` row and back. Reading parses every column again
//! and checks the invariants the domain relies on: a row that does not parse is
//! reported as corrupt, never trusted.

use platform::store::{booking_columns, optional_uuid, read_stored, stored};
use platform::values::ExternalId;
use sea_orm::Set;
use uuid::Uuid;

use super::StoreError;
use super::schema::{StoredReservationStatus, entity};
use crate::domain::{RejectReason, Reservation, ReservationRecord};

pub(super) fn to_row(r: &Reservation) -> entity::ActiveModel {
    let booking = r.booking();
    entity::ActiveModel {
        reservation_id: Set(r.reservation_id().to_string()),
        order_id: Set(r.order_id().to_string()),
        customer_id: Set(r.customer_id().to_string()),
        talent_id: Set(booking.map(|b| b.talent_id.to_string())),
        session_start_time: Set(booking.map(|b| b.session_start)),
        session_minutes: Set(booking.map(|b| b.session_minutes)),
        payment_id: Set(r.payment_id().map(|p| p.to_string())),
        status: Set(stored::<StoredReservationStatus>(r.status())),
        manager_id: Set(r.manager_id().map(ToString::to_string)),
        reason: Set(r.reason().map(str::to_owned)),
        reject_requested_at: Set(r.rejecting().map(|p| p.requested_at())),
        reject_manager_id: Set(r.rejecting().map(|p| p.manager_id().to_string())),
        reject_reason: Set(r
            .rejecting()
            .as_ref()
            .map(|p| p.reason().as_ref().to_owned())),
        version: Set(r.version()),
        created_at: Set(r.created_at()),
        updated_at: Set(r.updated_at()),
    }
}

/// Parses a row back into the domain; a row that does not parse, or whose parts
/// break a rule [`Reservation::restore`] checks (only a CANCELLED tombstone may lack
/// its booking or payment, only a REQUESTED reservation may have a pending
/// rejection), is reported, not trusted.
pub(super) fn from_row(m: entity::Model) -> Result<Reservation, StoreError> {
    let corrupt =
        |what: &str| StoreError::Corrupt(format!("reservation {}: {what}", m.reservation_id));
    let booking = booking_columns(
        m.talent_id.as_deref(),
        m.session_start_time,
        m.session_minutes,
    )
    .map_err(corrupt)?;
    Reservation::restore(ReservationRecord {
        reservation_id: Uuid::parse_str(&m.reservation_id)
            .map_err(|_| corrupt("reservation_id"))?,
        order_id: Uuid::parse_str(&m.order_id).map_err(|_| corrupt("order_id"))?,
        customer_id: ExternalId::try_from(m.customer_id.clone())
            .map_err(|_| corrupt("customer_id"))?,
        booking,
        payment_id: optional_uuid(m.payment_id.as_deref()).map_err(|_| corrupt("payment_id"))?,
        status: read_stored::<StoredReservationStatus>(&m.status)
            .ok_or_else(|| corrupt("status"))?
            .into(),
        manager_id: m
            .manager_id
            .clone()
            .map(ExternalId::try_from)
            .transpose()
            .map_err(|_| corrupt("manager_id"))?,
        reason: m.reason.clone(),
        reject_requested_at: m.reject_requested_at,
        reject_manager_id: m
            .reject_manager_id
            .clone()
            .map(ExternalId::try_from)
            .transpose()
            .map_err(|_| corrupt("reject_manager_id"))?,
        reject_reason: m
            .reject_reason
            .clone()
            .map(RejectReason::try_from)
            .transpose()
            .map_err(|_| corrupt("reject_reason"))?,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
    .map_err(|e| corrupt(&e.to_string()))
}
