//! Turns the domain's payment events into `talentshare.events.v1` outbox events.

use platform::envelope::NewEvent;
use talentshare_proto::events::{
    PaymentApproved, PaymentDeclined, PaymentRefunded, event_envelope::Payload,
};

use crate::domain::{Payment, PaymentEvent};
use crate::store::reason_str;

/// The outbox event announcing `event`.
pub fn to_outbox(event: &PaymentEvent) -> NewEvent {
    let (payment, payload) = match event {
        PaymentEvent::Approved { payment, booking } => (
            payment,
            Payload::PaymentApproved(PaymentApproved {
                payment_id: payment.payment_id().to_string(),
                amount_minor: payment.money().amount.get(),
                currency: payment.money().currency.code().to_owned(),
                card_last4: payment.card_last4().to_owned(),
                talent_id: booking.talent_id.to_string(),
                session_start_time: Some(platform::time::to_proto(booking.session_start)),
                session_minutes: booking.session_minutes,
            }),
        ),
        PaymentEvent::Declined { payment } => (
            payment,
            Payload::PaymentDeclined(PaymentDeclined {
                payment_id: payment.payment_id().to_string(),
                amount_minor: payment.money().amount.get(),
                currency: payment.money().currency.code().to_owned(),
                decline_reason: payment
                    .decline_reason()
                    .map(|r| format!("DECLINE_REASON_{}", reason_str(r)))
                    .unwrap_or_default(),
            }),
        ),
        PaymentEvent::Refunded { payment } => (
            payment,
            Payload::PaymentRefunded(PaymentRefunded {
                payment_id: payment.payment_id().to_string(),
                amount_minor: payment.money().amount.get(),
                currency: payment.money().currency.code().to_owned(),
                reason: payment.refund_reason().unwrap_or_default().to_owned(),
            }),
        ),
    };
    envelope_for(payment, payload)
}

fn envelope_for(payment: &Payment, payload: Payload) -> NewEvent {
    NewEvent {
        aggregate_id: payment.payment_id().to_string(),
        aggregate_version: payment.version(),
        order_id: payment.order_id().to_string(),
        customer_id: payment.customer_id().to_string(),
        payload,
    }
}
