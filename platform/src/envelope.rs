//! The event envelope on the bus: building a new `talentshare.events.v1.EventEnvelope`,
//! its AMQP properties, and decoding (and checking) one that arrives.
//!
//! The routing key is derived from the payload variant, never passed separately, so
//! the two cannot disagree.

use prost::Message;
use talentshare_proto::events::{EventEnvelope, event_envelope::Payload};

/// `content_type` of every event message.
pub const CONTENT_TYPE: &str = "application/x-protobuf; proto=talentshare.events.v1.EventEnvelope";

/// Largest event body accepted by a consumer; anything bigger is poison.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The routing key (and `event_type`) of a payload: `<aggregate>.<event>`.
pub fn routing_key(payload: &Payload) -> &'static str {
    match payload {
        Payload::OrderPlaced(_) => "order.placed",
        Payload::OrderPaid(_) => "order.paid",
        Payload::OrderPaymentDeclined(_) => "order.payment_declined",
        Payload::OrderCancelled(_) => "order.cancelled",
        Payload::OrderRejected(_) => "order.rejected",
        Payload::PaymentApproved(_) => "payment.approved",
        Payload::PaymentDeclined(_) => "payment.declined",
        Payload::PaymentRefunded(_) => "payment.refunded",
        Payload::ReservationRequested(_) => "reservation.requested",
        Payload::ReservationConfirmed(_) => "reservation.confirmed",
        Payload::ReservationRejected(_) => "reservation.rejected",
        Payload::ReservationCancelled(_) => "reservation.cancelled",
    }
}

/// An event a service is about to record in its outbox.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Id of the aggregate that changed (payment id, order id, reservation id).
    pub aggregate_id: String,
    /// Version of that aggregate after the change, starting at 1.
    pub aggregate_version: i64,
    /// The order the event belongs to; every event carries it so my page can place it.
    pub order_id: String,
    /// The customer who owns the order.
    pub customer_id: String,
    /// What happened.
    pub payload: Payload,
}

impl NewEvent {
    /// Seals the event: a fresh time-ordered id and the current time.
    pub fn into_envelope(self) -> EventEnvelope {
        let now = std::time::SystemTime::now();
        EventEnvelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            event_type: routing_key(&self.payload).to_owned(),
            aggregate_id: self.aggregate_id,
            aggregate_version: self.aggregate_version,
            occurred_at: Some(prost_types::Timestamp::from(now)),
            order_id: self.order_id,
            customer_id: self.customer_id,
            payload: Some(self.payload),
        }
    }
}

/// Why a message body is not a usable event. Such a message is dead-lettered at once:
/// retrying cannot fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("body is {0} bytes, over the {MAX_EVENT_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("body is not an EventEnvelope: {0}")]
    Undecodable(String),
    #[error("event_id `{0}` is not a UUID")]
    BadEventId(String),
    #[error("envelope has no payload (unknown or missing event type `{0}`)")]
    MissingPayload(String),
    #[error("event_type `{declared}` does not match the payload `{actual}`")]
    TypeMismatch {
        declared: String,
        actual: &'static str,
    },
    #[error("order_id or customer_id is empty")]
    MissingOwner,
}

/// Decodes and checks a message body.
pub fn decode(body: &[u8]) -> Result<EventEnvelope, EnvelopeError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(EnvelopeError::TooLarge(body.len()));
    }
    let env = EventEnvelope::decode(body).map_err(|e| EnvelopeError::Undecodable(e.to_string()))?;
    if uuid::Uuid::parse_str(&env.event_id).is_err() {
        return Err(EnvelopeError::BadEventId(truncate(&env.event_id)));
    }
    let Some(payload) = &env.payload else {
        return Err(EnvelopeError::MissingPayload(truncate(&env.event_type)));
    };
    let actual = routing_key(payload);
    if env.event_type != actual {
        return Err(EnvelopeError::TypeMismatch {
            declared: truncate(&env.event_type),
            actual,
        });
    }
    if env.order_id.is_empty() || env.customer_id.is_empty() {
        return Err(EnvelopeError::MissingOwner);
    }
    Ok(env)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A W3C `traceparent` value with fresh random ids (for tests and tools that publish).
