//! Turns the domain's order events into `talentshare.events.v1` outbox events.
//!
//! Each event is built from the order as it stands after the change, so the
//! envelope's `aggregate_version` is the order's new version.

pub(crate) use platform::time::to_proto as timestamp;

use platform::envelope::NewEvent;
use talentshare_proto::events::{
    OrderCancelled, OrderPaid, OrderPaymentDeclined, OrderPlaced, OrderRejected,
    event_envelope::Payload,
};

use crate::domain::{Order, OrderEvent};

/// The outbox event announcing `event`, which left the order as `order`.
pub fn to_outbox(order: &Order, event: &OrderEvent) -> NewEvent {
    let payment_id = order
        .payment_id()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let payload = match event {
        OrderEvent::Placed => Payload::OrderPlaced(OrderPlaced {
            talent_id: order.booking().talent_id.to_string(),
            session_start_time: Some(timestamp(order.booking().session_start)),
            session_minutes: order.booking().session_minutes,
            amount_minor: order.money().amount.get(),
            currency: order.money().currency.code().to_owned(),
        }),
        OrderEvent::Paid => Payload::OrderPaid(OrderPaid { payment_id }),
        OrderEvent::PaymentDeclined => Payload::OrderPaymentDeclined(OrderPaymentDeclined {
            payment_id,
            decline_reason: order.decline_reason().unwrap_or_default().to_owned(),
        }),
        OrderEvent::Cancelled => Payload::OrderCancelled(OrderCancelled {
            payment_id,
            reason: order.reason().unwrap_or_default().to_owned(),
            refunded: order.refunded(),
        }),
        OrderEvent::Rejected { reservation_id } => Payload::OrderRejected(OrderRejected {
            reservation_id: reservation_id.map(|r| r.to_string()).unwrap_or_default(),
            reason: order.reason().unwrap_or_default().to_owned(),
        }),
    };
    NewEvent {
        aggregate_id: order.order_id().to_string(),
        aggregate_version: order.version(),
        order_id: order.order_id().to_string(),
        customer_id: order.customer_id().to_string(),
        payload,
    }
}
