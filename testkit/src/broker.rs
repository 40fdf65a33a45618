//! A per-test topology on the shared RabbitMQ: a unique events exchange (every queue
//! name derives from it), helpers to read what landed in a queue, and clean-up.

use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, QueuePurgeOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use platform::amqp::Topology;
use prost::Message;
use talentshare_proto::events::EventEnvelope;

/// One message read back from a queue.
#[derive(Debug)]
pub struct ReceivedEvent {
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

impl ReceivedEvent {
    /// The decoded envelope (panics if the body is not one).
    pub fn envelope(&self) -> EventEnvelope {
        EventEnvelope::decode(self.body.as_slice()).expect("body decodes as EventEnvelope")
    }
}

/// A topology of the test's own on the shared broker.
pub struct TestBroker {
    pub topology: Topology,
    conn: Connection,
    channel: Channel,
    deleted: bool,
}

impl TestBroker {
    /// Declares a fresh topology named `t-<uuid>.events`.
    pub async fn create() -> Self {
        let exchange = format!("t-{}.events", uuid::Uuid::now_v7().simple());
        let topology = Topology::new(exchange);
        let conn = Connection::connect(&crate::amqp_url(), ConnectionProperties::default())
            .await
            .expect("connect to test RabbitMQ");
        let channel = conn.create_channel().await.expect("channel");
        topology.declare(&channel).await.expect("declare topology");
        Self {
            topology,
            conn,
            channel,
            deleted: false,
        }
    }

    /// The `EVENTS_EXCHANGE` value services must use.
    pub fn exchange(&self) -> &str {
        self.topology.exchange()
    }

    /// The queue mypage-svc reads, bound to every event of the topology: a test of
    /// another service reads what that service published from it.
    pub fn all_events_queue(&self) -> String {
        self.topology.queue("mypage")
    }

    /// Takes (and acks) every message currently in `queue`.
    pub async fn drain(&self, queue: &str) -> Vec<ReceivedEvent> {
        let mut out = Vec::new();
        while let Some(msg) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
        {
            msg.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            out.push(ReceivedEvent {
                routing_key: msg.delivery.routing_key.to_string(),
                properties: msg.delivery.properties.clone(),
                body: msg.delivery.data.clone(),
            });
        }
        out
    }

    /// Waits until `queue` has yielded `n` messages in total (or fails after `timeout`).
    pub async fn collect(&self, queue: &str, n: usize, timeout: Duration) -> Vec<ReceivedEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            got.extend(self.drain(queue).await);
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Publishes a raw body to the events exchange (for duplicate and poison tests).
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8], properties: BasicProperties) {
        self.channel
            .basic_publish(
                self.topology.exchange().into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    /// Declares a private queue bound to every event of the topology (deleted when
    /// this broker handle closes) and returns its name: a copy of all traffic.
    pub async fn tap(&self) -> String {
        let name = format!(
            "{}.tap-{}",
            self.topology.exchange(),
            uuid::Uuid::now_v7().simple()
        );
        self.channel
            .queue_declare(
                name.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .expect("declare tap queue");
        self.channel
            .queue_bind(
                name.as_str().into(),
                self.topology.exchange().into(),
                "#".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .expect("bind tap queue");
        name
    }

    /// Empties `queue`.
    pub async fn purge(&self, queue: &str) {
        self.channel
            .queue_purge(queue.into(), QueuePurgeOptions::default())
            .await
            .expect("purge");
    }

    /// Deletes the topology from the broker.
    pub async fn delete(mut self) {
        let _ = self.topology.delete(&self.channel).await;
        let _ = self.conn.close(200, "test done".into()).await;
        self.deleted = true;
    }
}

impl Drop for TestBroker {
    /// A test that panicked (or forgot) still removes its queues from the shared
    /// broker. Drop cannot await, so a short-lived thread with its own runtime does it.
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let topology = self.topology.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(conn) =
                    Connection::connect(&crate::amqp_url(), ConnectionProperties::default()).await
                {
                    if let Ok(ch) = conn.create_channel().await {
                        let _ = topology.delete(&ch).await;
                    }
                    let _ = conn.close(200, "test dropped".into()).await;
                }
            });
        })
        .join();
    }
}
