//! The event consumer "order": reservation-svc's `reservation.rejected` ends the
//! order REJECTED (refunded, since reservation-svc refunded the payment before it
//! announced the rejection) and announces `order.rejected`.
//!
//! Order-independent and idempotent: the platform's inbox drops redeliveries, an
//! order already REJECTED or CANCELLED is left as it is (either way its payment was
//! refunded), and a rejection that overtakes order-svc's own record of the payment
//! ends a PENDING_PAYMENT order directly; the late approval then finds the order
//! decided and changes nothing. A rejection of a PAID order whose cancellation was
//! requested but not finished ends it REJECTED all the same (the payment is refunded
//! either way); the unfinished cancellation then finds it no longer PAID and changes
//! nothing.

use platform::consumer::{EventHandler, HandlerError};
use sea_orm::DatabaseTransaction;
use talentshare_proto::events::{EventEnvelope, ReservationRejected, event_envelope::Payload};
use uuid::Uuid;

use crate::store::{self, StoreError};

/// The name of this service's queue in [`platform::amqp::CONSUMERS`].
pub const QUEUE: &str = "order";

/// Applies reservation events to orders.
pub struct Handler;

impl EventHandler for Handler {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        match &event.payload {
            Some(Payload::ReservationRejected(rejected)) => {
                apply_rejection(txn, event, rejected).await
            }
            // The queue is bound to nothing else; a payload this version does not act
            // on is acknowledged, as events.proto asks of consumers.
            _ => Ok(()),
        }
    }
}

async fn apply_rejection(
    txn: &DatabaseTransaction,
    event: &EventEnvelope,
    rejected: &ReservationRejected,
) -> Result<(), HandlerError> {
    let order_id = uuid("order_id", &event.order_id)?;
    let reservation_id = uuid("reservation_id", &rejected.reservation_id)?;
    let payment_id = if rejected.payment_id.is_empty() {
        None
    } else {
        Some(uuid("payment_id", &rejected.payment_id)?)
    };
    let result = store::change_in(txn, order_id, |order, now| {
        order.reject(Some(reservation_id), payment_id, &rejected.reason, now)
    })
    .await;
    match result {
        Ok((order, changed)) => {
            tracing::info!(%order_id, status = ?order.status(), changed, "reservation rejected");
            Ok(())
        }
        Err(StoreError::Db(e)) => Err(e.into()),
        // An unknown order, an order whose payment was declined, or a corrupt row:
        // no retry can make the rejection apply, so an operator gets to look at it.
        Err(e) => Err(HandlerError::Permanent(anyhow::anyhow!(
            "reservation.rejected for order {order_id}: {e}"
        ))),
    }
}

fn uuid(field: &str, value: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(value).map_err(|_| {
        let shown: String = value.chars().take(64).collect();
        HandlerError::Permanent(anyhow::anyhow!("{field} `{shown}` is not a UUID"))
    })
}
