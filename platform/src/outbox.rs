//! The transactional outbox: events are written in the same database transaction
//! as the state change they announce ([`enqueue`]), and a [`Relay`] publishes them
//! to RabbitMQ afterwards.
//!
//! The relay publishes persistent messages with publisher confirms and deletes a row
//! only after the broker confirmed it, so a crash between the two publishes the event
//! again (at-least-once; consumers deduplicate by event id). On PostgreSQL it claims
//! rows with `FOR UPDATE SKIP LOCKED`, so several replicas share the work without
//! publishing the same row concurrently. Committing code wakes it through
//! [`OutboxSignal`], so events leave within milliseconds rather than a poll interval.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use prost::Message;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use talentshare_proto::events::EventEnvelope;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::amqp::{self, Topology};
use crate::backoff::Backoff;
use crate::envelope::{CONTENT_TYPE, NewEvent};
use crate::metrics::{EventTypeLabels, Metrics};
use crate::settings::MessagingSettings;
use crate::telemetry;

/// The `outbox_events` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub event_id: String,
        pub routing_key: String,
        pub payload: Vec<u8>,
        pub traceparent: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Wakes the relay after a commit that wrote outbox rows. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    /// A signal nobody listens to yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Call after committing a transaction that enqueued events.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    async fn woken(&self) {
        self.0.notified().await;
    }
}

/// Records `event` in the outbox inside the caller's transaction and returns the
/// sealed envelope (with its new event id).
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    event: NewEvent,
) -> Result<EventEnvelope, DbErr> {
    let env = event.into_envelope();
    entity::ActiveModel {
        event_id: Set(env.event_id.clone()),
        routing_key: Set(env.event_type.clone()),
        payload: Set(env.encode_to_vec()),
        // The trace of the call or event being handled, so the event continues it;
        // empty outside any (a reconciler's pass), and the relay starts one then.
        traceparent: Set(telemetry::current_traceparent().unwrap_or_default()),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(env)
}

/// Events still waiting in the outbox.
pub async fn pending<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    entity::Entity::find().count(conn).await
}

/// Publishes outbox rows to RabbitMQ until shut down.
pub struct Relay {
    db: DatabaseConnection,
    settings: MessagingSettings,
    topology: Topology,
    signal: OutboxSignal,
    name: String,
    metrics: Option<Metrics>,
}

/// How often the relay counts its backlog for the metrics: often enough for an alert
/// on the oldest row's age, rarely enough to cost nothing under load.
const BACKLOG_SAMPLE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("broker: {0}")]
    Broker(String),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// How long the relay waits for the broker to confirm a batch before it treats the
/// connection as broken and reconnects.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

impl Relay {
    /// A relay for the service called `name` (the AMQP connection name).
    pub fn new(
        db: DatabaseConnection,
        settings: MessagingSettings,
        signal: OutboxSignal,
        name: &str,
    ) -> Self {
        let topology = Topology::new(settings.events_exchange.clone());
        Self {
            db,
            settings,
            topology,
            signal,
            name: format!("{name}-outbox-relay"),
            metrics: None,
        }
    }

