//! The event consumer runner: takes deliveries from the service's queue, applies
//! each in one database transaction together with an inbox row, and acknowledges
//! only after that transaction committed.
//!
//! - A redelivered event whose id is already in the inbox is acknowledged without
//!   being applied again (idempotent effects under at-least-once delivery).
//! - A body that is not a valid event, or a handler's [`HandlerError::Permanent`],
//!   is rejected without requeue: the broker moves it to the dead-letter queue.
//! - A [`HandlerError::Transient`] failure is retried with backoff; the quorum queue's
//!   delivery limit bounds the retries and then dead-letters the message.
//! - Unless the service's own database does not answer: then the failure is no fault
//!   of the event, so the runner keeps the delivery unacknowledged (a requeue would
//!   spend one of its delivery attempts), takes nothing new, and applies the same
//!   delivery once the database answers again, however long the outage lasts (up to
//!   the broker's consumer timeout, 30 minutes by default).
//! - On a broker restart or a lost connection the runner reconnects with backoff.
//! - On shutdown it finishes (and acks) the message in hand, then stops.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    Set, TransactionTrait,
};
use talentshare_proto::events::EventEnvelope;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::amqp::{self, Topology};
use crate::backoff::Backoff;
use crate::envelope::{self, EnvelopeError};
use crate::metrics::Metrics;
use crate::outbox::OutboxSignal;
use crate::settings::MessagingSettings;
use crate::telemetry;

/// How often a consumer counts its queue and its dead-letter queue for the metrics
/// (an alert's resolution, at the cost of two passive declares).
const DEPTH_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The `inbox_events` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub event_type: String,
        pub handled_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Why a handler could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Retrying cannot help (the event contradicts the service's state in a way it
    /// cannot resolve): dead-letter it now.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
    /// May succeed later (database briefly unavailable, lock timeout): retry.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
}

impl From<sea_orm::DbErr> for HandlerError {
    fn from(e: sea_orm::DbErr) -> Self {
        HandlerError::Transient(e.into())
    }
}

/// A service's reaction to events. It must do all its writes through `txn` (which
/// also holds the inbox row) and may enqueue outbox events there.
pub trait EventHandler: Send + Sync + 'static {
    /// Applies one event.
    fn handle<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a EventEnvelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;

    /// Applies events that arrived together, in their order, inside one transaction
    /// (`txn` already holds their inbox rows). The default applies them one after
    /// the other through [`Self::handle`], each inside its own span (so what it
    /// enqueues continues that event's trace); a handler may fold them with fewer
    /// statements. Any error rolls back the whole batch, and the runner then applies
    /// each event alone through [`Self::handle`], so a batch version only has to be
    /// right when everything succeeds.
    fn handle_batch<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        events: &'a [Incoming<'a>],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a {
        async move {
            for incoming in events {
                self.handle(txn, incoming.event)
                    .instrument(incoming.span.clone())
                    .await?;
            }
            Ok(())
        }
    }

    /// Called after the transaction that applied `event` committed (not for
    /// duplicates): the place to notify in-process watchers, since anything they
    /// read now includes the change.
    fn committed(&self, _event: &EventEnvelope) {}
}

/// An event of a batch, and the span of its handling: a child of the trace its
/// publisher sent along in the `traceparent` header.
#[derive(Clone)]
pub struct Incoming<'a> {
    pub event: &'a EventEnvelope,
    pub span: tracing::Span,
}

/// What happened to one delivery; returned for logging and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied and acknowledged.
    Applied,
    /// Already in the inbox: acknowledged, not applied again.
    Duplicate,
    /// Sent to the dead-letter queue.
    DeadLettered,
    /// Returned to the queue for another try.
    Requeued,
}

impl Outcome {
    /// Its name in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Requeued => "retried",
        }
    }
}

/// Counts of what a consumer did, for logs, tests and the fault harness.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub requeued: AtomicU64,
    /// Transactions that applied a batch of several deliveries together.
    pub batches: AtomicU64,
}

