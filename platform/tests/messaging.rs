//! The consumer runner and the outbox relay against the real RabbitMQ and databases:
//! dead-lettering of poison and of permanently failing events, bounded retries, a
//! database outage that pauses consumption without spending delivery attempts,
//! reconnection after the broker link drops, and several relays sharing one outbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use platform::consumer::{Consumer, EventHandler, HandlerError, Outcome};
use platform::envelope::NewEvent;
use platform::outbox::{self, OutboxSignal, Relay};
use platform::settings::MessagingSettings;
use prost::Message;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use sea_orm_migration::prelude::*;
use talentshare_proto::events::{EventEnvelope, PaymentRefunded, event_envelope::Payload};
use testkit::{Backend, TcpProxy, TestBroker, TestDatabase, wait_until};
use tokio_util::sync::CancellationToken;

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

fn messaging(exchange: &str, amqp_url: &str) -> MessagingSettings {
    Args::try_parse_from([
        "t",
        "--events-exchange",
        exchange,
        "--amqp-url",
        amqp_url,
        "--consumer-retry-max-delay",
        "50ms",
        "--outbox-poll-interval",
        "100ms",
        "--outbox-batch-size",
        "7",
    ])
    .unwrap()
    .messaging
}

async fn migrated(backend: Backend) -> (TestDatabase, DatabaseConnection) {
    let db = TestDatabase::create(backend).await;
    let conn = platform::db::connect_url(&db.url().parse().unwrap(), 10)
        .await
        .unwrap();
    PlatformTables::up(&conn, None).await.unwrap();
    (db, conn)
}

fn event(n: i64) -> NewEvent {
    NewEvent {
        aggregate_id: format!("agg-{n}"),
        aggregate_version: 1,
        order_id: format!("order-{n}"),
        customer_id: "cust".into(),
        payload: Payload::PaymentRefunded(PaymentRefunded {
            payment_id: format!("p-{n}"),
            amount_minor: n,
            currency: "USD".into(),
            reason: String::new(),
        }),
    }
}

/// Fails as told per aggregate id: `Permanent` for "agg-perm", transient for the
/// first two tries of "agg-flaky", transient forever for "agg-broken". Counts what
/// committed (a handler's effects live in the transaction: one rolled back with
/// its batch never happened).
#[derive(Clone, Default)]
struct ScriptedHandler {
    applied: Arc<Mutex<HashMap<String, u32>>>,
    flaky_failures: Arc<AtomicU32>,
}

impl EventHandler for ScriptedHandler {
    async fn handle(
        &self,
        _txn: &DatabaseTransaction,
        e: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        match e.aggregate_id.as_str() {
            "agg-perm" => Err(HandlerError::Permanent(anyhow::anyhow!(
                "contradicts state"
            ))),
            "agg-broken" => Err(HandlerError::Transient(anyhow::anyhow!("always down"))),
            "agg-flaky" if self.flaky_failures.load(Ordering::SeqCst) < 2 => {
                self.flaky_failures.fetch_add(1, Ordering::SeqCst);
                Err(HandlerError::Transient(anyhow::anyhow!("briefly down")))
            }
            _ => Ok(()),
        }
    }

    fn committed(&self, e: &EventEnvelope) {
        *self
            .applied
            .lock()
            .unwrap()
            .entry(e.event_id.clone())
            .or_default() += 1;
    }
}

