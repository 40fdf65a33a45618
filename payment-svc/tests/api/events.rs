//! Events on RabbitMQ: routing keys, AMQP properties and envelopes, and delivery of
//! everything written while the broker was unreachable, applied once by a consumer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform::consumer::{Consumer, EventHandler, HandlerError, Outcome};
use platform::outbox::OutboxSignal;
use sea_orm::DatabaseTransaction;
use sea_orm_migration::prelude::*;
use talentshare_proto::events::{EventEnvelope, event_envelope::Payload};
use tokio_util::sync::CancellationToken;

use crate::helpers::{APPROVED_CARD, pay_request, spawn_app, spawn_app_with_amqp, wait_until};
use testkit::on_both_backends;
use testkit::{Backend, TcpProxy, TestDatabase};

on_both_backends!(
    pay_publishes_a_decodable_envelope_with_the_right_key_and_properties,
    events_written_while_the_broker_is_unreachable_arrive_once_it_is_back,
);

async fn pay_publishes_a_decodable_envelope_with_the_right_key_and_properties(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let req = pay_request(APPROVED_CARD, 4_200);
    let paid = app
        .client
        .pay(req.clone())
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    let declined = app
        .client
        .pay(pay_request("4000000000009995", 10))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();

    let got = app
        .broker
        .collect(&app.all_events_queue(), 2, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 2);
    let approved = got
        .iter()
        .find(|e| e.routing_key == "payment.approved")
        .expect("approved event");
    let env = approved.envelope();
    assert_eq!(env.event_type, "payment.approved");
    assert_eq!(env.aggregate_id, paid.payment_id);
    assert_eq!(env.aggregate_version, 1);
    assert_eq!(env.order_id, req.order_id);
    assert_eq!(env.customer_id, "cust-1");
    let p = &approved.properties;
    assert_eq!(
        p.message_id().as_ref().map(|s| s.as_str()),
        Some(env.event_id.as_str())
    );
    assert_eq!(
        p.kind().as_ref().map(|s| s.as_str()),
        Some("payment.approved")
    );
    assert!(
        p.content_type()
            .as_ref()
            .unwrap()
            .as_str()
            .starts_with("application/x-protobuf")
    );
    assert_eq!(*p.delivery_mode(), Some(2), "persistent");
    // This in-process service runs without the OpenTelemetry layer (the binaries
    // install it), so it has no trace to send and sends no made-up one; the e2e test
    // `one_booking_is_one_trace…` follows the header across real processes.
    let traceparent = p
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("traceparent").cloned());
    assert!(
        traceparent.is_none(),
        "no trace, no traceparent: {traceparent:?}"
    );
    let Some(Payload::PaymentApproved(body)) = env.payload else {
        panic!("payload is PaymentApproved")
    };
    assert_eq!(
        (
            body.amount_minor,
            body.currency.as_str(),
            body.card_last4.as_str()
        ),
        (4_200, "USD", "4242")
    );
    assert_eq!(body.talent_id, "talent-7");
    assert_eq!(body.session_minutes, 60);
    assert_eq!(body.session_start_time.unwrap().seconds, 1_900_000_000);

    let declined_event = got
        .iter()
        .find(|e| e.routing_key == "payment.declined")
        .expect("declined event");
    let Some(Payload::PaymentDeclined(d)) = declined_event.envelope().payload else {
        panic!("payload is PaymentDeclined")
    };
    assert_eq!(d.payment_id, declined.payment_id);
    assert_eq!(d.decline_reason, "DECLINE_REASON_INSUFFICIENT_FUNDS");
    app.stop().await;
}

/// Records how many times each event was applied.
#[derive(Clone, Default)]
struct CountingHandler(Arc<Mutex<HashMap<String, (String, u32)>>>);

impl EventHandler for CountingHandler {
    async fn handle(
        &self,
        _txn: &DatabaseTransaction,
        event: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        let mut seen = self.0.lock().unwrap();
        let entry = seen
            .entry(event.event_id.clone())
            .or_insert_with(|| (event.order_id.clone(), 0));
        entry.1 += 1;
        Ok(())
    }
}

/// The platform tables a consumer needs, for the test consumer's own database.
struct InboxOnly;

impl MigratorTrait for InboxOnly {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(platform::migrations::CreateOutbox),
            Box::new(platform::migrations::CreateInbox),
        ]
    }
}

async fn events_written_while_the_broker_is_unreachable_arrive_once_it_is_back(backend: Backend) {
    let proxy = TcpProxy::start_cut("127.0.0.1:5672".parse().unwrap()).await;
    let amqp = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let mut app = spawn_app_with_amqp(backend, &amqp).await;

    // Broker unreachable: paying still works and every event waits in the outbox.
    let mut order_ids = Vec::new();
    for i in 0..20 {
        let req = pay_request(
            if i % 5 == 0 {
                "4000000000000002"
            } else {
                APPROVED_CARD
            },
            100 + i,
        );
        order_ids.push(req.order_id.clone());
        app.client
            .pay(req)
            .await
            .expect("pay works without the broker");
    }
    assert_eq!(app.outbox_len().await, 20);
    assert!(app.broker.drain(&app.all_events_queue()).await.is_empty());

    // A consumer with its own inbox reads the events as they arrive.
    let consumer_db = TestDatabase::create(Backend::Sqlite).await;
    let conn = consumer_db.connect().await;
    InboxOnly::up(&conn, None).await.unwrap();
    let handler = CountingHandler::default();
    let messaging =
        crate::helpers::settings(app.db.url(), app.broker.exchange(), &testkit::amqp_url())
            .platform
            .messaging;
    let consumer = Consumer::new(
        "mypage",
        handler.clone(),
        conn,
        messaging,
        OutboxSignal::new(),
    );
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let consuming = tokio::spawn(consumer.run(stop.clone()));

    proxy.restore().await;
    wait_until("all 20 events applied", Duration::from_secs(30), || async {
        (handler.0.lock().unwrap().len() == 20).then_some(())
    })
    .await;
    wait_until("outbox drained", Duration::from_secs(10), || async {
        (app.outbox_len().await == 0).then_some(())
    })
    .await;

    // The relay may publish again after a crash between confirm and delete:
    // replay every event and check the consumer does not apply any twice.
    let events: Vec<String> = handler.0.lock().unwrap().keys().cloned().collect();
    assert_eq!(stats.get(Outcome::Applied), 20);
    for event_id in &events {
        let env = EventEnvelope {
            event_id: event_id.clone(),
            event_type: "payment.refunded".into(),
            aggregate_id: "a".into(),
            aggregate_version: 9,
            occurred_at: None,
            order_id: "o".into(),
            customer_id: "c".into(),
            payload: Some(Payload::PaymentRefunded(Default::default())),
        };
        app.broker
            .publish_raw(
                "payment.refunded",
                &prost::Message::encode_to_vec(&env),
                Default::default(),
            )
            .await;
    }
    wait_until(
        "replayed events seen as duplicates",
        Duration::from_secs(20),
        || async { (stats.get(Outcome::Duplicate) == 20).then_some(()) },
    )
    .await;
    let seen = handler.0.lock().unwrap().clone();
    assert!(
        seen.values().all(|(_, n)| *n == 1),
        "no event applied twice"
    );
    let mut applied_orders: Vec<String> = seen.into_values().map(|(o, _)| o).collect();
    applied_orders.sort();
    order_ids.sort();
    assert_eq!(
        applied_orders, order_ids,
        "one event per order paid during the outage"
    );
    assert_eq!(stats.get(Outcome::Applied), 20);

    stop.cancel();
    consuming.await.unwrap();
    app.stop().await;
}