pub fn new_traceparent() -> String {
    let trace: u128 = rand::random::<u128>().max(1);
    let span: u64 = rand::random::<u64>().max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use talentshare_proto::events::PaymentRefunded;

    fn sample() -> NewEvent {
        NewEvent {
            aggregate_id: "p-1".into(),
            aggregate_version: 2,
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            payload: Payload::PaymentRefunded(PaymentRefunded {
                payment_id: "p-1".into(),
                amount_minor: 100,
                currency: "USD".into(),
                reason: "test".into(),
            }),
        }
    }

    /// The catalogue the queues are bound from lists exactly the keys the payloads
    /// route with, and every consumer binds only keys of it (no wildcard), so an
    /// event type added later reaches no consumer until one binds it.
    #[test]
    fn the_bindings_come_from_the_catalogue() {
        use crate::amqp::{CONSUMERS, ROUTING_KEYS};
        use talentshare_proto::events as ev;
        let payloads = [
            Payload::OrderPlaced(ev::OrderPlaced::default()),
            Payload::OrderPaid(ev::OrderPaid::default()),
            Payload::OrderPaymentDeclined(ev::OrderPaymentDeclined::default()),
            Payload::OrderCancelled(ev::OrderCancelled::default()),
            Payload::OrderRejected(ev::OrderRejected::default()),
            Payload::PaymentApproved(ev::PaymentApproved::default()),
            Payload::PaymentDeclined(ev::PaymentDeclined::default()),
            Payload::PaymentRefunded(ev::PaymentRefunded::default()),
            Payload::ReservationRequested(ev::ReservationRequested::default()),
            Payload::ReservationConfirmed(ev::ReservationConfirmed::default()),
            Payload::ReservationRejected(ev::ReservationRejected::default()),
            Payload::ReservationCancelled(ev::ReservationCancelled::default()),
        ];
        let mut routed: Vec<&str> = payloads.iter().map(routing_key).collect();
        let mut listed = ROUTING_KEYS.to_vec();
        routed.sort_unstable();
        listed.sort_unstable();
        assert_eq!(routed, listed);
        for spec in CONSUMERS {
            for key in spec.bindings {
                assert!(ROUTING_KEYS.contains(key), "{}: {key}", spec.name);
            }
        }
    }

    #[test]
    fn a_sealed_event_round_trips() {
        let env = sample().into_envelope();
        assert_eq!(env.event_type, "payment.refunded");
        let back = decode(&env.encode_to_vec()).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn a_mismatched_type_is_rejected() {
        let mut env = sample().into_envelope();
        env.event_type = "payment.approved".into();
        assert!(matches!(
            decode(&env.encode_to_vec()),
            Err(EnvelopeError::TypeMismatch { .. })
        ));
    }

    #[test]
    fn missing_payload_and_bad_ids_are_rejected() {
        let mut env = sample().into_envelope();
        env.payload = None;
        assert!(matches!(
            decode(&env.encode_to_vec()),
            Err(EnvelopeError::MissingPayload(_))
        ));
        let mut env = sample().into_envelope();
        env.event_id = "nope".into();
        assert!(matches!(
            decode(&env.encode_to_vec()),
            Err(EnvelopeError::BadEventId(_))
        ));
        let mut env = sample().into_envelope();
        env.customer_id.clear();
        assert_eq!(
            decode(&env.encode_to_vec()),
            Err(EnvelopeError::MissingOwner)
        );
    }

    #[test]
    fn traceparent_has_the_w3c_shape() {
        let t = new_traceparent();
        assert_eq!(t.len(), 55);
        assert!(t.starts_with("00-") && t.ends_with("-01"));
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&body);
        }
    }
}