fn sealed(aggregate: &str) -> Vec<u8> {
    let mut e = event(1);
    e.aggregate_id = aggregate.into();
    e.into_envelope().encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_dead_letters_poison_and_failing_events_and_goes_on() {
    let broker = TestBroker::create().await;
    let (_db, conn) = migrated(Backend::Sqlite).await;
    let handler = ScriptedHandler::default();
    let consumer = Consumer::new(
        "mypage",
        handler.clone(),
        conn,
        messaging(broker.exchange(), &testkit::amqp_url()),
        OutboxSignal::new(),
    );
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let running = tokio::spawn(consumer.run(stop.clone()));

    let mut unknown_type = event(2).into_envelope();
    unknown_type.payload = None;
    unknown_type.event_type = "payment.teleported".into();
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\xff\x00 not protobuf at all".to_vec()),
        ("unknown type", unknown_type.encode_to_vec()),
        ("permanent failure", sealed("agg-perm")),
        ("transient forever", sealed("agg-broken")),
    ];
    for (_, body) in &poison {
        broker
            .publish_raw("payment.refunded", body, Default::default())
            .await;
    }
    broker
        .publish_raw("payment.refunded", &sealed("agg-flaky"), Default::default())
        .await;
    broker
        .publish_raw("payment.refunded", &sealed("agg-fine"), Default::default())
        .await;

    let dlq = broker.topology.dead_letter_queue("mypage");
    let dead = broker
        .collect(&dlq, poison.len(), Duration::from_secs(30))
        .await;
    assert_eq!(
        dead.len(),
        poison.len(),
        "every poison message is dead-lettered"
    );
    wait_until(
        "flaky and fine events applied",
        Duration::from_secs(10),
        || async { (handler.applied.lock().unwrap().len() == 2).then_some(()) },
    )
    .await;
    assert!(handler.applied.lock().unwrap().values().all(|&n| n == 1));
    assert_eq!(
        handler.flaky_failures.load(Ordering::SeqCst),
        2,
        "failed twice, then applied"
    );
    // The broker dead-letters "transient forever" after its delivery limit.
    assert!(stats.get(Outcome::Requeued) >= platform::amqp::DELIVERY_LIMIT as u64);
    assert_eq!(stats.get(Outcome::Applied), 2);

    stop.cancel();
    running.await.unwrap();
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_longer_than_the_delivery_limit_pauses_the_consumer_and_dead_letters_nothing()
 {
    let broker = TestBroker::create().await;
    let (db, direct) = migrated(Backend::Postgres).await;
    let _ = direct.close().await;
    // The consumer reaches PostgreSQL through a proxy the test cuts. Short pool waits,
    // so every attempt during the outage fails fast: ten of them, at 50 ms retries,
    // would take a couple of seconds, and the outage lasts longer than that.
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let mut url = url::Url::parse(db.url()).expect("database URL");
    url.set_port(Some(proxy.addr().port())).unwrap();
    let mut opts = sea_orm::ConnectOptions::new(url.to_string());
    opts.max_connections(2)
        .min_connections(0)
        .connect_timeout(Duration::from_millis(500))
        .acquire_timeout(Duration::from_millis(500))
        .sqlx_logging(false);
    let conn = sea_orm::Database::connect(opts).await.expect("pool");
    let handler = ScriptedHandler::default();
    let metrics = platform::metrics::Metrics::new("test", None);
    let consumer = Consumer::new(
        "mypage",
        handler.clone(),
        conn,
        messaging(broker.exchange(), &testkit::amqp_url()),
        OutboxSignal::new(),
    )
    .with_metrics(metrics.clone());
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let running = tokio::spawn(consumer.run(stop.clone()));

    broker
        .publish_raw("payment.refunded", &sealed("agg-a"), Default::default())
        .await;
    wait_until("first event applied", Duration::from_secs(10), || async {
        (handler.applied.lock().unwrap().len() == 1).then_some(())
    })
    .await;

    proxy.cut().await;
    for aggregate in ["agg-b", "agg-c"] {
        broker
            .publish_raw("payment.refunded", &sealed(aggregate), Default::default())
            .await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        handler.applied.lock().unwrap().len(),
        1,
        "nothing applied while down"
    );
    assert_eq!(stats.get(Outcome::Requeued), 0, "no delivery attempt spent");
    // The metrics show it stuck: the deliveries held for seconds (counted every 5 s,
    // beside the consuming loop, which is blocked).
    let held: f64 = metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("event_in_hand_seconds{queue=\"mypage\"} "))
        .and_then(|v| v.parse().ok())
        .expect("event_in_hand_seconds counted");
    assert!(held >= 1.0, "held {held} s while the database was away");

    proxy.restore().await;
    wait_until(
        "the events held through the outage applied",
        Duration::from_secs(30),
        || async { (handler.applied.lock().unwrap().len() == 3).then_some(()) },
    )
    .await;
    let dlq = broker.topology.dead_letter_queue("mypage");
    assert!(
        broker
            .collect(&dlq, 1, Duration::from_secs(2))
            .await
            .is_empty(),
        "a good event is never dead-lettered because of our own outage"
    );
    // A commit cut off by the outage may have landed anyway: its retry is then a
    // duplicate the inbox recognises, which is fine. Nothing else may happen.
    let seen = [
        Outcome::Applied,
        Outcome::Duplicate,
        Outcome::DeadLettered,
        Outcome::Requeued,
    ]
    .map(|o| stats.get(o));
    assert_eq!(
        seen[0] + seen[1],
        3,
        "applied+duplicate, dead-lettered, requeued: {seen:?}"
    );
    assert_eq!(
        &seen[2..],
        &[0, 0],
        "applied+duplicate, dead-lettered, requeued: {seen:?}"
    );

    stop.cancel();
    running.await.unwrap();
    broker.delete().await;
    db.drop_database().await;
}

