//! RabbitMQ connection, topology and the permissions each service needs. Every name
//! derives from the events exchange, so one setting (`EVENTS_EXCHANGE`) separates a
//! whole deployment's topology from another's (tests use that to share one broker).
//!
//! Topology:
//! - `<exchange>`: durable topic exchange for domain events;
//! - `<exchange>.dlx`: durable direct exchange for dead letters;
//! - per consuming service `<exchange>.<consumer>`: durable quorum queue bound with the
//!   exact routing keys the consumer handles, never a wildcard, so an event type added
//!   later reaches no consumer (and no dead-letter queue) until one binds its key; it
//!   dead-letters to `<exchange>.dlx` with the consumer's
//!   name as routing key after [`DELIVERY_LIMIT`] failed deliveries;
//! - `<exchange>.<consumer>.dlq`: where those dead letters rest for an operator.
//!
//! Who declares it: with `AMQP_DECLARE_TOPOLOGY=true` (the default, for local runs and
//! tests) every publisher and consumer declares the whole topology idempotently at
//! connect time; publishers declare the consumers' queues too, so an event published
//! before a consumer has ever started still waits for it. In production each service
//! connects as its own user without configure permission ([`SERVICES`],
//! [`Topology::permissions`]); `talentshare topology` declares everything once with an
//! admin user, and the services only check that it is there ([`Topology::check`]).
//! Both paths go through [`prepare`].

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind, ExchangeKind};

use crate::settings::SecretUrl;

/// How many times a message may be delivered to a consumer before the broker
/// dead-letters it (quorum queue `x-delivery-limit`). Fixed, because every service
/// declares every queue and the arguments must agree.
pub const DELIVERY_LIMIT: i64 = 10;

/// Every routing key the services publish: the event catalogue of
/// `talentshare/events/v1/events.proto` (one per payload, see
/// `envelope::routing_key`).
pub const ROUTING_KEYS: &[&str] = &[
    "order.placed",
    "order.paid",
    "order.payment_declined",
    "order.cancelled",
    "order.rejected",
    "payment.approved",
    "payment.declined",
    "payment.refunded",
    "reservation.requested",
    "reservation.confirmed",
    "reservation.rejected",
    "reservation.cancelled",
];

/// A consuming service and the routing keys its queue is bound with.
#[derive(Clone, Copy, Debug)]
pub struct ConsumerSpec {
    /// Short name: part of the queue name.
    pub name: &'static str,
    /// The routing keys it handles, bound to its queue: exact keys from
    /// [`ROUTING_KEYS`], no wildcards.
    pub bindings: &'static [&'static str],
    /// Binding keys earlier versions bound its queue with; declaring the topology
    /// removes them, so an upgraded deployment stops receiving what it no longer
    /// handles.
    pub retired_bindings: &'static [&'static str],
}

/// Every consumer in the system. See DESIGN.md's event catalogue.
pub const CONSUMERS: &[ConsumerSpec] = &[
    ConsumerSpec {
        name: "order",
        bindings: &["reservation.rejected"],
        retired_bindings: &[],
    },
    ConsumerSpec {
        name: "reservation",
        bindings: &["payment.approved", "order.cancelled"],
        retired_bindings: &[],
    },
    ConsumerSpec {
        name: "mypage",
        // My page applies every event of the catalogue today, but binds them one by
        // one: a wildcard would route a type it does not know to its dead letters.
        bindings: ROUTING_KEYS,
        retired_bindings: &["#"],
    },
];

/// A service's place on the broker: which events it publishes and which queue it
/// reads. [`Topology::permissions`] turns it into the RabbitMQ permissions of the
/// service's own user, so the docs, `talentshare topology --print-permissions` and
/// the permission test all read them from here.
#[derive(Clone, Copy, Debug)]
pub struct ServiceAccess {
    /// The service, also the suggested RabbitMQ user name (`order-svc`).
    pub service: &'static str,
    /// Aggregate whose events it publishes (`order` → routing keys `order.*`);
    /// `None` when it publishes nothing.
    pub publishes: Option<&'static str>,
    /// The queue it consumes, as a [`ConsumerSpec::name`]; `None` when it reads none.
    pub consumes: Option<&'static str>,
}

/// Every service and its broker access. A service publishes only its own
/// aggregate's events (see `envelope::routing_key`).
pub const SERVICES: &[ServiceAccess] = &[ORDER_SVC, PAYMENT_SVC, RESERVATION_SVC, MYPAGE_SVC];

/// order-svc on the broker.
pub const ORDER_SVC: ServiceAccess = ServiceAccess {
    service: "order-svc",
    publishes: Some("order"),
    consumes: Some("order"),
};

/// payment-svc on the broker.
pub const PAYMENT_SVC: ServiceAccess = ServiceAccess {
    service: "payment-svc",
    publishes: Some("payment"),
    consumes: None,
};

