//! RabbitMQ connection and topology. Every name derives from the events exchange, so
//! one setting (`EVENTS_EXCHANGE`) separates a whole deployment's topology from
//! another's (tests use that to share one broker).
//!
//! Topology, declared idempotently by every publisher and consumer at connect time:
//! - `<exchange>`: durable topic exchange for domain events;
//! - `<exchange>.dlx`: durable direct exchange for dead letters;
//! - per consuming service `<exchange>.<consumer>`: durable quorum queue bound with the
//!   consumer's routing keys; it dead-letters to `<exchange>.dlx` with the consumer's
//!   name as routing key after [`DELIVERY_LIMIT`] failed deliveries;
//! - `<exchange>.<consumer>.dlq`: where those dead letters rest for an operator.
//!
//! Publishers declare the consumers' queues too, so an event published before a
//! consumer has ever started still waits for it.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::settings::SecretUrl;

/// How many times a message may be delivered to a consumer before the broker
/// dead-letters it (quorum queue `x-delivery-limit`). Fixed, because every service
/// declares every queue and the arguments must agree.
pub const DELIVERY_LIMIT: i64 = 10;

/// A consuming service and the routing keys its queue is bound with.
#[derive(Clone, Copy, Debug)]
pub struct ConsumerSpec {
    /// Short name: part of the queue name.
    pub name: &'static str,
    /// Topic patterns bound to its queue.
    pub bindings: &'static [&'static str],
}

/// Every consumer in the system. See DESIGN.md's event catalogue.
pub const CONSUMERS: &[ConsumerSpec] = &[
    ConsumerSpec {
        name: "order",
        bindings: &["reservation.rejected"],
    },
    ConsumerSpec {
        name: "reservation",
        bindings: &["payment.approved", "order.cancelled"],
    },
    ConsumerSpec {
        name: "mypage",
        bindings: &["#"],
    },
];

/// The names of one deployment's exchanges and queues.
#[derive(Clone, Debug)]
pub struct Topology {
    exchange: String,
}

impl Topology {
    /// The topology rooted at `exchange`.
    pub fn new(exchange: impl Into<String>) -> Self {
        Self {
            exchange: exchange.into(),
        }
    }

    /// The events exchange.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The dead-letter exchange.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.exchange)
    }

    /// The queue of consumer `name`.
    pub fn queue(&self, name: &str) -> String {
        format!("{}.{name}", self.exchange)
    }

    /// The dead-letter queue of consumer `name`.
    pub fn dead_letter_queue(&self, name: &str) -> String {
        format!("{}.{name}.dlq", self.exchange)
    }

    /// Declares both exchanges and every consumer's queues and bindings.
    pub async fn declare(&self, ch: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            self.exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.dead_letter_exchange().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        for spec in CONSUMERS {
            self.declare_queue(ch, spec).await?;
        }
        Ok(())
    }

    async fn declare_queue(&self, ch: &Channel, spec: &ConsumerSpec) -> lapin::Result<()> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let queue = self.queue(spec.name);
        let dlq = self.dead_letter_queue(spec.name);
        let mut dlq_args = FieldTable::default();
        dlq_args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        ch.queue_declare(dlq.as_str().into(), durable, dlq_args)
            .await?;
        ch.queue_bind(
            dlq.as_str().into(),
            self.dead_letter_exchange().into(),
            spec.name.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_letter_exchange().into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(spec.name.into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        ch.queue_declare(queue.as_str().into(), durable, args)
            .await?;
        for key in spec.bindings {
            ch.queue_bind(
                queue.as_str().into(),
                self.exchange.as_str().into(),
                ShortString::from(*key),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// Removes every queue and exchange of this topology. For tests, which each use a
    /// topology of their own on the shared broker.
    pub async fn delete(&self, ch: &Channel) -> lapin::Result<()> {
        for spec in CONSUMERS {
            for q in [self.queue(spec.name), self.dead_letter_queue(spec.name)] {
                ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await?;
            }
        }
        for x in [self.exchange.clone(), self.dead_letter_exchange()] {
            ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

/// Whether this process has already said the broker is unreachable. One process
/// runs several relays and consumers (all four services under `talentshare up`);
/// an outage should read as one line, not one per component.
static REPORTED_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Logs that RabbitMQ cannot be reached: a warning the first time in this process,
/// debug afterwards until [`report_reachable`].
pub fn report_unreachable(component: &str, error: &dyn std::fmt::Display) {
    if REPORTED_DOWN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        tracing::debug!(component, error = %error, "RabbitMQ still unreachable");
    } else {
        tracing::warn!(component, error = %error,
            "RabbitMQ unreachable: services keep serving and events wait in the outbox until it is back");
    }
}

/// Logs that RabbitMQ is reachable again (once per recovery in this process).
pub fn report_reachable(component: &str) {
    if REPORTED_DOWN.swap(false, std::sync::atomic::Ordering::SeqCst) {
        tracing::info!(
            component,
            "RabbitMQ reachable again; relaying and consuming events"
        );
    }
}

/// Closes `conn` politely, giving up after two seconds: on a link that is already
/// dead the close handshake would otherwise wait for a reply that never comes.
pub async fn close_quietly(conn: &Connection, reason: &str) {
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        conn.close(200, reason.into()),
    )
    .await;
}

/// Opens a connection named after the service (visible in the broker's UI).
pub async fn connect(url: &SecretUrl, connection_name: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(connection_name.into());
    Connection::connect(url.expose(), props).await
}