impl ConsumerStats {
    fn record(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Applied => &self.applied,
            Outcome::Duplicate => &self.duplicates,
            Outcome::DeadLettered => &self.dead_lettered,
            Outcome::Requeued => &self.requeued,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The count for `outcome`.
    pub fn get(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Applied => &self.applied,
            Outcome::Duplicate => &self.duplicates,
            Outcome::DeadLettered => &self.dead_lettered,
            Outcome::Requeued => &self.requeued,
        }
        .load(Ordering::Relaxed)
    }
}

/// Consumes one service's queue until shut down.
pub struct Consumer<H> {
    name: &'static str,
    handler: H,
    db: DatabaseConnection,
    settings: MessagingSettings,
    signal: OutboxSignal,
    stats: Arc<ConsumerStats>,
    metrics: Option<Metrics>,
    /// When the deliveries in hand were taken (milliseconds since the epoch), 0 when
    /// none are: the depth counter reports how long they have been held.
    in_hand_since: AtomicU64,
}

impl<H: EventHandler> Consumer<H> {
    /// A consumer of the queue of [`crate::amqp::ConsumerSpec`] `name`.
    /// `signal` wakes the outbox relay when the handler enqueued events.
    pub fn new(
        name: &'static str,
        handler: H,
        db: DatabaseConnection,
        settings: MessagingSettings,
        signal: OutboxSignal,
    ) -> Self {
        Self {
            name,
            handler,
            db,
            settings,
            signal,
            stats: Arc::default(),
            metrics: None,
            in_hand_since: AtomicU64::new(0),
        }
    }

    /// Counts and times what it does in `metrics` (the host does this).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Records one settled delivery: in the stats, and in the metrics with its event's
    /// type (`undecodable` for poison), how long it took since `started`, and for a
    /// first application how long after the event happened.
    fn observe(&self, outcome: Outcome, event: Option<&EventEnvelope>, started: Instant) {
        self.stats.record(outcome);
        let Some(metrics) = &self.metrics else {
            return;
        };
        let event_type = event.map_or("undecodable", |e| e.event_type.as_str());
        metrics.event_consumed(self.name, event_type, outcome.label(), started.elapsed());
        if outcome == Outcome::Applied
            && let Some(at) = event.and_then(|e| e.occurred_at)
        {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let then = Duration::new(at.seconds.max(0) as u64, at.nanos.max(0) as u32);
            metrics.event_lag(self.name, now.saturating_sub(then));
        }
    }