/// reservation-svc on the broker.
pub const RESERVATION_SVC: ServiceAccess = ServiceAccess {
    service: "reservation-svc",
    publishes: Some("reservation"),
    consumes: Some("reservation"),
};

/// mypage-svc on the broker: a read model, it publishes nothing.
pub const MYPAGE_SVC: ServiceAccess = ServiceAccess {
    service: "mypage-svc",
    publishes: None,
    consumes: Some("mypage"),
};

/// The RabbitMQ permissions of one service user on the deployment's vhost: regular
/// expressions, as `rabbitmqctl set_permissions` / `set_topic_permissions` take them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// Resources it may declare or delete: none (`^$`); the topology step declares.
    pub configure: String,
    /// Exchanges (and queues) it may publish to.
    pub write: String,
    /// Queues it may consume from.
    pub read: String,
    /// The topic exchange the topic permissions apply to.
    pub topic_exchange: String,
    /// Routing keys it may publish to `topic_exchange`.
    pub topic_write: String,
    /// Binding keys it may bind to `topic_exchange` with. RabbitMQ checks topic read
    /// permissions on `queue.bind`/`queue.unbind` only (consuming is governed by
    /// `read`), and services never bind, so this is always `^$`.
    pub topic_read: String,
}

impl Permissions {
    /// The two `rabbitmqctl` argument lists (without the program name) that grant
    /// these permissions to `user` on `vhost`.
    pub fn rabbitmqctl_args(&self, vhost: &str, user: &str) -> [Vec<String>; 2] {
        let own = |s: &str| s.to_owned();
        [
            vec![
                own("set_permissions"),
                own("-p"),
                own(vhost),
                own(user),
                self.configure.clone(),
                self.write.clone(),
                self.read.clone(),
            ],
            vec![
                own("set_topic_permissions"),
                own("-p"),
                own(vhost),
                own(user),
                self.topic_exchange.clone(),
                self.topic_write.clone(),
                self.topic_read.clone(),
            ],
        ]
    }
}

/// Escapes regex metacharacters, so a name matches only itself in a permission.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What [`prepare`] found in the way of using the broker.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The broker is unreachable, refused the login, or the link broke.
    #[error("{0}")]
    Broker(#[from] lapin::Error),
    /// `AMQP_DECLARE_TOPOLOGY=false` and parts of the topology do not exist.
    #[error(
        "RabbitMQ topology is missing {}: run `talentshare topology` with an admin AMQP_URL first \
         (this service has AMQP_DECLARE_TOPOLOGY=false, so it does not declare it)",
        .0.join(", ")
    )]
    TopologyMissing(Vec<String>),
    /// `AMQP_DECLARE_TOPOLOGY=true` but the user may not declare.
    #[error(
        "RabbitMQ refused to let this user declare the topology ({0}): give the service \
         AMQP_DECLARE_TOPOLOGY=false and run `talentshare topology` with an admin AMQP_URL"
    )]
    DeclareRefused(lapin::Error),
}

/// Whether `e` is the channel-level AMQP error `code` (the broker closed the channel).
fn is_soft_error(e: &lapin::Error, code: AMQPSoftError) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(err) if *err.kind() == AMQPErrorKind::Soft(code))
}

/// Whether `e` is ACCESS_REFUSED: the user lacks a permission for what it tried.
pub fn is_access_refused(e: &lapin::Error) -> bool {
    is_soft_error(e, AMQPSoftError::ACCESSREFUSED)
}

