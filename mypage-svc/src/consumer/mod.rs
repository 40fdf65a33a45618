//! The event consumer's handler: every event of the catalogue (queue `mypage`,
//! bound to each routing key by name) is parsed at the edge and folded into its
//! order's row, and watchers of that customer's page hear about the committed
//! change through [`Changes`]: on PostgreSQL by a `pg_notify` inside the fold's
//! transaction, which reaches every replica; on SQLite by notifying in process
//! after the commit (see [`crate::changes`]).
//!
//! Order independence comes from the domain ([`crate::domain::apply`]): the same
//! events give the same row whatever their order and repetition. The platform's
//! inbox already drops exact redeliveries before they reach [`Handler`].

pub mod decode;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use platform::consumer::{EventHandler, HandlerError, Incoming};
use sea_orm::DatabaseTransaction;
use talentshare_proto::events::EventEnvelope;
use uuid::Uuid;

use crate::changes::{self, Changed, Changes};
use crate::store::{self, ApplyError, StoreError};

/// The consumer (queue) name; bound to every routing key in `platform::amqp::CONSUMERS`.
pub const QUEUE: &str = "mypage";

/// The `EventHandler` of the `mypage` consumer.
pub struct Handler {
    changes: Changes,
    /// In process (SQLite) only: the change number each event's transaction took,
    /// by event id, from `handle` until `committed` announces it.
    numbered: Mutex<HashMap<String, i64>>,
}

impl Handler {
    /// A handler that announces each applied event to the watchers of `changes`.
    pub fn new(changes: Changes) -> Self {
        Self {
            changes,
            numbered: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets numbers of events whose transaction never committed: the consumer runs
    /// one transaction at a time in process, so anything left from before this one is
    /// from a transaction that failed (its events come back and are numbered again).
    fn start(&self) {
        if !self.changes.is_via_database() {
            self.numbered.lock().expect("numbered lock").clear();
        }
    }

    /// Remembers the change number of events announced after their commit.
    fn number(&self, event_ids: impl IntoIterator<Item = (String, i64)>) {
        if !self.changes.is_via_database() {
            self.numbered
                .lock()
                .expect("numbered lock")
                .extend(event_ids);
        }
    }
}

impl EventHandler for Handler {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        self.start();
        let parsed = decode::parse(event).map_err(|e| HandlerError::Permanent(e.into()))?;
        let numbers = store::next_change_numbers(txn, [&parsed.customer_id]).await?;
        let seq = numbers[parsed.customer_id.as_ref()];
        let entry = store::apply_event(txn, &parsed, seq)
            .await
            .map_err(handler_error)?;
        tracing::debug!(order_id = %entry.order_id(), order = ?entry.order(),
            payment = ?entry.payment(), reservation = ?entry.reservation(), "entry updated");
        if self.changes.is_via_database() {
            // Delivered to every replica's listener if, and only when, this
            // transaction commits.
            changes::publish(txn, entry.customer_id(), entry.order_id(), seq).await?;
        }
        self.number([(event.event_id.clone(), seq)]);
        Ok(())
    }

    /// The batch: one locked read, one write per order and one notification
    /// statement for all the events that arrived together.
    async fn handle_batch(
        &self,
        txn: &DatabaseTransaction,
        events: &[Incoming<'_>],
    ) -> Result<(), HandlerError> {
        self.start();
        let parsed = events
            .iter()
            .map(|i| decode::parse(i.event))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HandlerError::Permanent(e.into()))?;
        let numbers =
            store::next_change_numbers(txn, parsed.iter().map(|e| &e.customer_id)).await?;
        let changed = store::apply_events(txn, &parsed, &numbers)
            .await
            .map_err(handler_error)?;
        if self.changes.is_via_database() {
            changes::publish_all(
                txn,
                changed.iter().map(|e| {
                    let seq = numbers[e.customer_id().as_ref()];
                    (e.customer_id(), e.order_id(), seq)
                }),
            )
            .await?;
        }
        self.number(
            events
                .iter()
                .zip(&parsed)
                .map(|(i, p)| (i.event.event_id.clone(), numbers[p.customer_id.as_ref()])),
        );
        Ok(())
    }

    fn committed(&self, event: &EventEnvelope) {
        // On PostgreSQL this replica's listener hears the notification `handle`
        // published, like every other replica's: notifying here too would send it twice.
        if self.changes.is_via_database() {
            return;
        }
        let change_seq = self
            .numbered
            .lock()
            .expect("numbered lock")
            .remove(&event.event_id);
        // `handle` succeeded, so the order id parsed there too.
        if let Ok(order_id) = Uuid::parse_str(&event.order_id) {
            self.changes.notify(Changed {
                customer_id: Arc::from(event.customer_id.as_str()),
                order_id,
                change_seq,
            });
        }
    }
}

fn handler_error(e: ApplyError) -> HandlerError {
    match e {
        // The event names another customer, payment or reservation than the row: no
        // later event can make it fit.
        ApplyError::Conflict(c) => HandlerError::Permanent(c.into()),
        ApplyError::Store(StoreError::Db(e)) => HandlerError::Transient(e.into()),
        // A row we cannot read back is a bug to look at, not something a retry fixes.
        e @ ApplyError::Store(StoreError::Corrupt(_)) => HandlerError::Permanent(e.into()),
    }
}
