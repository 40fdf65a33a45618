//! `talentshare dlq` as a real process against the real RabbitMQ. Messages reach a
//! dead-letter queue the way they do in production: published to the events exchange
//! and rejected by a consumer (or spent by the delivery limit). `list` shows them and
//! leaves the queue as it was; `replay` moves exactly the chosen events, byte for
//! byte, to their own consumer only; a bare `replay` is refused; a broker failure is
//! one line that hides the password.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use platform::envelope::{CONTENT_TYPE, NewEvent};
use prost::Message;
use talentshare_proto::events::event_envelope::Payload;
use talentshare_proto::events::{EventEnvelope, ReservationRejected};
use testkit::TestBroker;

const BIN: &str = env!("CARGO_BIN_EXE_talentshare");

/// Routing key bound to the `order` consumer's queue (and, like every key, to mypage's).
const TO_ORDER: &str = "reservation.rejected";

/// A body that is no `EventEnvelope` (an invalid protobuf wire type).
const POISON: &[u8] = b"\xff\xffpoison";

async fn talentshare(args: &[&str], broker: Option<&TestBroker>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("AMQP_URL")
        .env_remove("EVENTS_EXCHANGE");
    if let Some(broker) = broker {
        cmd.env("AMQP_URL", testkit::amqp_url())
            .env("EVENTS_EXCHANGE", broker.exchange());
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("talentshare runs"))
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The test's own connection: it plays the publisher and the failing consumer.
struct Bus {
    broker: TestBroker,
    conn: Connection,
    ch: Channel,
}

impl Bus {
    async fn new() -> Self {
        let broker = TestBroker::create().await;
        let conn = Connection::connect(&testkit::amqp_url(), Default::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        Self { broker, conn, ch }
    }

    fn queue(&self) -> String {
        self.broker.topology.queue("order")
    }

    fn dlq(&self) -> String {
        self.broker.topology.dead_letter_queue("order")
    }

    /// Publishes `body` to the events exchange as the outbox relay does; returns once
    /// the broker confirmed it, i.e. it sits in the consumer queues.
    async fn publish(&self, body: &[u8], properties: BasicProperties) {
        let confirm = self
            .ch
            .basic_publish(
                self.broker.exchange().into(),
                TO_ORDER.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack(), "{confirm:?}");
    }

    /// Publishes an event for the order consumer; returns it and its body.
    async fn publish_event(&self, aggregate: &str) -> (EventEnvelope, Vec<u8>) {
        let envelope = NewEvent {
            aggregate_id: aggregate.into(),
            aggregate_version: 2,
            order_id: format!("order-of-{aggregate}"),
            customer_id: "alice".into(),
            payload: Payload::ReservationRejected(ReservationRejected {
                reservation_id: aggregate.into(),
                manager_id: "lee".into(),
                reason: "fully booked".into(),
                payment_id: "p-1".into(),
            }),
        }
        .into_envelope();
        let body = envelope.encode_to_vec();
        let mut headers = FieldTable::default();
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString(platform::envelope::new_traceparent().into()),
        );
        let properties = BasicProperties::default()
            .with_message_id(envelope.event_id.as_str().into())
            .with_type(envelope.event_type.as_str().into())
            .with_content_type(CONTENT_TYPE.into())
            .with_delivery_mode(2)
            .with_headers(headers);
        self.publish(&body, properties).await;
        (envelope, body)
    }

    /// Takes the next message off the order queue, as the consumer would.
    async fn next_delivery(&self) -> lapin::message::BasicGetMessage {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(message) = self
                .ch
                .basic_get(self.queue().as_str().into(), BasicGetOptions::default())
                .await
                .expect("basic.get")
            {
                return message;
            }
            assert!(tokio::time::Instant::now() < deadline, "nothing to take");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The consumer finds the next message poison: rejected without requeue, so the
    /// broker dead-letters it at once.
    async fn reject_next(&self) {
        let message = self.next_delivery().await;
        message
            .delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
    }

    /// The consumer fails the next message until the queue's delivery limit
    /// dead-letters it.
    async fn fail_next_until_dead_lettered(&self, dead_letters_after: u32) {
        for _ in 0..100 {
            let Some(message) = self
                .ch
                .basic_get(self.queue().as_str().into(), BasicGetOptions::default())
                .await
                .expect("basic.get")
            else {
                if self.count(&self.dlq()).await == dead_letters_after {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            message
                .delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .expect("nack");
        }
        panic!("the delivery limit never dead-lettered the message");
    }

    /// Messages ready in `queue`, by a passive declare.
    async fn count(&self, queue: &str) -> u32 {
        self.ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue exists")
            .message_count()
    }

    /// Waits (briefly: settling is asynchronous in a quorum queue) until `queue`
    /// holds `n` ready messages, and returns how many it holds in the end.
    async fn settle(&self, queue: &str, n: u32) -> u32 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let count = self.count(queue).await;
            if count == n || tokio::time::Instant::now() >= deadline {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Two events and one poison body rejected into the order consumer's dead-letter
    /// queue; mypage's copies are purged so its queue starts empty.
    async fn three_dead_letters(&self) -> (EventEnvelope, Vec<u8>, EventEnvelope) {
        let (first, first_body) = self.publish_event("r-1").await;
        self.reject_next().await;
        let (second, _) = self.publish_event("r-2").await;
        self.reject_next().await;
        self.publish(POISON, BasicProperties::default()).await;
        self.reject_next().await;
        assert_eq!(self.settle(&self.dlq(), 3).await, 3, "three dead letters");
        self.broker
            .purge(&self.broker.topology.queue("mypage"))
            .await;
        (first, first_body, second)
    }

    /// Every event id now in `queue` (taken off it), with `<poison>` for bodies that
    /// do not decode.
    async fn drain_ids(&self, queue: &str) -> BTreeSet<String> {
        self.broker
            .drain(queue)
            .await
            .into_iter()
            .map(|m| {
                EventEnvelope::decode(m.body.as_slice())
                    .map_or_else(|_| "<poison>".to_owned(), |e| e.event_id)
            })
            .collect()
    }

    async fn delete(self) {
        let _ = self.conn.close(200, "test done".into()).await;
        self.broker.delete().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_each_dead_letter_with_its_reason_and_leaves_the_queue_as_it_was() {
    // Arrange: one event and a poison body rejected, one event spent by the limit.
    let bus = Bus::new().await;
    let (rejected, _) = bus.publish_event("r-1").await;
    bus.reject_next().await;
    bus.publish(POISON, BasicProperties::default()).await;
    bus.reject_next().await;
    let (spent, _) = bus.publish_event("r-2").await;
    bus.fail_next_until_dead_lettered(3).await;

    // Act
    let table = talentshare(&["dlq", "list", "--consumer", "order"], Some(&bus.broker)).await;
    let json = talentshare(&["dlq", "list", "--json"], Some(&bus.broker)).await;

    // Assert: the table
    let stdout = text(&table.stdout);
    assert!(table.status.success(), "stderr: {}", text(&table.stderr));
    let row = |id: &str| {
        stdout
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{id} in\n{stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let first = row(&rejected.event_id);
    assert_eq!(
        first[..6],
        [
            "order",
            &rejected.event_id,
            "reservation.rejected",
            "r-1",
            "rejected",
            "1"
        ],
        "{stdout}"
    );
    assert!(first[6].ends_with('Z'), "first death time in {stdout}");
    assert_eq!(row(&spent.event_id)[4], "delivery_limit", "{stdout}");
    assert!(
        stdout.contains(&format!("<undecodable: {} bytes>", POISON.len())),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l == "order: 3 dead-lettered (delivery_limit 1, rejected 2)"),
        "{stdout}"
    );

    // Assert: JSON, every consumer, one object per message
    assert!(json.status.success(), "stderr: {}", text(&json.stderr));
    let objects: Vec<serde_json::Value> = text(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 3, "{objects:?}");
    let by_id = |id: &str| {
        objects
            .iter()
            .find(|o| o["event_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {objects:?}"))
    };
    let first = by_id(&rejected.event_id);
    assert_eq!(first["consumer"], "order");
    assert_eq!(first["reason"], "rejected");
    assert_eq!(first["death_count"], 1);
    assert_eq!(first["aggregate_id"], "r-1");
    assert_eq!(by_id(&spent.event_id)["reason"], "delivery_limit");
    let poison = objects
        .iter()
        .find(|o| o["decodable"] == false)
        .expect("the poison body");
    assert_eq!(poison["body_bytes"], POISON.len());
    assert_eq!(poison["reason"], "rejected");

    // Assert: nothing was taken away, nothing went anywhere else
    // Counted at once, not settled: `list` returns only once the broker has them
    // ready again, so an operator's `replay` right after it finds them.
    assert_eq!(bus.count(&bus.dlq()).await, 3, "list removed nothing");
    assert_eq!(bus.count(&bus.queue()).await, 0);
    bus.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_one_event_id_moves_only_that_event_to_its_own_consumer() {
    // Arrange
    let bus = Bus::new().await;
    let (chosen, chosen_body, other) = bus.three_dead_letters().await;
    // Browsed first: a browse requeues, and the replay must not carry what that left.
    let listed = talentshare(&["dlq", "list"], Some(&bus.broker)).await;
    assert!(listed.status.success(), "{}", text(&listed.stderr));

    // Act
    let out = talentshare(
        &[
            "dlq",
            "replay",
            "--consumer",
            "order",
            "--event-id",
            &chosen.event_id,
        ],
        Some(&bus.broker),
    )
    .await;

    // Assert: what it says
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!(
            "replayed {} reservation.rejected aggregate r-1 to {}\n",
            chosen.event_id,
            bus.queue()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("replayed 1 event from")
            && stdout.contains("; 2 kept in the dead-letter queue"),
        "{stdout}"
    );

    // Assert: the consumer queue holds exactly that event, as it was published
    assert_eq!(bus.settle(&bus.queue(), 1).await, 1, "exactly one replayed");
    let received = bus.broker.drain(&bus.queue()).await;
    assert_eq!(received.len(), 1);
    let replayed = &received[0];
    assert_eq!(replayed.body, chosen_body, "same body, byte for byte");
    assert_eq!(replayed.envelope().event_id, chosen.event_id);
    assert_eq!(
        replayed
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str()),
        Some(chosen.event_id.as_str())
    );
    assert_eq!(*replayed.properties.delivery_mode(), Some(2), "persistent");
    let headers = replayed.properties.headers().clone().expect("headers kept");
    assert!(headers.contains_key("traceparent"), "{headers:?}");
    assert!(
        !headers
            .inner()
            .keys()
            .any(|k| k.as_str() == "x-death" || k.as_str().starts_with("x-first-death")),
        "the dead-letter history is dropped: {headers:?}"
    );
    // The browse counted a delivery on the dead-letter queue; that count must not
    // follow the event (the broker may add its own, fresh one).
    assert!(
        matches!(
            headers.inner().get("x-delivery-count"),
            None | Some(AMQPValue::LongLongInt(0))
        ),
        "{headers:?}"
    );
    // Only the consumer that dead-lettered it, not every subscriber of the event.
    assert_eq!(bus.count(&bus.broker.topology.queue("mypage")).await, 0);

    // Assert: the same replay again finds nothing to do, and says so
    let again = talentshare(
        &[
            "dlq",
            "replay",
            "--consumer",
            "order",
            "--event-id",
            &chosen.event_id,
        ],
        Some(&bus.broker),
    )
    .await;
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("already replayed"), "{stderr}");
    assert!(stderr.contains(&chosen.event_id), "{stderr}");
    assert_eq!(bus.count(&bus.queue()).await, 0);

    // Assert: the dead-letter queue keeps the rest
    assert_eq!(bus.settle(&bus.dlq(), 2).await, 2);
    assert_eq!(
        bus.drain_ids(&bus.dlq()).await,
        BTreeSet::from([other.event_id.clone(), "<poison>".to_owned()])
    );
    bus.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_all_moves_every_event_but_the_poison_and_a_dry_run_moves_nothing() {
    // Arrange
    let bus = Bus::new().await;
    let (first, _, second) = bus.three_dead_letters().await;
    let replay_all = ["dlq", "replay", "--consumer", "order", "--all"];

    // Act: a dry run first
    let dry = talentshare(
        &[&replay_all[..], &["--dry-run"]].concat(),
        Some(&bus.broker),
    )
    .await;

    // Assert: it names both events and changes nothing
    let stdout = text(&dry.stdout);
    assert!(dry.status.success(), "stderr: {}", text(&dry.stderr));
    for id in [&first.event_id, &second.event_id] {
        assert!(
            stdout.contains(&format!("would replay {id} ")),
            "{id} in {stdout}"
        );
    }
    assert!(stdout.contains("dry run, nothing changed"), "{stdout}");
    assert_eq!(
        bus.count(&bus.dlq()).await,
        3,
        "ready again the moment the dry run returns"
    );
    assert_eq!(bus.count(&bus.queue()).await, 0);

    // Act: the real thing
    let out = talentshare(&replay_all, Some(&bus.broker)).await;

    // Assert
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        stdout.contains("replayed 2 events")
            && stdout.contains("1 kept in the dead-letter queue (skipped 1 undecodable)"),
        "{stdout}"
    );
    assert_eq!(bus.settle(&bus.queue(), 2).await, 2);
    assert_eq!(
        bus.drain_ids(&bus.queue()).await,
        BTreeSet::from([first.event_id.clone(), second.event_id.clone()])
    );
    assert_eq!(bus.settle(&bus.dlq(), 1).await, 1);
    assert_eq!(
        bus.drain_ids(&bus.dlq()).await,
        BTreeSet::from(["<poison>".to_owned()])
    );
    bus.delete().await;
}

#[tokio::test]
async fn replay_without_event_ids_or_all_is_refused_before_connecting() {
    let out = talentshare(&["dlq", "replay", "--consumer", "order"], None).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--event-id") && stderr.contains("--all"),
        "{stderr}"
    );
    assert!(!stderr.contains("connecting"), "{stderr}");
}

#[tokio::test]
async fn a_broker_failure_is_one_line_without_the_password() {
    const DOWN: &str = "amqp://admin:hunter2@127.0.0.1:1/%2f";
    for args in [
        &["dlq", "list"][..],
        &["dlq", "replay", "--consumer", "order", "--all"],
    ] {
        let out = talentshare(&[args, &["--amqp-url", DOWN]].concat(), None).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(
                "talentshare: connecting to RabbitMQ at amqp://admin:***@127.0.0.1:1/%2f failed"
            ),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{args:?}: {stderr}");
    }

    // An unparsable URL is a usage error that names the flag, never the value.
    let out = talentshare(
        &[
            "dlq",
            "list",
            "--amqp-url",
            "amqp://admin:hunter2@rabbit:notaport/%2f",
        ],
        None,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--amqp-url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn a_missing_dead_letter_queue_is_named_with_what_to_do() {
    let missing = format!("t-missing-{}.events", std::process::id());
    let out = talentshare(
        &[
            "dlq",
            "list",
            "--amqp-url",
            &testkit::amqp_url(),
            "--events-exchange",
            &missing,
        ],
        None,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("queue {missing}.order.dlq is not there")),
        "{stderr}"
    );
    assert!(stderr.contains("talentshare topology"), "{stderr}");
    assert!(!stderr.contains("guest:guest"), "{stderr}");
}
