//! The event consumer's handler: `payment.approved` creates the order's reservation,
//! `order.cancelled` cancels it (or leaves a tombstone when it comes first).
//!
//! The platform consumer has already recorded the event id in the inbox inside the
//! transaction it hands over, so an exact redelivery never reaches this handler. A
//! second, different event for the same order is absorbed by the domain rules
//! ([`crate::domain::apply`]), which end in the same reservation whatever the order
//! of arrival. An event that breaks its contract is dead-lettered: no retry can
//! repair it.

use chrono::{DateTime, SubsecRound, Utc};
use platform::consumer::{EventHandler, HandlerError};
use platform::values::{ExternalId, parse_uuid};
use sea_orm::DatabaseTransaction;
use talentshare_proto::events::{
    EventEnvelope, OrderCancelled, PaymentApproved, event_envelope::Payload,
};

use crate::domain::{
    Approval, Booking, Cancellation, MAX_REASON_CHARS, OrderEvent, SESSION_MINUTES,
};
use crate::store::{self, StoreError};

/// The name of this service's queue in `platform::amqp::CONSUMERS`.
pub const QUEUE: &str = "reservation";

/// Applies `payment.approved` and `order.cancelled` to reservations.
#[derive(Clone, Copy, Debug, Default)]
pub struct Handler;

impl EventHandler for Handler {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        let Some(order_event) = parse(event).map_err(HandlerError::Permanent)? else {
            tracing::debug!(event_type = %event.event_type, "not a reservation concern; ignored");
            return Ok(());
        };
        let applied = store::apply_event(txn, &order_event)
            .await
            .map_err(|e| match e {
                StoreError::Db(db) => HandlerError::from(db),
                // A row that does not parse needs an operator, not a retry.
                other => HandlerError::Permanent(other.into()),
            })?;
        tracing::info!(?applied, "reservation event applied");
        Ok(())
    }
}

/// The domain event an envelope carries; `None` for payloads this service does not
/// act on (consumers acknowledge unknown payloads without acting).
fn parse(env: &EventEnvelope) -> anyhow::Result<Option<OrderEvent>> {
    let event = match &env.payload {
        Some(Payload::PaymentApproved(p)) => OrderEvent::Approved(approval(env, p)?),
        Some(Payload::OrderCancelled(c)) => OrderEvent::Cancelled(cancellation(env, c)?),
        _ => return Ok(None),
    };
    Ok(Some(event))
}

fn owner(env: &EventEnvelope) -> anyhow::Result<(uuid::Uuid, ExternalId)> {
    let order_id = parse_uuid(&env.order_id)
        .map_err(|e| anyhow::anyhow!("order_id `{}` {e}", truncate(&env.order_id)))?;
    let customer_id = ExternalId::try_from(env.customer_id.clone())
        .map_err(|e| anyhow::anyhow!("customer_id `{}` {e}", truncate(&env.customer_id)))?;
    Ok((order_id, customer_id))
}

fn approval(env: &EventEnvelope, p: &PaymentApproved) -> anyhow::Result<Approval> {
    let (order_id, customer_id) = owner(env)?;
    let payment_id = parse_uuid(&p.payment_id)
        .map_err(|e| anyhow::anyhow!("payment_id `{}` {e}", truncate(&p.payment_id)))?;
    let talent_id = ExternalId::try_from(p.talent_id.clone())
        .map_err(|e| anyhow::anyhow!("talent_id `{}` {e}", truncate(&p.talent_id)))?;
    let start = p
        .session_start_time
        .ok_or_else(|| anyhow::anyhow!("session_start_time is missing"))?;
    let session_start = u32::try_from(start.nanos)
        .ok()
        .and_then(|nanos| DateTime::<Utc>::from_timestamp(start.seconds, nanos))
        .ok_or_else(|| anyhow::anyhow!("session_start_time {start:?} is out of range"))?
        // Stored at microsecond precision by PostgreSQL; truncating here keeps what
        // the event says, what is stored and what is announced the same.
        .trunc_subsecs(6);
    anyhow::ensure!(
        SESSION_MINUTES.contains(&p.session_minutes),
        "session_minutes {} is outside {SESSION_MINUTES:?}",
        p.session_minutes
    );
    Ok(Approval {
        order_id,
        customer_id,
        payment_id,
        booking: Booking {
            talent_id,
            session_start,
            session_minutes: p.session_minutes,
        },
    })
}