/// Gets a connection ready to publish or consume on `topology`: the one place that
/// decides between declaring the topology (`declare`, i.e. `AMQP_DECLARE_TOPOLOGY`)
/// and only checking that it exists. Returns a fresh channel to work on.
pub async fn prepare(
    conn: &Connection,
    topology: &Topology,
    declare: bool,
) -> Result<Channel, SetupError> {
    if declare {
        let channel = conn.create_channel().await?;
        topology.declare(&channel).await.map_err(|e| {
            if is_access_refused(&e) {
                SetupError::DeclareRefused(e)
            } else {
                SetupError::Broker(e)
            }
        })?;
        Ok(channel)
    } else {
        topology.check(conn).await?;
        Ok(conn.create_channel().await?)
    }
}

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

    /// The permissions of `access`'s user on this topology: no configure; write on
    /// the events exchange if it publishes, topic-write only on its own aggregate's
    /// routing keys; read on its own queue only.
    pub fn permissions(&self, access: &ServiceAccess) -> Permissions {
        let nothing = || "^$".to_owned();
        Permissions {
            configure: nothing(),
            // A service that publishes nothing gets no write at all, not just an
            // empty topic-write: defence in depth if topic permissions were dropped.
            write: match access.publishes {
                Some(_) => format!("^{}$", regex_escape(&self.exchange)),
                None => nothing(),
            },
            read: match access.consumes {
                Some(name) => format!("^{}$", regex_escape(&self.queue(name))),
                None => nothing(),
            },
            topic_exchange: self.exchange.clone(),
            topic_write: match access.publishes {
                Some(aggregate) => format!("^{}\\..*", regex_escape(aggregate)),
                None => nothing(),
            },
            topic_read: nothing(),
        }
    }

    /// Every exchange (`true`) and queue (`false`) of this topology, by name.
    pub fn resources(&self) -> Vec<(bool, String)> {
        let mut out = vec![
            (true, self.exchange.clone()),
            (true, self.dead_letter_exchange()),
        ];
        for spec in CONSUMERS {
            out.push((false, self.queue(spec.name)));
            out.push((false, self.dead_letter_queue(spec.name)));
        }
        out
    }

    /// Checks with passive declares (which need no permission) that every exchange and
    /// queue exists; [`SetupError::TopologyMissing`] lists the ones that do not.
    /// Bindings cannot be checked passively in AMQP 0-9-1; `talentshare topology`
    /// declares them together with the queues.
    pub async fn check(&self, conn: &Connection) -> Result<(), SetupError> {
        let mut missing = Vec::new();
        let mut ch = conn.create_channel().await?;
        for (is_exchange, name) in self.resources() {
            let found = if is_exchange {
                ch.exchange_declare(
                    name.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
            } else {
                ch.queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|_| ())
            };
            match found {
                Ok(()) => {}
                Err(e) if is_soft_error(&e, AMQPSoftError::NOTFOUND) => {
                    let kind = if is_exchange { "exchange" } else { "queue" };
                    missing.push(format!("{kind} `{name}`"));
                    // NOT_FOUND closed the channel; the next check needs a new one.
                    ch = conn.create_channel().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let _ = ch.close(200, "topology checked".into()).await;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SetupError::TopologyMissing(missing))
        }
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
        // RabbitMQ answers an unbind of a binding that is not there with OK.
        for key in spec.retired_bindings {
            ch.queue_unbind(
                queue.as_str().into(),
                self.exchange.as_str().into(),
                ShortString::from(*key),
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

/// Whether this process has already said the topology is missing or may not be
/// declared; like [`REPORTED_DOWN`], so a misconfiguration reads as one warning.
static REPORTED_TOPOLOGY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Logs why [`prepare`] failed: an unreachable broker as [`report_unreachable`] does,
/// a missing or undeclarable topology as one warning per process (debug afterwards)
/// that says what to run. The caller retries with backoff either way: the topology
/// step may simply not have run yet.
pub fn report_setup_failure(component: &str, error: &SetupError) {
    if let SetupError::Broker(e) = error
        && !is_access_refused(e)
    {
        report_unreachable(component, e);
        return;
    }
    // The broker answered, so it is not down.
    REPORTED_DOWN.store(false, std::sync::atomic::Ordering::SeqCst);
    if REPORTED_TOPOLOGY.swap(true, std::sync::atomic::Ordering::SeqCst) {
        tracing::debug!(component, error = %error, "RabbitMQ topology still not usable");
    } else {
        tracing::warn!(component, error = %error,
            "cannot use RabbitMQ yet (see `talentshare topology --help` for the topology and \
             the permissions each service user needs): services keep serving, events wait \
             in the outbox, retrying");
    }
}

/// Logs that RabbitMQ is reachable again (once per recovery in this process).
pub fn report_reachable(component: &str) {
    let was_down = REPORTED_DOWN.swap(false, std::sync::atomic::Ordering::SeqCst);
    let was_missing = REPORTED_TOPOLOGY.swap(false, std::sync::atomic::Ordering::SeqCst);
    if was_down || was_missing {
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

/// Longest wait for a connection and its AMQP handshake.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest AMQP frame this client proposes, unless the URL's `frame_max` says
/// otherwise. lapin keeps a read and a write buffer of 32 frames per connection,
/// filled with zeros up front, so RabbitMQ's default of 128 KiB costs 8 MiB of
/// resident memory per connection: more than the rest of a service together. Our
/// events are well under 1 KiB, and a larger message is simply sent as several
/// frames, so 16 KiB costs nothing and keeps each connection at 1 MiB.
pub const FRAME_MAX: u32 = 16 * 1024;

/// Opens a connection named after the service (visible in the broker's UI), giving up
/// after [`CONNECT_TIMEOUT`]: a handshake that stalls (a half-open link, a proxy that
/// accepted but never forwarded) must not hold a relay or consumer forever, since
/// they only retry once this returns. Proposes [`FRAME_MAX`] unless the URL sets
/// `frame_max`.
pub async fn connect(url: &SecretUrl, connection_name: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(connection_name.into());
    // The parse error would not name the password, but it says nothing useful either.
    let mut uri: AMQPUri = url.expose().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the broker URL is not an AMQP URL",
        )
    })?;
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, props)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no AMQP handshake within {CONNECT_TIMEOUT:?}"),
        )
        .into()),
    }
}
