//! A reservation as a `reservations` row and back. Reading parses every column again
//! and checks the invariants the domain relies on: a row that does not parse is
//! reported as corrupt, never trusted.

use platform::store::optional_uuid;
use platform::values::ExternalId;
use sea_orm::Set;
use uuid::Uuid;

use super::StoreError;
use super::schema::entity;
use crate::domain::{
    self, Booking, PendingRejection, RejectReason, Reservation, ReservationStatus,
};

pub(super) fn to_row(r: &Reservation) -> entity::ActiveModel {
    let booking = r.booking.as_ref();
    entity::ActiveModel {
        reservation_id: Set(r.reservation_id.to_string()),
        order_id: Set(r.order_id.to_string()),
        customer_id: Set(r.customer_id.to_string()),
        talent_id: Set(booking.map(|b| b.talent_id.to_string())),
        session_start_time: Set(booking.map(|b| b.session_start)),
        session_minutes: Set(booking.map(|b| b.session_minutes)),
        payment_id: Set(r.payment_id.map(|p| p.to_string())),
        status: Set(r.status.into()),
        manager_id: Set(r.manager_id.as_ref().map(ToString::to_string)),
        reason: Set(r.reason.clone()),
        reject_requested_at: Set(r.rejecting.as_ref().map(|p| p.requested_at)),
        reject_manager_id: Set(r.rejecting.as_ref().map(|p| p.manager_id.to_string())),
        reject_reason: Set(r.rejecting.as_ref().map(|p| p.reason.as_ref().to_owned())),
        version: Set(r.version),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    }
}

/// Parses a row back into the domain; a row that does not parse is reported, not
/// trusted. Besides each column, it checks the invariants the domain relies on: only
/// a CANCELLED tombstone may lack its booking or payment, and only a REQUESTED
/// reservation may have a pending rejection.
pub(super) fn from_row(m: entity::Model) -> Result<Reservation, StoreError> {
    let corrupt =
        |what: &str| StoreError::Corrupt(format!("reservation {}: {what}", m.reservation_id));
    let status = ReservationStatus::from(m.status);
    let booking = match (&m.talent_id, m.session_start_time, m.session_minutes) {
        (None, None, None) => None,
        (Some(talent), Some(session_start), Some(session_minutes))
            if domain::SESSION_MINUTES.contains(&session_minutes) =>
        {
            Some(Booking {
                talent_id: ExternalId::try_from(talent.clone())
                    .map_err(|_| corrupt("talent_id"))?,
                session_start,
                session_minutes,
            })
        }
        _ => return Err(corrupt("booking columns")),
    };
    let payment_id = optional_uuid(m.payment_id.as_deref()).map_err(|_| corrupt("payment_id"))?;
    if status != ReservationStatus::Cancelled && (booking.is_none() || payment_id.is_none()) {
        return Err(corrupt("booking or payment missing outside a tombstone"));
    }
    let manager_id = m
        .manager_id
        .clone()
        .map(ExternalId::try_from)
        .transpose()
        .map_err(|_| corrupt("manager_id"))?;
    let rejecting = match (
        &m.reject_requested_at,
        &m.reject_manager_id,
        &m.reject_reason,
    ) {
        (None, None, None) => None,
        (Some(requested_at), Some(manager), Some(reason))
            if status == ReservationStatus::Requested =>
        {
            Some(PendingRejection {
                manager_id: ExternalId::try_from(manager.clone())
                    .map_err(|_| corrupt("reject_manager_id"))?,
                reason: RejectReason::try_from(reason.clone())
                    .map_err(|_| corrupt("reject_reason"))?,
                requested_at: *requested_at,
            })
        }
        _ => return Err(corrupt("pending rejection columns")),
    };
    Ok(Reservation {
        reservation_id: Uuid::parse_str(&m.reservation_id)
            .map_err(|_| corrupt("reservation_id"))?,
        order_id: Uuid::parse_str(&m.order_id).map_err(|_| corrupt("order_id"))?,
        customer_id: ExternalId::try_from(m.customer_id.clone())
            .map_err(|_| corrupt("customer_id"))?,
        booking,
        payment_id,
        status,
        manager_id,
        reason: m.reason.clone(),
        rejecting,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}
