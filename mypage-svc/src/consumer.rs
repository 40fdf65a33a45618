//! The event consumer's handler: every event on the bus (queue `mypage`, bound to
//! `#`) is parsed at the edge and folded into its order's row, and once the fold
//! has committed, watchers of that customer's page hear about it through
//! [`Changes`].
//!
//! Order independence comes from the domain ([`crate::domain::apply`]): the same
//! events give the same row whatever their order and repetition. The platform's
//! inbox already drops exact redeliveries before they reach [`MyPageHandler`].

use std::sync::Arc;

use platform::consumer::{EventHandler, HandlerError};
use sea_orm::DatabaseTransaction;
use talentshare_proto::events::EventEnvelope;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::events;
use crate::store::{self, ApplyError, StoreError};

/// One committed change to an entry: whose page and which order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    /// Shared between every watcher's copy of the message.
    pub customer_id: Arc<str>,
    pub order_id: Uuid,
}

/// The in-process fan-out of committed changes to WatchMyPage streams.
///
/// A bounded `broadcast`: a stream that falls more than `capacity` changes behind
/// (its client reads too slowly) sees `Lagged` and ends with ABORTED, so a slow
/// client costs the service a fixed amount of memory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Changes(broadcast::Sender<Changed>);

impl Changes {
    /// A fan-out that keeps the last `capacity` changes for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        Self(broadcast::channel(capacity).0)
    }

    /// Receives every change notified from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.0.subscribe()
    }

    /// Announces a committed change. Call only after the commit, so that a
    /// subscriber re-reading the row sees it.
    pub fn notify(&self, changed: Changed) {
        // An error only means nobody is watching right now.
        let _ = self.0.send(changed);
    }
}

/// The `EventHandler` of the `mypage` consumer.
pub struct MyPageHandler {
    changes: Changes,
}

impl MyPageHandler {
    /// A handler that announces each applied event on `changes`.
    pub fn new(changes: Changes) -> Self {
        Self { changes }
    }
}

impl EventHandler for MyPageHandler {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        let parsed = events::parse(event).map_err(|e| HandlerError::Permanent(e.into()))?;
        match store::apply_event(txn, &parsed).await {
            Ok(entry) => {
                tracing::debug!(order_id = %entry.order_id, order = ?entry.order,
                    payment = ?entry.payment, reservation = ?entry.reservation, "entry updated");
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
        // `handle` succeeded, so the order id parsed there too.
        if let Ok(order_id) = Uuid::parse_str(&event.order_id) {
            self.changes.notify(Changed {
                customer_id: Arc::from(event.customer_id.as_str()),
                order_id,
            });
        }
    }
}
