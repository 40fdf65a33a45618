//! Turns `talentshare.events.v1` envelopes into the domain's [`DomainEvent`]s: the
//! edge where wire data is checked, so the core only ever sees valid events.
//!
//! An envelope that does not parse can never apply, whatever arrives later; the
//! consumer dead-letters it (see [`crate::consumer`]). Every problem of one event is
//! reported at once, so an operator reading the dead-letter log sees all of them.

use platform::time::from_proto as timestamp;
use platform::values::{AmountMinor, Currency, ExternalId, Money, Violations, parse_uuid};
use talentshare_proto::events::{EventEnvelope, event_envelope::Payload};
use uuid::Uuid;

use crate::domain::{Booking, Change, DomainEvent, MAX_REASON_CHARS, SESSION_MINUTES};

/// Why an envelope is not a usable event.
#[derive(Debug, thiserror::Error)]
#[error("invalid {event_type} event {event_id}: {violations}")]
pub struct InvalidEvent {
    pub event_id: String,
    pub event_type: String,
    pub violations: Violations,
}

/// Parses an envelope (already decoded and checked by `platform::envelope::decode`)
/// into a domain event.
pub fn parse(env: &EventEnvelope) -> Result<DomainEvent, InvalidEvent> {
    let mut v = Violations::new();
    let order_id = v.check("order_id", parse_uuid(&env.order_id));
    let customer_id = v.check("customer_id", ExternalId::try_from(env.customer_id.clone()));
    if env.aggregate_version < 1 {
        v.add("aggregate_version", "must be at least 1");
    }
    let occurred_at = v.check("occurred_at", timestamp(env.occurred_at));
    let change = match &env.payload {
        None => {
            v.add("payload", "is required");
            None
        }
        Some(payload) => change(payload, &mut v),
    };
    if let (Some(order_id), Some(change)) = (order_id, &change) {
        check_aggregate_id(env, order_id, change, &mut v);
    }
    match (order_id, customer_id, occurred_at, change) {
        (Some(order_id), Some(customer_id), Some(occurred_at), Some(change)) if v.is_empty() => {
            Ok(DomainEvent {
                order_id,
                customer_id,
                version: env.aggregate_version,
                occurred_at,
                change,
            })
        }
        _ => Err(InvalidEvent {
            event_id: env.event_id.clone(),
            event_type: env.event_type.clone(),
            violations: v,
        }),
    }
}

/// `aggregate_version` counts the changes of `aggregate_id`; if that id is not the
/// aggregate the payload speaks about, the version would be compared with the
/// wrong history.
fn check_aggregate_id(env: &EventEnvelope, order_id: Uuid, change: &Change, v: &mut Violations) {
    let expected = match change {
        Change::OrderPlaced { .. }
        | Change::OrderPaid { .. }
        | Change::OrderPaymentDeclined { .. }
        | Change::OrderCancelled { .. }
        | Change::OrderRejected { .. } => order_id,
        Change::PaymentApproved { payment_id, .. }
        | Change::PaymentDeclined { payment_id, .. }
        | Change::PaymentRefunded { payment_id, .. } => *payment_id,
        Change::ReservationRequested { reservation_id, .. }
        | Change::ReservationConfirmed { reservation_id }
        | Change::ReservationRejected { reservation_id, .. }
        | Change::ReservationCancelled { reservation_id } => *reservation_id,
    };
    if Uuid::parse_str(&env.aggregate_id).ok() != Some(expected) {
        v.add(
            "aggregate_id",
            format!("must be the id of the aggregate that changed ({expected})"),
        );
    }
}