    /// Live counts of this consumer's outcomes.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        self.stats.clone()
    }

    /// Runs until `shutdown`, reconnecting whenever the broker goes away.
    pub async fn run(self, shutdown: CancellationToken) {
        let topology = Topology::new(self.settings.events_exchange.clone());
        let queue = topology.queue(self.name);
        let dlq = topology.dead_letter_queue(self.name);
        // The depths are counted beside the consuming loop, not inside it: a consumer
        // stuck on its database (or between reconnects) is exactly when they matter.
        let (link, linked) = tokio::sync::watch::channel(None);
        tokio::join!(
            self.count_depths(linked, &queue, &dlq, &shutdown),
            self.consume_loop(&topology, &queue, link, &shutdown),
        );
    }

    /// Every few seconds, while a connection is up, counts the queue and its
    /// dead-letter queue into the metrics. Ends at `shutdown`.
    async fn count_depths(
        &self,
        linked: tokio::sync::watch::Receiver<Option<Arc<lapin::Connection>>>,
        queue: &str,
        dlq: &str,
        shutdown: &CancellationToken,
    ) {
        if self.metrics.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(DEPTH_SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sampling = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Some(metrics) = &self.metrics {
                let since = self.in_hand_since.load(Ordering::Relaxed);
                let held = if since == 0 {
                    0.0
                } else {
                    (unix_millis().saturating_sub(since)) as f64 / 1000.0
                };
                metrics
                    .in_hand
                    .get_or_create(&crate::metrics::QueueLabels {
                        queue: self.name.to_owned(),
                    })
                    .set(held);
            }
            let conn = linked.borrow().clone();
            match conn {
                Some(conn) => self.count_queues(&conn, &mut sampling, queue, dlq).await,
                None => sampling = None,
            }
        }
    }

    /// The consuming loop of [`Self::run`]; `link` tells the depth counter which
    /// connection is up.
    async fn consume_loop(
        &self,
        topology: &Topology,
        queue: &str,
        link: tokio::sync::watch::Sender<Option<Arc<lapin::Connection>>>,
        shutdown: &CancellationToken,
    ) {
        let queue = queue.to_owned();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        while !shutdown.is_cancelled() {
            let session = match self.subscribe(topology, &queue).await {
                Ok(s) => s,
                Err(e) => {
                    amqp::report_setup_failure(&queue, &e);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            amqp::report_reachable(&queue);
            backoff.reset();
            let (conn, channel, mut stream) = session;
            let conn = Arc::new(conn);
            link.send_replace(Some(conn.clone()));
            loop {
                let first = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    next = stream.next() => next,
                };
                let mut batch = Vec::new();
                let mut end = match first {
                    Some(Ok(delivery)) => {
                        batch.push(delivery);
                        None
                    }
                    other => Some(other),
                };
                // Whatever else is already here joins the batch; nothing waits for more,
                // so a quiet queue still handles each event the moment it arrives.
                while end.is_none() && batch.len() < usize::from(self.settings.consumer_prefetch) {
                    match stream.next().now_or_never() {
                        Some(Some(Ok(delivery))) => batch.push(delivery),
                        Some(other) => end = Some(other),
                        None => break,
                    }
                }
                // The messages in hand are finished even if shutdown fires meanwhile.
                if !batch.is_empty() {
                    self.in_hand_since
                        .store(unix_millis().max(1), Ordering::Relaxed);
                    self.process_batch(batch, shutdown).await;
                    self.in_hand_since.store(0, Ordering::Relaxed);
                }
                match end {
                    None => {}
                    Some(Some(Err(e))) => {
                        tracing::warn!(error = %e, queue, "consumer lost its channel; reconnecting");
                        break;
                    }
                    Some(_) => {
                        tracing::warn!(queue, "consumer cancelled by the broker; reconnecting");
                        break;
                    }
                }
            }
            // Bounded: after a lost link these would wait for replies that never come.
            let tag = stream.tag();
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                channel.basic_cancel(tag, BasicCancelOptions::default()),
            )
            .await;
            link.send_replace(None);
            amqp::close_quietly(&conn, "consumer stopping").await;
        }
    }

    /// Counts the queue's ready messages and the dead-letter queue into the metrics,
    /// on a channel of its own so a failed count never closes the consuming channel.
    /// A failure is only logged: the gauges keep their last values, and the next tick
    /// opens a new channel.
    async fn count_queues(
        &self,
        conn: &lapin::Connection,
        sampling: &mut Option<lapin::Channel>,
        queue: &str,
        dlq: &str,
    ) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let counted = tokio::time::timeout(Duration::from_secs(1), async {
            let channel = match sampling.take() {
                Some(c) if c.status().connected() => c,
                _ => conn.create_channel().await?,
            };
            // A passive declare needs no permission and creates nothing.
            let passive = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let ready = channel
                .queue_declare(queue.into(), passive, FieldTable::default())
                .await?
                .message_count();
            let dead = channel
                .queue_declare(dlq.into(), passive, FieldTable::default())
                .await?
                .message_count();
            *sampling = Some(channel);
            Ok::<_, lapin::Error>((ready, dead))
        })
        .await;
        match counted {
            Ok(Ok((ready, dead))) => metrics.queue_depths(self.name, ready, dead),
            Ok(Err(e)) => tracing::debug!(error = %e, queue, "could not count the queues"),
            Err(_) => tracing::debug!(queue, "counting the queues timed out"),
        }
    }

    async fn subscribe(
        &self,
        topology: &Topology,
        queue: &str,
    ) -> Result<(lapin::Connection, lapin::Channel, lapin::Consumer), amqp::SetupError> {
        let conn =
            amqp::connect(&self.settings.amqp_url, &format!("{}-consumer", self.name)).await?;
        match self.consume(&conn, topology, queue).await {
            Ok((channel, stream)) => Ok((conn, channel, stream)),
            Err(e) => {
                // Retried later with a new connection (a missing topology or a refused
                // permission would otherwise leak one connection per retry).
                amqp::close_quietly(&conn, "consumer setup failed").await;
                Err(e)
            }
        }
    }

    async fn consume(
        &self,
        conn: &lapin::Connection,
        topology: &Topology,
        queue: &str,
    ) -> Result<(lapin::Channel, lapin::Consumer), amqp::SetupError> {
        let channel = amqp::prepare(conn, topology, self.settings.amqp_declare_topology).await?;
        channel
            .basic_qos(self.settings.consumer_prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("{}-{}", self.name, uuid::Uuid::now_v7());
        let stream = channel
            .basic_consume(
                queue.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, stream))
    }

    /// Handles one delivery and settles it with the broker.
    pub async fn process(&self, delivery: Delivery, shutdown: &CancellationToken) -> Outcome {
        let decoded = envelope::decode(&delivery.data);
        let span = consume_span(&delivery, &decoded);
        self.settle_alone(delivery, decoded, span, Instant::now(), shutdown)
            .await
    }

    /// Settles one delivery on its own (the path of single deliveries and of a batch
    /// that failed): poison to the dead-letter queue, an event applied with retries.
    async fn settle_alone(
        &self,
        delivery: Delivery,
        decoded: Result<EventEnvelope, EnvelopeError>,
        span: tracing::Span,
        started: Instant,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let event = match decoded {
            Ok(e) => e,
            Err(e) => return self.dead_letter_poison(delivery, &e, started).await,
        };
        let outcome = self
            .settle_event(delivery, &event, shutdown)
            .instrument(span)
            .await;
        self.observe(outcome, Some(&event), started);
        outcome
    }

    /// Handles deliveries that arrived together: every event applied in one database
    /// transaction (each with its inbox row) and acknowledged with one multiple-ack
    /// after the commit. Poison is dead-lettered after that commit, so whatever came
    /// before it on the queue is applied by the time it reaches the dead-letter queue,
    /// as one-by-one handling would have it. If anything in the batch fails, nothing
    /// of it is kept: the transaction is rolled back and each delivery, in order, is
    /// handled alone, so retries, dead-lettering and the pause during a database
    /// outage stay exactly what they are for one event.
    pub async fn process_batch(
        &self,
        deliveries: Vec<Delivery>,
        shutdown: &CancellationToken,
    ) -> Vec<Outcome> {
        if deliveries.len() == 1 {
            let delivery = deliveries.into_iter().next().expect("one delivery");
            return vec![self.process(delivery, shutdown).await];
        }
        let started = Instant::now();
        let items: Vec<(
            Delivery,
            Result<EventEnvelope, EnvelopeError>,
            tracing::Span,
        )> = deliveries
            .into_iter()
            .map(|d| {
                let decoded = envelope::decode(&d.data);
                let span = consume_span(&d, &decoded);
                (d, decoded, span)
            })
            .collect();
        let applied = self.apply_decoded(&items).await;
        let mut outcomes = Vec::with_capacity(items.len());
        match applied {
            Ok(applied) => {
                let mut applied = applied.into_iter();
                let mut last_good = None;
                for (delivery, decoded, _span) in items {
                    let outcome = match decoded {
                        Ok(event) => {
                            let outcome = applied.next().expect("one outcome per event");
                            if outcome == Outcome::Applied {
                                self.handler.committed(&event);
                            }
                            tracing::debug!(event_id = %event.event_id,
                                event_type = %event.event_type, ?outcome, "event handled");
                            last_good = Some(delivery);
                            self.observe(outcome, Some(&event), started);
                            outcome
                        }
                        Err(e) => self.dead_letter_poison(delivery, &e, started).await,
                    };
                    outcomes.push(outcome);
                }
                if let Some(last) = last_good {
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    // Delivery tags grow along the channel, and the only deliveries of
                    // this batch settled already are the poison rejected just above, so
                    // one multiple-ack settles exactly the batch's events.
                    let multiple = BasicAckOptions { multiple: true };
                    if let Err(e) = last.ack(multiple).await {
                        // The broker will redeliver; the inbox makes that harmless.
                        tracing::warn!(error = %e, queue = self.name, "ack failed after commit");
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, queue = self.name,
                    "batch not applied; handling its events one by one");
                for (delivery, decoded, span) in items {
                    outcomes.push(
                        self.settle_alone(delivery, decoded, span, started, shutdown)
                            .await,
                    );
                }
            }
        }
        outcomes
    }

    /// Rejects a delivery that is not an event envelope (it goes to the dead-letter
    /// queue) and records it, taken at `started`.
    async fn dead_letter_poison(
        &self,
        delivery: Delivery,
        error: &EnvelopeError,
        started: Instant,
    ) -> Outcome {
        tracing::warn!(error = %error, queue = self.name, routing_key = %delivery.routing_key,
            "poison message: dead-lettering");
        let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
        self.observe(Outcome::DeadLettered, None, started);
        Outcome::DeadLettered
    }

    async fn settle_event(
        &self,
        delivery: Delivery,
        event: &EventEnvelope,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let result = loop {
            match self.apply(event).await {
                Err(HandlerError::Transient(e)) if !self.database_answers().await => {
                    // Our own database is away: that says nothing about the event, so
                    // it must not spend one of the event's delivery attempts (a
                    // requeue counts as one, and the tenth dead-letters a good event).
                    // Keep the delivery unacknowledged, take nothing new, and try the
                    // same delivery again once the database answers.
                    tracing::warn!(error = %format!("{e:#}"), queue = self.name,
                        "database unreachable: consumption paused until it answers");
                    if !self.wait_for_database(shutdown).await {
                        // Shutting down mid-outage: hand the message back for later.
                        let _ = delivery
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..Default::default()
                            })
                            .await;
                        return Outcome::Requeued;
                    }
                    tracing::info!(queue = self.name, "database reachable again; consuming");
                }
                other => break other,
            }
        };
        match result {
            Ok(outcome) => {
                if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                    // The broker will redeliver; the inbox makes that harmless.
                    tracing::warn!(error = %e, "ack failed after commit");
                }
                tracing::debug!(?outcome, "event handled");
                outcome
            }
            Err(HandlerError::Permanent(e)) => {
                tracing::error!(error = %format!("{e:#}"), "event cannot be applied: dead-lettering");
                let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
                Outcome::DeadLettered
            }
            Err(HandlerError::Transient(e)) => {
                let tries = delivery_count(&delivery);
                let max = self.settings.consumer_retry_max_delay;
                let delay = Backoff::new(max / 50, max).delay_for(tries);
                tracing::warn!(error = %format!("{e:#}"), tries, ?delay, "event failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => {}
                }
                let _ = delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
                Outcome::Requeued
            }
        }
    }

    /// Whether the service's database answers a ping now (within a few seconds).
    async fn database_answers(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(5), self.db.ping())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits, with backoff, until the database answers; false when shutdown came
    /// first. Readiness reports the outage meanwhile (the host's database check).
    async fn wait_for_database(&self, shutdown: &CancellationToken) -> bool {
        let max = self.settings.consumer_retry_max_delay;
        let mut backoff = Backoff::new(max / 50, max);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.cancelled() => return false,
            }
            if self.database_answers().await {
                return true;
            }
        }
    }

    async fn apply(&self, event: &EventEnvelope) -> Result<Outcome, HandlerError> {
        let txn = self.db.begin().await?;
        if !record_in_inbox(&txn, event).await? {
            txn.rollback().await?;
            return Ok(Outcome::Duplicate);
        }
        self.handler.handle(&txn, event).await?;
        txn.commit().await?;
        self.signal.wake();
        self.handler.committed(event);
        Ok(Outcome::Applied)
    }

    /// Applies the events of a batch that decoded (poison is left for the caller),
    /// in queue order; a batch of nothing but poison opens no transaction.
    async fn apply_decoded(
        &self,
        items: &[(
            Delivery,
            Result<EventEnvelope, EnvelopeError>,
            tracing::Span,
        )],
    ) -> Result<Vec<Outcome>, HandlerError> {
        let events: Vec<Incoming<'_>> = items
            .iter()
            .filter_map(|(_, e, span)| {
                e.as_ref().ok().map(|event| Incoming {
                    event,
                    span: span.clone(),
                })
            })
            .collect();
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.apply_all(&events).await
    }

    /// Applies every event of a batch in one transaction; any failure rolls all of
    /// it back (the caller then takes the events one by one).
    async fn apply_all(&self, events: &[Incoming<'_>]) -> Result<Vec<Outcome>, HandlerError> {
        let txn = self.db.begin().await?;
        let envelopes: Vec<&EventEnvelope> = events.iter().map(|i| i.event).collect();
        let fresh = record_all_in_inbox(&txn, &envelopes).await?;
        let to_apply: Vec<Incoming<'_>> = events
            .iter()
            .zip(&fresh)
            .filter(|&(_, &fresh)| fresh)
            .map(|(i, _)| i.clone())
            .collect();
        if !to_apply.is_empty() {
            self.handler.handle_batch(&txn, &to_apply).await?;
        }
        txn.commit().await?;
        let outcomes: Vec<Outcome> = fresh
            .into_iter()
            .map(|fresh| {
                if fresh {
                    Outcome::Applied
                } else {
                    Outcome::Duplicate
                }
            })
            .collect();
        if outcomes.contains(&Outcome::Applied) {
            self.signal.wake();
        }
        Ok(outcomes)
    }
}

