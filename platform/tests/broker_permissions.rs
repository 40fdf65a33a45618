//! Least privilege on the real RabbitMQ: each service's own user, with exactly the
//! permissions of `platform::amqp::Topology::permissions` (granted with the same
//! `rabbitmqctl` commands `talentshare topology --print-permissions` prints), may
//! publish only its own routing keys, read only its own queue and declare nothing;
//! and with `AMQP_DECLARE_TOPOLOGY=false` the outbox relay and the consumer run on
//! such users, waiting (not failing) until an admin has declared the topology.
//!
//! Each test gets its own vhost and its own users (unique names), removed by a drop
//! guard even when the test panics. Needs `rabbitmqctl` on PATH with rights on the
//! local node (root, or the rabbitmq user).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use lapin::options::{BasicConsumeOptions, BasicGetOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use platform::amqp::{self, SetupError};
use platform::consumer::{Consumer, EventHandler, HandlerError};
use platform::envelope::NewEvent;
use platform::outbox::{self, OutboxSignal, Relay};
use platform::settings::MessagingSettings;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use sea_orm_migration::prelude::*;
use talentshare_proto::events::{EventEnvelope, ReservationRejected, event_envelope::Payload};
use testkit::{Backend, TestDatabase, wait_until};
use tokio_util::sync::CancellationToken;

use testkit::{BrokerUsers, USERS_EXCHANGE as EXCHANGE};

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect to the test RabbitMQ")
}

/// Publishes one message with publisher confirms; `Ok(true)` when the broker acked it.
async fn publish(url: &str, exchange: &str, routing_key: &str) -> Result<bool, lapin::Error> {
    let conn = connect(url).await;
    let result = async {
        let ch = conn.create_channel().await?;
        ch.confirm_select(Default::default()).await?;
        let confirm = ch
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                b"permission probe",
                BasicProperties::default(),
            )
            .await?
            .await?;
        // A refused publish closes the channel; the confirm future may settle before
        // the close arrives, so make one more round trip to see it.
        ch.basic_qos(1, Default::default()).await?;
        Ok(confirm.is_ack())
    }
    .await;
    let _ = conn.close(200, "probe done".into()).await;
    result
}