fn change(payload: &Payload, v: &mut Violations) -> Option<Change> {
    match payload {
        Payload::OrderPlaced(p) => {
            let booking = booking(
                v,
                "order_placed",
                &p.talent_id,
                p.session_start_time,
                p.session_minutes,
            );
            let price = money(v, "order_placed", p.amount_minor, &p.currency);
            Some(Change::OrderPlaced {
                booking: booking?,
                price: price?,
            })
        }
        Payload::OrderPaid(p) => Some(Change::OrderPaid {
            payment_id: uuid(v, "order_paid.payment_id", &p.payment_id)?,
        }),
        Payload::OrderPaymentDeclined(p) => {
            let payment_id = uuid(v, "order_payment_declined.payment_id", &p.payment_id);
            let reason = reason(
                v,
                "order_payment_declined.decline_reason",
                &p.decline_reason,
            );
            Some(Change::OrderPaymentDeclined {
                payment_id: payment_id?,
                decline_reason: reason?,
            })
        }
        Payload::OrderCancelled(p) => {
            let payment_id = if p.payment_id.is_empty() {
                None
            } else {
                Some(uuid(v, "order_cancelled.payment_id", &p.payment_id)?)
            };
            Some(Change::OrderCancelled { payment_id })
        }
        Payload::OrderRejected(p) => Some(Change::OrderRejected {
            reservation_id: if p.reservation_id.is_empty() {
                None
            } else {
                Some(uuid(v, "order_rejected.reservation_id", &p.reservation_id)?)
            },
        }),
        Payload::PaymentApproved(p) => {
            let payment_id = uuid(v, "payment_approved.payment_id", &p.payment_id);
            let price = money(v, "payment_approved", p.amount_minor, &p.currency);
            let booking = booking(
                v,
                "payment_approved",
                &p.talent_id,
                p.session_start_time,
                p.session_minutes,
            );
            Some(Change::PaymentApproved {
                payment_id: payment_id?,
                price: price?,
                booking: booking?,
            })
        }
        Payload::PaymentDeclined(p) => {
            let payment_id = uuid(v, "payment_declined.payment_id", &p.payment_id);
            let price = money(v, "payment_declined", p.amount_minor, &p.currency);
            let reason = reason(v, "payment_declined.decline_reason", &p.decline_reason);
            Some(Change::PaymentDeclined {
                payment_id: payment_id?,
                price: price?,
                decline_reason: reason?,
            })
        }
        Payload::PaymentRefunded(p) => {
            let payment_id = uuid(v, "payment_refunded.payment_id", &p.payment_id);
            let price = money(v, "payment_refunded", p.amount_minor, &p.currency);
            Some(Change::PaymentRefunded {
                payment_id: payment_id?,
                price: price?,
            })
        }
        Payload::ReservationRequested(p) => {
            let reservation_id = uuid(v, "reservation_requested.reservation_id", &p.reservation_id);
            let payment_id = uuid(v, "reservation_requested.payment_id", &p.payment_id);
            let booking = booking(
                v,
                "reservation_requested",
                &p.talent_id,
                p.session_start_time,
                p.session_minutes,
            );
            Some(Change::ReservationRequested {
                reservation_id: reservation_id?,
                payment_id: payment_id?,
                booking: booking?,
            })
        }
        Payload::ReservationConfirmed(p) => Some(Change::ReservationConfirmed {
            reservation_id: uuid(v, "reservation_confirmed.reservation_id", &p.reservation_id)?,
        }),
        Payload::ReservationRejected(p) => {
            let reservation_id = uuid(v, "reservation_rejected.reservation_id", &p.reservation_id);
            let payment_id = uuid(v, "reservation_rejected.payment_id", &p.payment_id);
            Some(Change::ReservationRejected {
                reservation_id: reservation_id?,
                payment_id: payment_id?,
            })
        }
        Payload::ReservationCancelled(p) => Some(Change::ReservationCancelled {
            reservation_id: uuid(v, "reservation_cancelled.reservation_id", &p.reservation_id)?,
        }),
    }
}

fn uuid(v: &mut Violations, field: &str, s: &str) -> Option<Uuid> {
    v.check(field, parse_uuid(s))
}

fn money(v: &mut Violations, payload: &str, amount: i64, currency: &str) -> Option<Money> {
    let amount = v.check(
        &format!("{payload}.amount_minor"),
        AmountMinor::try_from(amount),
    );
    let currency = v.check(&format!("{payload}.currency"), Currency::try_from(currency));
    Some(Money {
        amount: amount?,
        currency: currency?,
    })
}