/// Inserts the event's inbox row; false when it was already there (a redelivery).
async fn record_in_inbox(
    txn: &DatabaseTransaction,
    event: &EventEnvelope,
) -> Result<bool, sea_orm::DbErr> {
    let inserted = entity::Entity::insert(entity::ActiveModel {
        event_id: Set(event.event_id.clone()),
        event_type: Set(event.event_type.clone()),
        handled_at: Set(chrono::Utc::now()),
    })
    .on_conflict(
        OnConflict::column(entity::Column::EventId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(inserted > 0)
}

/// Inserts the inbox rows of a batch with one read and one write; for each event,
/// whether it is new (false for one already handled, or repeated earlier in the
/// batch). The insert has no `ON CONFLICT`: should another replica record one of
/// these events between the read and the write, the insert fails, and the runner
/// takes the batch one event at a time, where [`record_in_inbox`] decides exactly.
async fn record_all_in_inbox(
    txn: &DatabaseTransaction,
    events: &[&EventEnvelope],
) -> Result<Vec<bool>, sea_orm::DbErr> {
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let handled: HashSet<String> = entity::Entity::find()
        .select_only()
        .column(entity::Column::EventId)
        .filter(entity::Column::EventId.is_in(ids))
        .into_tuple::<String>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    let mut in_batch = HashSet::new();
    let mut rows = Vec::new();
    let now = chrono::Utc::now();
    let fresh = events
        .iter()
        .map(|e| {
            let fresh = !handled.contains(&e.event_id) && in_batch.insert(e.event_id.as_str());
            if fresh {
                rows.push(entity::ActiveModel {
                    event_id: Set(e.event_id.clone()),
                    event_type: Set(e.event_type.clone()),
                    handled_at: Set(now),
                });
            }
            fresh
        })
        .collect();
    if !rows.is_empty() {
        entity::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(fresh)
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The span of one delivery's handling, continuing the trace in its `traceparent`
/// header (the publisher's span) and named after its event type; a delivery that is
/// not an event gets none.
fn consume_span(
    delivery: &Delivery,
    decoded: &Result<EventEnvelope, EnvelopeError>,
) -> tracing::Span {
    let Ok(event) = decoded else {
        return tracing::Span::none();
    };
    let span = tracing::info_span!(
        "consume",
        otel.name = format!("{} process", event.event_type),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        event_id = %event.event_id,
        event_type = %event.event_type,
        order_id = %event.order_id,
        trace_id = tracing::field::Empty,
    );
    let parent = traceparent(delivery)
        .map(|t| telemetry::extract_traceparent(&t))
        .unwrap_or_default();
    telemetry::continue_trace(&span, parent);
    span
}

/// Quorum queues count deliveries in `x-delivery-count` (absent on the first one).
fn delivery_count(delivery: &Delivery) -> u32 {
    let Some(headers) = delivery.properties.headers() else {
        return 0;
    };
    match headers.inner().get("x-delivery-count") {
        Some(AMQPValue::LongLongInt(n)) => (*n).clamp(0, i64::from(u32::MAX)) as u32,
        Some(AMQPValue::LongInt(n)) => (*n).max(0) as u32,
        Some(AMQPValue::LongUInt(n)) => *n,
        _ => 0,
    }
}

fn traceparent(delivery: &Delivery) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get("traceparent")? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        _ => None,
    }
}
