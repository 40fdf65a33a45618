//! The event consumer's handler: every event on the bus (queue `mypage`, bound to
//! `#`) is parsed at the edge and folded into its order's row, and watchers of
//! that customer's page hear about the committed change through [`Changes`]: on
//! PostgreSQL by a `pg_notify` inside the fold's transaction, which reaches every
//! replica; on SQLite by notifying in process after the commit (see
//! [`crate::changes`]).
//!
//! Order independence comes from the domain ([`crate::domain::apply`]): the same
//! events give the same row whatever their order and repetition. The platform's
//! inbox already drops exact redeliveries before they reach [`Handler`].

pub mod decode;

use std::sync::Arc;

use platform::consumer::{EventHandler, HandlerError};
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
}

impl Handler {
    /// A handler that announces each applied event to the watchers of `changes`.
    pub fn new(changes: Changes) -> Self {
        Self { changes }
    }
}

impl EventHandler for Handler {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        let parsed = decode::parse(event).map_err(|e| HandlerError::Permanent(e.into()))?;
        match store::apply_event(txn, &parsed).await {
            Ok(entry) => {
                tracing::debug!(order_id = %entry.order_id(), order = ?entry.order(),
                    payment = ?entry.payment(), reservation = ?entry.reservation(), "entry updated");
                if self.changes.is_via_database() {
                    // Delivered to every replica's listener if, and only when, this
                    // transaction commits.
                    changes::publish(txn, entry.customer_id(), entry.order_id()).await?;
                }
                Ok(())
            }
            // The event names another customer, payment or reservation than the row:
            // no later event can make it fit.
            Err(ApplyError::Conflict(c)) => Err(HandlerError::Permanent(c.into())),
            Err(ApplyError::Store(StoreError::Db(e))) => Err(HandlerError::Transient(e.into())),
            // A row we cannot read back is a bug to look at, not something a retry fixes.
            Err(ApplyError::Store(e @ StoreError::Corrupt(_))) => {
                Err(HandlerError::Permanent(e.into()))
            }
        }
    }

    fn committed(&self, event: &EventEnvelope) {
        // On PostgreSQL this replica's listener hears the notification `handle`
        // published, like every other replica's: notifying here too would send it twice.
        if self.changes.is_via_database() {
            return;
        }
        // `handle` succeeded, so the order id parsed there too.
        if let Ok(order_id) = Uuid::parse_str(&event.order_id) {
            self.changes.notify(Changed {
                customer_id: Arc::from(event.customer_id.as_str()),
                order_id,
            });
        }
    }
}
