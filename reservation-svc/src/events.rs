//! Turns the domain's reservation events into `talentshare.events.v1` outbox events.

use platform::envelope::NewEvent;
use talentshare_proto::events::{
    ReservationCancelled, ReservationConfirmed, ReservationRejected, ReservationRequested,
    event_envelope::Payload,
};

use crate::domain::{Reservation, ReservationEvent};

/// The outbox event announcing `event`.
pub fn to_outbox(event: &ReservationEvent) -> NewEvent {
    let (reservation, payload) = match event {
        ReservationEvent::Requested {
            reservation,
            payment_id,
            booking,
        } => (
            reservation,
            Payload::ReservationRequested(ReservationRequested {
                reservation_id: reservation.reservation_id().to_string(),
                payment_id: payment_id.to_string(),
                talent_id: booking.talent_id.to_string(),
                session_start_time: Some(prost_types::Timestamp {
                    seconds: booking.session_start.timestamp(),
                    nanos: booking.session_start.timestamp_subsec_nanos() as i32,
                }),
                session_minutes: booking.session_minutes,
            }),
        ),
        ReservationEvent::Confirmed {
            reservation,
            manager_id,
        } => (
            reservation,
            Payload::ReservationConfirmed(ReservationConfirmed {
                reservation_id: reservation.reservation_id().to_string(),
                manager_id: manager_id.to_string(),
            }),
        ),
        ReservationEvent::Rejected {
            reservation,
            manager_id,
            reason,
        } => (
            reservation,
            Payload::ReservationRejected(ReservationRejected {
                reservation_id: reservation.reservation_id().to_string(),
                manager_id: manager_id.to_string(),
                reason: reason.as_ref().to_owned(),
                // Always set: only a CANCELLED tombstone can lack a payment.
                payment_id: reservation
                    .payment_id()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            }),
        ),
        ReservationEvent::Cancelled { reservation } => (
            reservation,
            Payload::ReservationCancelled(ReservationCancelled {
                reservation_id: reservation.reservation_id().to_string(),
                reason: reservation.reason().unwrap_or_default().to_owned(),
            }),
        ),
    };
    envelope_for(reservation, payload)
}

fn envelope_for(reservation: &Reservation, payload: Payload) -> NewEvent {
    NewEvent {
        aggregate_id: reservation.reservation_id().to_string(),
        aggregate_version: reservation.version(),
        order_id: reservation.order_id().to_string(),
        customer_id: reservation.customer_id().to_string(),
        payload,
    }
}