    /// Counts what it publishes, and samples the backlog, in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Counts the outbox's rows and the age of the oldest into the metrics.
    async fn sample_backlog(&self, metrics: &Metrics) -> Result<(), DbErr> {
        let rows = pending(&self.db).await?;
        let oldest = entity::Entity::find()
            .order_by_asc(entity::Column::Id)
            .one(&self.db)
            .await?;
        let age = oldest.map_or(0.0, |row| {
            (chrono::Utc::now() - row.created_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64()
        });
        metrics
            .outbox_backlog
            .set(i64::try_from(rows).unwrap_or(i64::MAX));
        metrics.outbox_oldest_age.set(age);
        Ok(())
    }

    /// Runs until `shutdown`; then makes one last attempt to flush, bounded by the
    /// caller's drain deadline.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let (conn, channel) = match self.open().await {
                Ok(pair) => pair,
                Err(e) => {
                    amqp::report_setup_failure(&self.name, &e);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            amqp::report_reachable(&self.name);
            self.pump(&channel, &shutdown, &mut backoff).await;
            amqp::close_quietly(&conn, "relay stopping").await;
            if shutdown.is_cancelled() {
                return;
            }
            // The broker refused or lost a batch: pause before reconnecting, so a row
            // the broker keeps refusing cannot turn into a reconnect storm. The
            // backoff resets only once a batch is confirmed.
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn open(&self) -> Result<(Connection, Channel), amqp::SetupError> {
        let conn = amqp::connect(&self.settings.amqp_url, &self.name).await?;
        let ready = async {
            let channel =
                amqp::prepare(&conn, &self.topology, self.settings.amqp_declare_topology).await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, amqp::SetupError>(channel)
        }
        .await;
        match ready {
            Ok(channel) => Ok((conn, channel)),
            Err(e) => {
                // Retried later with a new connection (a missing topology or a refused
                // permission would otherwise leak one connection per retry).
                amqp::close_quietly(&conn, "relay setup failed").await;
                Err(e)
            }
        }
    }

    /// Publishes batches until the channel breaks or shutdown. On shutdown it flushes
    /// what is left once, so a clean stop leaves the outbox empty when the broker is up.
    async fn pump(&self, channel: &Channel, shutdown: &CancellationToken, backoff: &mut Backoff) {
        let mut sampled: Option<tokio::time::Instant> = None;
        loop {
            if let Some(metrics) = &self.metrics
                && sampled.is_none_or(|at| at.elapsed() >= BACKLOG_SAMPLE_EVERY)
            {
                sampled = Some(tokio::time::Instant::now());
                if let Err(e) = self.sample_backlog(metrics).await {
                    tracing::debug!(error = %e, "counting the outbox for metrics failed");
                }
            }
            match self.publish_batch(channel).await {
                Ok(n) if n as u32 >= self.settings.outbox_batch_size => {
                    backoff.reset();
                    continue;
                }
                Ok(_) => {
                    backoff.reset();
                    if shutdown.is_cancelled() {
                        return;
                    }
                    tokio::select! {
                        _ = self.signal.woken() => {}
                        _ = tokio::time::sleep(self.settings.outbox_poll_interval) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                Err(RelayError::Broker(e)) => {
                    tracing::warn!(error = %e, "publishing failed; reconnecting to RabbitMQ");
                    return;
                }
                Err(RelayError::Db(e)) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, ?delay, "reading the outbox failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Publishes up to one batch; returns how many rows were confirmed and deleted.
    async fn publish_batch(&self, channel: &Channel) -> Result<usize, RelayError> {
        let limit = u64::from(self.settings.outbox_batch_size);
        let query = entity::Entity::find()
            .order_by_asc(entity::Column::Id)
            .limit(limit);
        if crate::db::is_postgres(&self.db) {
            // Claim the rows for the length of the transaction; other replicas skip them.
            let txn = self.db.begin().await?;
            let rows = query
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                .all(&txn)
                .await?;
            let done = self.publish_rows(channel, &rows).await;
            delete_rows(&txn, &done).await?;
            txn.commit().await?;
            self.count_confirmed(&rows, &done.ids);
            finish(done)
        } else {
            // SQLite: one process owns the file, so no claim is needed, and holding the
            // only connection across broker round-trips would stall the service.
            let rows = query.all(&self.db).await?;
            let done = self.publish_rows(channel, &rows).await;
            delete_rows(&self.db, &done).await?;
            self.count_confirmed(&rows, &done.ids);
            finish(done)
        }
    }

    /// Counts the rows whose ids the broker confirmed (and which are now deleted).
    fn count_confirmed(&self, rows: &[entity::Model], ids: &[i64]) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        for row in rows.iter().filter(|r| ids.contains(&r.id)) {
            metrics
                .events_confirmed
                .get_or_create(&EventTypeLabels {
                    event_type: row.routing_key.clone(),
                })
                .inc();
        }
    }

    /// Publishes `rows` and returns the ids the broker confirmed, or the broker error
    /// that stopped it (along with the ids confirmed before it).
    async fn publish_rows(&self, channel: &Channel, rows: &[entity::Model]) -> Published {
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            // The producer span continues the trace stored with the row (the call or
            // event that caused it); consumers continue this span.
            let span = tracing::info_span!(
                "publish",
                otel.name = format!("{} publish", row.routing_key),
                otel.kind = "producer",
                messaging.system = "rabbitmq",
                messaging.message.id = row.event_id.as_str(),
                trace_id = tracing::field::Empty,
            );
            telemetry::continue_trace(&span, telemetry::extract_traceparent(&row.traceparent));
            let mut headers = FieldTable::default();
            // With tracing off there is no context to send (and none made up).
            if let Some(traceparent) = telemetry::traceparent(&span) {
                headers.insert(
                    "traceparent".into(),
                    AMQPValue::LongString(traceparent.as_str().into()),
                );
            }
            let props = BasicProperties::default()
                .with_message_id(row.event_id.as_str().into())
                .with_type(row.routing_key.as_str().into())
                .with_content_type(CONTENT_TYPE.into())
                .with_delivery_mode(2)
                .with_timestamp(row.created_at.timestamp().max(0) as u64)
                .with_app_id(self.name.as_str().into())
                .with_headers(headers);
            let sent = channel
                .basic_publish(
                    self.topology.exchange().into(),
                    row.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &row.payload,
                    props,
                )
                .instrument(span)
                .await;
            match sent {
                Ok(confirm) => {
                    if let Some(metrics) = &self.metrics {
                        metrics
                            .events_published
                            .get_or_create(&EventTypeLabels {
                                event_type: row.routing_key.clone(),
                            })
                            .inc();
                    }
                    pending.push((row.id, confirm));
                }
                Err(e) => {
                    // Keep what was already sent: wait for those confirms below.
                    let ids = confirmed(pending).await;
                    return Published {
                        ids,
                        error: Some(e.to_string()),
                    };
                }
            }
        }
        let waited = tokio::time::timeout(CONFIRM_TIMEOUT, confirmed(pending)).await;
        match waited {
            Ok(ids) if ids.len() == rows.len() => Published { ids, error: None },
            Ok(ids) => Published {
                ids,
                error: Some("broker did not confirm every event (nack or returned)".into()),
            },
            Err(_) => Published {
                ids: Vec::new(),
                error: Some(format!("no publisher confirm within {CONFIRM_TIMEOUT:?}")),
            },
        }
    }
}

struct Published {
    ids: Vec<i64>,
    error: Option<String>,
}

/// Awaits every confirm; keeps the ids that were acked and routed.
async fn confirmed(pending: Vec<(i64, lapin::PublisherConfirm)>) -> Vec<i64> {
    let (ids, confirms): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
    let results = join_all(confirms).await;
    ids.into_iter()
        .zip(results)
        .filter_map(|(id, r)| match r {
            // A returned message (unroutable) is acked but carries the message back.
            Ok(c) if c.is_ack() => c.take_message().is_none().then_some(id),
            _ => None,
        })
        .collect()
}

async fn delete_rows<C: ConnectionTrait>(conn: &C, done: &Published) -> Result<(), DbErr> {
    if done.ids.is_empty() {
        return Ok(());
    }
    entity::Entity::delete_many()
        .filter(entity::Column::Id.is_in(done.ids.iter().copied()))
        .exec(conn)
        .await?;
    Ok(())
}

fn finish(done: Published) -> Result<usize, RelayError> {
    match done.error {
        Some(e) => Err(RelayError::Broker(e)),
        None => Ok(done.ids.len()),
    }
}