/// A backlog is applied in batches (one transaction and one multiple-ack each),
/// and a batch holding poison, a permanently failing event and a redelivered
/// duplicate keeps every other event exactly once and dead-letters exactly the bad
/// ones, as one-by-one handling would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_applied_in_batches_and_a_bad_event_in_a_batch_costs_nothing_else() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let broker = TestBroker::create().await;
        let (_db, conn) = migrated(backend).await;
        // Everything is queued before the consumer starts, so deliveries arrive
        // together and are taken as batches.
        let fine: Vec<Vec<u8>> = (0..300)
            .map(|n| event(n).into_envelope().encode_to_vec())
            .collect();
        let bad = [b"\xff\x00 not protobuf at all".to_vec(), sealed("agg-perm")];
        for (i, body) in fine.iter().enumerate() {
            broker
                .publish_raw("payment.refunded", body, Default::default())
                .await;
            if i == 100 || i == 200 {
                // A redelivery of an event already in this stretch of the queue.
                broker
                    .publish_raw("payment.refunded", &fine[i - 1], Default::default())
                    .await;
            }
            if i == 150 {
                for body in &bad {
                    broker
                        .publish_raw("payment.refunded", body, Default::default())
                        .await;
                }
            }
        }
        let handler = ScriptedHandler::default();
        let metrics = platform::metrics::Metrics::new("test", None);
        let consumer = Consumer::new(
            "mypage",
            handler.clone(),
            conn.clone(),
            messaging(broker.exchange(), &testkit::amqp_url()),
            OutboxSignal::new(),
        )
        .with_metrics(metrics.clone());
        let stats = consumer.stats();
        let stop = CancellationToken::new();
        let running = tokio::spawn(consumer.run(stop.clone()));

        // The consumer counts its dead-letter queue for the metrics (every 5 s).
        let resting = format!(
            "dead_letter_queue_messages{{queue=\"mypage\"}} {}",
            bad.len()
        );
        wait_until(
            "the dead letters counted in the metrics",
            Duration::from_secs(30),
            || async { metrics.encode().lines().any(|l| l == resting).then_some(()) },
        )
        .await;
        // Counted with it: the messages still waiting in the queue itself.
        assert!(
            metrics
                .encode()
                .lines()
                .any(|l| l.starts_with("event_queue_messages{queue=\"mypage\"} ")),
            "{backend:?}: the queue's depth is counted too"
        );
        let dlq = broker.topology.dead_letter_queue("mypage");
        let dead = broker
            .collect(&dlq, bad.len(), Duration::from_secs(30))
            .await;
        assert_eq!(
            dead.len(),
            bad.len(),
            "{backend:?}: exactly the bad ones dead-lettered"
        );
        wait_until(
            "every good event applied",
            Duration::from_secs(30),
            || async { (handler.applied.lock().unwrap().len() == fine.len()).then_some(()) },
        )
        .await;
        assert!(
            handler.applied.lock().unwrap().values().all(|&n| n == 1),
            "{backend:?}: each good event committed once"
        );
        assert_eq!(stats.get(Outcome::Applied), fine.len() as u64);
        assert_eq!(
            stats.get(Outcome::Duplicate),
            2,
            "{backend:?}: both redeliveries seen"
        );
        assert_eq!(stats.get(Outcome::DeadLettered), bad.len() as u64);
        let batches = stats.batches.load(Ordering::Relaxed);
        assert!(
            batches > 0 && batches < fine.len() as u64 / 4,
            "{backend:?}: 300 queued events took {batches} batch transactions"
        );
        let inbox = <platform::consumer::entity::Entity as sea_orm::EntityTrait>::find()
            .all(&conn)
            .await
            .unwrap();
        assert_eq!(
            inbox.len(),
            fine.len(),
            "{backend:?}: one inbox row per good event"
        );
        // Nothing is left unacknowledged: the queue is empty once all is applied.
        assert!(broker.drain(&broker.all_events_queue()).await.is_empty());

        // The metrics say the same, by event type and outcome.
        let text = metrics.encode();
        for (event_type, outcome, n) in [
            ("payment.refunded", "applied", fine.len()),
            ("payment.refunded", "duplicate", 2),
            ("payment.refunded", "dead_lettered", 1),
            ("undecodable", "dead_lettered", 1),
        ] {
            let line = format!(
                "events_consumed_total{{queue=\"mypage\",event_type=\"{event_type}\",outcome=\"{outcome}\"}} {n}"
            );
            assert!(
                text.lines().any(|l| l == line),
                "{backend:?}: no `{line}` in\n{text}"
            );
        }
        let lag = format!("event_lag_seconds_count{{queue=\"mypage\"}} {}", fine.len());
        assert!(
            text.lines().any(|l| l == lag),
            "{backend:?}: one lag per applied event"
        );

        stop.cancel();
        running.await.unwrap();
        broker.delete().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_reconnects_after_the_broker_link_drops() {
    let broker = TestBroker::create().await;
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let (_db, conn) = migrated(Backend::Sqlite).await;
    let handler = ScriptedHandler::default();
    let amqp = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let consumer = Consumer::new(
        "mypage",
        handler.clone(),
        conn,
        messaging(broker.exchange(), &amqp),
        OutboxSignal::new(),
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(consumer.run(stop.clone()));

    broker
        .publish_raw("payment.refunded", &sealed("agg-a"), Default::default())
        .await;
    wait_until("first event applied", Duration::from_secs(10), || async {
        (handler.applied.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    proxy.cut().await;
    broker
        .publish_raw("payment.refunded", &sealed("agg-b"), Default::default())
        .await;
    proxy.restore().await;
    wait_until(
        "event published during the outage applied",
        Duration::from_secs(30),
        || async { (handler.applied.lock().unwrap().len() == 2).then_some(()) },
    )
    .await;

    stop.cancel();
    running.await.unwrap();
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_on_one_postgres_outbox_publish_each_event_exactly_once() {
    let broker = TestBroker::create().await;
    let (db, conn) = migrated(Backend::Postgres).await;
    let txn = conn.begin().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..300 {
        ids.push(outbox::enqueue(&txn, event(n)).await.unwrap().event_id);
    }
    txn.commit().await.unwrap();

    let stop = CancellationToken::new();
    let relays: Vec<_> = (0..3)
        .map(|i| {
            let relay = Relay::new(
                conn.clone(),
                messaging(broker.exchange(), &testkit::amqp_url()),
                OutboxSignal::new(),
                &format!("replica-{i}"),
            );
            tokio::spawn(relay.run(stop.clone()))
        })
        .collect();
    wait_until("outbox drained", Duration::from_secs(30), || async {
        (outbox::pending(&conn).await.unwrap() == 0).then_some(())
    })
    .await;
    stop.cancel();
    for r in relays {
        r.await.unwrap();
    }

    let got = broker.drain(&broker.topology.queue("mypage")).await;
    let mut published: Vec<String> = got.iter().map(|m| m.envelope().event_id).collect();
    published.sort();
    ids.sort();
    assert_eq!(published, ids, "each event exactly once");
    broker.delete().await;
    db.drop_database().await;
}

/// A connection proposes `amqp::FRAME_MAX` (lapin keeps 32 frames of read and of write
/// buffer per connection, so the broker's 128 KiB default would hold 8 MiB each), a
/// `frame_max` in the URL still wins, and a message far larger than a frame goes
/// through whole, split into frames.
#[tokio::test]
async fn connections_use_small_frames_unless_the_url_says_otherwise_and_large_messages_still_pass()
{
    use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;

    let url: platform::settings::SecretUrl = testkit::amqp_url().parse().expect("AMQP URL");
    let conn = platform::amqp::connect(&url, "frame-test")
        .await
        .expect("connect");
    assert_eq!(
        conn.configuration().frame_max(),
        platform::amqp::FRAME_MAX,
        "the broker accepted the proposed frame size"
    );

    let channel = conn.create_channel().await.expect("channel");
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    channel
        .basic_publish(
            "".into(),
            queue.name().as_str().into(),
            BasicPublishOptions::default(),
            &body,
            lapin::BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("published");
    let got = wait_until("the large message arrives", Duration::from_secs(10), || {
        let channel = channel.clone();
        let queue = queue.name().as_str().to_owned();
        async move {
            channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    assert_eq!(
        got.delivery.data, body,
        "200 kB arrived whole over 16 KiB frames"
    );
    conn.close(200, "done".into()).await.expect("close");

    let separator = if testkit::amqp_url().contains('?') {
        '&'
    } else {
        '?'
    };
    let url: platform::settings::SecretUrl =
        format!("{}{separator}frame_max=65536", testkit::amqp_url())
            .parse()
            .expect("AMQP URL");
    let conn = platform::amqp::connect(&url, "frame-test")
        .await
        .expect("connect");
    assert_eq!(
        conn.configuration().frame_max(),
        65_536,
        "the URL's frame_max wins"
    );
    conn.close(200, "done".into()).await.expect("close");
}

/// Event evolution on the real broker: a routing key no consumer handles yet (a new
/// event type) lands in no queue and no dead-letter queue, while a known key reaches
/// exactly its consumers; and declaring the topology over a queue an earlier version
/// bound with `#` removes that wildcard.
#[tokio::test]
async fn a_new_event_type_reaches_no_consumer_and_the_old_wildcard_is_unbound() {
    let broker = TestBroker::create().await;
    let topology = broker.topology.clone();
    let conn = lapin::Connection::connect(&testkit::amqp_url(), Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    // What an earlier version left behind: my page's queue bound to everything.
    ch.queue_bind(
        topology.queue("mypage").as_str().into(),
        topology.exchange().into(),
        "#".into(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    topology.declare(&ch).await.unwrap();

    let props = lapin::BasicProperties::default();
    broker
        .publish_raw("order.renamed", b"from a newer publisher", props.clone())
        .await;
    broker.publish_raw("order.placed", b"known", props).await;

    // A quorum queue's reported depth may lag its confirms, so read the messages
    // themselves: my page's queue gets order.placed (waiting a moment for anything
    // else), and once it has, no other queue holds anything.
    let got = broker
        .collect(&topology.queue("mypage"), 2, Duration::from_secs(3))
        .await;
    let keys: Vec<&str> = got.iter().map(|m| m.routing_key.as_str()).collect();
    assert_eq!(keys, ["order.placed"], "only order.placed reached my page");
    for queue in [
        topology.queue("order"),
        topology.queue("reservation"),
        topology.dead_letter_queue("order"),
        topology.dead_letter_queue("reservation"),
        topology.dead_letter_queue("mypage"),
    ] {
        assert!(
            broker.drain(&queue).await.is_empty(),
            "{queue} holds nothing"
        );
    }
    let _ = conn.close(200, "done".into()).await;
    broker.delete().await;
}