fn cancellation(env: &EventEnvelope, c: &OrderCancelled) -> anyhow::Result<Cancellation> {
    let (order_id, customer_id) = owner(env)?;
    let payment_id = if c.payment_id.is_empty() {
        None
    } else {
        Some(
            parse_uuid(&c.payment_id)
                .map_err(|e| anyhow::anyhow!("payment_id `{}` {e}", truncate(&c.payment_id)))?,
        )
    };
    // The contract caps reasons at 200 characters. An overlong one is cut rather than
    // refused: dead-lettering it would leave a cancelled order's booking REQUESTED.
    let reason: String = c.reason.chars().take(MAX_REASON_CHARS).collect();
    Ok(Cancellation {
        order_id,
        customer_id,
        payment_id,
        reason: (!reason.is_empty()).then_some(reason),
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use talentshare_proto::events::OrderPlaced;

    fn envelope(payload: Payload) -> EventEnvelope {
        platform::envelope::NewEvent {
            aggregate_id: uuid::Uuid::now_v7().to_string(),
            aggregate_version: 1,
            order_id: uuid::Uuid::now_v7().to_string(),
            customer_id: "cust-1".into(),
            payload,
        }
        .into_envelope()
    }

    fn approved() -> PaymentApproved {
        PaymentApproved {
            payment_id: uuid::Uuid::now_v7().to_string(),
            amount_minor: 100,
            currency: "USD".into(),
            card_last4: "4242".into(),
            talent_id: "talent-1".into(),
            session_start_time: Some(prost_types::Timestamp {
                seconds: 1_900_000_000,
                nanos: 123_456_789,
            }),
            session_minutes: 60,
        }
    }

    #[test]
    fn an_approval_parses_with_its_session_time_at_microseconds() {
        let Ok(Some(OrderEvent::Approved(a))) =
            parse(&envelope(Payload::PaymentApproved(approved())))
        else {
            panic!("expected an approval");
        };
        assert_eq!(
            a.booking.session_start.timestamp_subsec_nanos(),
            123_456_000
        );
        assert_eq!(a.booking.session_minutes, 60);
    }

    #[test]
    fn a_broken_approval_is_an_error() {
        type Breaks = fn(&mut PaymentApproved);
        let cases: [(&str, Breaks); 5] = [
            ("payment id", |p| p.payment_id = "p".into()),
            ("talent", |p| p.talent_id.clear()),
            ("no start", |p| p.session_start_time = None),
            ("bad nanos", |p| {
                p.session_start_time = Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                })
            }),
            ("minutes", |p| p.session_minutes = 5),
        ];
        for (case, breaks) in cases {
            let mut p = approved();
            breaks(&mut p);
            assert!(
                parse(&envelope(Payload::PaymentApproved(p))).is_err(),
                "{case}"
            );
        }
        let mut env = envelope(Payload::PaymentApproved(approved()));
        env.order_id = "order-1".into();
        assert!(parse(&env).is_err(), "order id");
    }

    #[test]
    fn a_cancellation_without_payment_or_reason_parses_and_a_long_reason_is_cut() {
        let Ok(Some(OrderEvent::Cancelled(c))) = parse(&envelope(Payload::OrderCancelled(
            OrderCancelled::default(),
        ))) else {
            panic!("expected a cancellation");
        };
        assert_eq!((c.payment_id, c.reason), (None, None));
        let long = OrderCancelled {
            reason: "x".repeat(500),
            ..Default::default()
        };
        let Ok(Some(OrderEvent::Cancelled(c))) = parse(&envelope(Payload::OrderCancelled(long)))
        else {
            panic!("expected a cancellation");
        };
        assert_eq!(c.reason.map(|r| r.len()), Some(MAX_REASON_CHARS));
    }

    #[test]
    fn other_payloads_are_ignored() {
        let env = envelope(Payload::OrderPlaced(OrderPlaced::default()));
        assert!(matches!(parse(&env), Ok(None)));
    }
}