/// Starts consuming `queue`; the consumer is cancelled when the connection closes.
async fn consume(url: &str, queue: &str) -> Result<(), lapin::Error> {
    let conn = connect(url).await;
    let result = async {
        let ch = conn.create_channel().await?;
        ch.basic_consume(
            queue.into(),
            "permission-probe".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }
    .await;
    let _ = conn.close(200, "probe done".into()).await;
    result
}

fn assert_refused<T: std::fmt::Debug>(what: &str, result: Result<T, lapin::Error>) {
    match result {
        Err(e) if amqp::is_access_refused(&e) => {}
        other => panic!("{what}: expected ACCESS_REFUSED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_user_may_only_publish_its_events_and_read_its_queue() {
    let users = BrokerUsers::create(&["order-svc", "payment-svc", "reservation-svc", "mypage-svc"]);
    users.declare_topology().await;
    let topo = &users.topology;

    // Publishing: only the service's own aggregate, and mypage-svc nothing at all.
    assert_refused(
        "mypage-svc publishing payment.approved",
        publish(
            &users.service_url("mypage-svc"),
            EXCHANGE,
            "payment.approved",
        )
        .await,
    );
    assert!(
        publish(
            &users.service_url("payment-svc"),
            EXCHANGE,
            "payment.approved"
        )
        .await
        .expect("payment-svc may publish payment.approved"),
        "the broker confirms it"
    );
    assert_refused(
        "payment-svc publishing order.placed",
        publish(&users.service_url("payment-svc"), EXCHANGE, "order.placed").await,
    );
    assert_refused(
        "order-svc publishing payment.approved",
        publish(
            &users.service_url("order-svc"),
            EXCHANGE,
            "payment.approved",
        )
        .await,
    );
    assert_refused(
        "order-svc publishing to the dead-letter exchange",
        publish(
            &users.service_url("order-svc"),
            &topo.dead_letter_exchange(),
            "mypage",
        )
        .await,
    );
    assert!(
        publish(&users.service_url("order-svc"), EXCHANGE, "order.placed")
            .await
            .expect("order-svc may publish order.placed")
    );

    // The confirmed payment.approved reached reservation's queue (topology bindings).
    let admin = connect(&users.admin_url()).await;
    let ch = admin.create_channel().await.unwrap();
    let got = ch
        .basic_get(
            topo.queue("reservation").as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("payment.approved waits in reservation's queue");
    assert_eq!(got.delivery.routing_key.as_str(), "payment.approved");

    // Reading: each consumer its own queue only; payment-svc no queue.
    assert_refused(
        "order-svc consuming mypage's queue",
        consume(&users.service_url("order-svc"), &topo.queue("mypage")).await,
    );
    assert_refused(
        "payment-svc consuming reservation's queue",
        consume(
            &users.service_url("payment-svc"),
            &topo.queue("reservation"),
        )
        .await,
    );
    assert_refused(
        "mypage-svc consuming its dead-letter queue",
        consume(
            &users.service_url("mypage-svc"),
            &topo.dead_letter_queue("mypage"),
        )
        .await,
    );
    for (service, queue) in [
        ("order-svc", "order"),
        ("reservation-svc", "reservation"),
        ("mypage-svc", "mypage"),
    ] {
        consume(&users.service_url(service), &topo.queue(queue))
            .await
            .unwrap_or_else(|e| panic!("{service} consumes its own queue: {e}"));
    }

    // Declaring: refused for a service user, and `prepare` says what to do about it;
    // the passive check needs no permission and passes.
    let conn = connect(&users.service_url("reservation-svc")).await;
    match amqp::prepare(&conn, topo, true).await {
        Err(e @ SetupError::DeclareRefused(_)) => {
            let msg = e.to_string();
            assert!(msg.contains("AMQP_DECLARE_TOPOLOGY=false"), "{msg}");
            assert!(msg.contains("talentshare topology"), "{msg}");
        }
        other => panic!("expected DeclareRefused, got {other:?}"),
    }
    let conn = connect(&users.service_url("reservation-svc")).await;
    amqp::prepare(&conn, topo, false)
        .await
        .expect("the passive check passes on the declared topology");
    let _ = conn.close(200, "done".into()).await;
    let _ = admin.close(200, "done".into()).await;
}

// ---- the platform relay and consumer on restricted users ----

struct PlatformTables;

impl MigratorTrait for PlatformTables {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(platform::migrations::CreateOutbox),
            Box::new(platform::migrations::CreateInbox),
        ]
    }
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    messaging: MessagingSettings,
}

/// The messaging settings of a service in production: its own user, no declaring.
fn restricted(amqp_url: &str) -> MessagingSettings {
    Args::try_parse_from([
        "t",
        "--amqp-url",
        amqp_url,
        "--events-exchange",
        EXCHANGE,
        "--amqp-declare-topology",
        "false",
        "--outbox-poll-interval",
        "100ms",
    ])
    .unwrap()
    .messaging
}

async fn migrated() -> (TestDatabase, DatabaseConnection) {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let conn = platform::db::connect_url(&db.url().parse().unwrap(), 10)
        .await
        .unwrap();
    PlatformTables::up(&conn, None).await.unwrap();
    (db, conn)
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<HashSet<String>>>);

impl EventHandler for Recorder {
    async fn handle(&self, _: &DatabaseTransaction, e: &EventEnvelope) -> Result<(), HandlerError> {
        self.0.lock().unwrap().insert(e.event_id.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_relay_and_consumer_wait_for_the_topology_then_deliver() {
    let users = BrokerUsers::create(&["order-svc", "reservation-svc"]);

    // Before the topology step: the passive check names everything that is missing.
    let conn = connect(&users.service_url("order-svc")).await;
    match amqp::prepare(&conn, &users.topology, false).await {
        Err(e @ SetupError::TopologyMissing(_)) => {
            let msg = e.to_string();
            for name in [
                format!("exchange `{EXCHANGE}`"),
                format!("queue `{}`", users.topology.queue("order")),
                format!("queue `{}`", users.topology.dead_letter_queue("mypage")),
            ] {
                assert!(msg.contains(&name), "{name} missing from: {msg}");
            }
            assert!(msg.contains("talentshare topology"), "{msg}");
        }
        other => panic!("expected TopologyMissing, got {other:?}"),
    }
    let _ = conn.close(200, "done".into()).await;

    // reservation-svc's relay publishes reservation.rejected; order-svc consumes it.
    let (_rdb, reservation_db) = migrated().await;
    let (_odb, order_db) = migrated().await;
    let signal = OutboxSignal::new();
    let relay = Relay::new(
        reservation_db.clone(),
        restricted(&users.service_url("reservation-svc")),
        signal.clone(),
        "reservation",
    );
    let received = Recorder::default();
    let consumer = Consumer::new(
        "order",
        received.clone(),
        order_db,
        restricted(&users.service_url("order-svc")),
        OutboxSignal::new(),
    );
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    let consumer_task = tokio::spawn(consumer.run(stop.clone()));

    let event = outbox::enqueue(
        &reservation_db,
        NewEvent {
            aggregate_id: "r-1".into(),
            aggregate_version: 2,
            order_id: "o-1".into(),
            customer_id: "alice".into(),
            payload: Payload::ReservationRejected(ReservationRejected {
                reservation_id: "r-1".into(),
                ..Default::default()
            }),
        },
    )
    .await
    .unwrap();
    signal.wake();

    // Without the topology nothing moves, and nothing gives up either.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(outbox::pending(&reservation_db).await.unwrap(), 1);
    assert!(received.0.lock().unwrap().is_empty());
    assert!(!relay_task.is_finished() && !consumer_task.is_finished());

    users.declare_topology().await;
    wait_until(
        "order-svc's consumer receives reservation.rejected",
        Duration::from_secs(20),
        || async {
            received
                .0
                .lock()
                .unwrap()
                .contains(&event.event_id)
                .then_some(())
        },
    )
    .await;
    // The relay deletes the row after the broker's confirm, which can come after the
    // consumer already has the event.
    wait_until(
        "the relay clears its outbox",
        Duration::from_secs(10),
        || async { (outbox::pending(&reservation_db).await.unwrap() == 0).then_some(()) },
    )
    .await;

    stop.cancel();
    relay_task.await.unwrap();
    consumer_task.await.unwrap();
}