fn booking(
    v: &mut Violations,
    payload: &str,
    talent_id: &str,
    start: Option<prost_types::Timestamp>,
    minutes: i32,
) -> Option<Booking> {
    let talent_id = v.check(
        &format!("{payload}.talent_id"),
        ExternalId::try_from(talent_id.to_owned()),
    );
    let session_start = v.check(&format!("{payload}.session_start_time"), timestamp(start));
    if !SESSION_MINUTES.contains(&minutes) {
        v.add(
            format!("{payload}.session_minutes"),
            format!(
                "must be between {} and {}",
                SESSION_MINUTES.start(),
                SESSION_MINUTES.end()
            ),
        );
        return None;
    }
    Some(Booking {
        talent_id: talent_id?,
        session_start: session_start?,
        session_minutes: minutes,
    })
}

/// A reason string: empty means none.
fn reason(v: &mut Violations, field: &str, s: &str) -> Option<Option<String>> {
    if s.chars().count() > MAX_REASON_CHARS {
        v.add(
            field,
            format!("must be at most {MAX_REASON_CHARS} characters"),
        );
        return None;
    }
    Some((!s.is_empty()).then(|| s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::envelope::NewEvent;
    use talentshare_proto::events::{OrderCancelled, PaymentApproved, ReservationConfirmed};

    fn approved(payment_id: &str) -> EventEnvelope {
        NewEvent {
            aggregate_id: payment_id.to_owned(),
            aggregate_version: 1,
            order_id: Uuid::now_v7().to_string(),
            customer_id: "cust-1".into(),
            payload: Payload::PaymentApproved(PaymentApproved {
                payment_id: payment_id.to_owned(),
                amount_minor: 5_000,
                currency: "USD".into(),
                card_last4: "4242".into(),
                talent_id: "talent-7".into(),
                session_start_time: Some(prost_types::Timestamp {
                    seconds: 1_900_000_000,
                    nanos: 123_456_789,
                }),
                session_minutes: 60,
            }),
        }
        .into_envelope()
    }

    fn fields(e: InvalidEvent) -> Vec<String> {
        e.violations.iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn a_valid_envelope_parses_with_times_cut_to_microseconds() {
        let env = approved(&Uuid::now_v7().to_string());
        let event = parse(&env).expect("valid event");
        assert_eq!(event.version, 1);
        let Change::PaymentApproved { booking, price, .. } = event.change else {
            panic!("payment.approved parses to PaymentApproved");
        };
        assert_eq!(booking.session_start.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(price.amount.get(), 5_000);
        assert_eq!(event.occurred_at.timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let mut env = approved("not-a-uuid");
        env.aggregate_version = 0;
        env.occurred_at = None;
        if let Some(Payload::PaymentApproved(p)) = &mut env.payload {
            p.currency = "usd".into();
            p.session_minutes = 5;
        }
        let got = fields(parse(&env).expect_err("invalid event"));
        for field in [
            "aggregate_version",
            "occurred_at",
            "payment_approved.payment_id",
            "payment_approved.currency",
            "payment_approved.session_minutes",
        ] {
            assert!(
                got.contains(&field.to_owned()),
                "{field} missing from {got:?}"
            );
        }
    }

    #[test]
    fn an_aggregate_id_that_is_not_the_changed_aggregate_is_refused() {
        let mut env = approved(&Uuid::now_v7().to_string());
        env.aggregate_id = env.order_id.clone();
        assert_eq!(
            fields(parse(&env).expect_err("wrong aggregate")),
            ["aggregate_id"]
        );
        let reservation_id = Uuid::now_v7().to_string();
        let confirmed = NewEvent {
            aggregate_id: Uuid::now_v7().to_string(),
            aggregate_version: 2,
            order_id: Uuid::now_v7().to_string(),
            customer_id: "cust-1".into(),
            payload: Payload::ReservationConfirmed(ReservationConfirmed {
                reservation_id,
                manager_id: "m-1".into(),
            }),
        }
        .into_envelope();
        assert_eq!(
            fields(parse(&confirmed).expect_err("wrong aggregate")),
            ["aggregate_id"]
        );
    }

    #[test]
    fn an_order_cancelled_without_payment_has_no_payment_id() {
        let order_id = Uuid::now_v7().to_string();
        let env = NewEvent {
            aggregate_id: order_id.clone(),
            aggregate_version: 2,
            order_id,
            customer_id: "cust-1".into(),
            payload: Payload::OrderCancelled(OrderCancelled::default()),
        }
        .into_envelope();
        let event = parse(&env).expect("valid event");
        assert_eq!(event.change, Change::OrderCancelled { payment_id: None });
    }
}
