//! Persistence for payments: the `payments` table ([`schema`]), the conversion between
//! a payment and its row ([`rows`]), and the transactions that store a payment
//! together with its outbox event. What to store is decided by the use cases
//! ([`crate::service`]); this module only keeps their guarantees:
//!
//! - One payment per order lives in the schema: `order_id` is unique, and a payment
//!   is inserted with `ON CONFLICT (order_id) DO NOTHING`. Of any number of concurrent
//!   inserts for one order exactly one inserts (and writes its event, in the same
//!   transaction); the others read the winner.
//! - A change reads the payment under its row lock and writes it back only over the
//!   version it read, with its event in the same transaction.

mod rows;
mod schema;

use platform::outbox::{self, OutboxSignal};
use platform::store::{self as shared, Lock};
use platform::values::ExternalId;
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, DatabaseConnection, TransactionTrait};
use uuid::Uuid;

use crate::domain::{Payment, PaymentEvent, PaymentStatus};
use crate::events;
use rows::{from_row, to_row};

pub(crate) use rows::reason_str;
pub use schema::{Migrator, StoredDeclineReason, StoredPaymentStatus, entity};

/// Errors of the store. Unexpected database failures stay `Db`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("payment not found")]
    NotFound,
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
}

/// How to find one payment.
#[derive(Clone, Copy, Debug)]
pub enum Lookup {
    ByPaymentId(Uuid),
    ByOrderId(Uuid),
}

/// What [`PaymentStore::insert_once`] found.
#[derive(Clone, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per call and matched at once; boxing buys nothing"
)]
pub enum Inserted {
    /// The payment was stored, with its event if it had one.
    New,
    /// The order already had this payment; nothing was stored.
    Existing(Payment),
}

/// Filters and cursor of one `ListPayments` page.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub customer_id: Option<ExternalId>,
    pub status: Option<PaymentStatus>,
    /// Rows older than this payment id (ids are UUID v7, so this is time order).
    pub after: Option<Uuid>,
    pub limit: u64,
}

/// Payments storage. Cheap to clone.
#[derive(Clone)]
pub struct PaymentStore {
    db: DatabaseConnection,
    signal: OutboxSignal,
}

impl PaymentStore {
    /// A store over `db`, waking the relay through `signal` after each event.
    pub fn new(db: DatabaseConnection, signal: OutboxSignal) -> Self {
        Self { db, signal }
    }

    /// Stores `payment`, and `event` in the same transaction, unless its order has a
    /// payment already: then stores nothing and returns that payment.
    pub async fn insert_once(
        &self,
        payment: &Payment,
        event: Option<&PaymentEvent>,
    ) -> Result<Inserted, StoreError> {
        let txn = self.db.begin().await?;
        if shared::insert_once(&txn, to_row(payment), entity::Column::OrderId).await? {
            if let Some(event) = event {
                outbox::enqueue(&txn, events::to_outbox(event)).await?;
            }
            txn.commit().await?;
            if event.is_some() {
                self.signal.wake();
            }
            return Ok(Inserted::New);
        }
        // The insert waited for the winner to commit, so it is there to read.
        let existing = find(&txn, Lookup::ByOrderId(payment.order_id()), Lock::Unlocked).await?;
        txn.commit().await?;
        existing.map(Inserted::Existing).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "order {} conflicted but has no payment",
                payment.order_id()
            ))
        })
    }

    /// Changes one payment as `decide` says, in its own transaction: reads it under
    /// its row lock (so concurrent changes of one payment take turns), and when
    /// `decide` returns a change, writes it over the version read together with its
    /// event. Returns the payment as it now stands.
    pub async fn change<E>(
        &self,
        payment_id: Uuid,
        decide: impl FnOnce(&Payment) -> Result<Option<(Payment, PaymentEvent)>, E>,
    ) -> Result<Payment, E>
    where
        E: From<StoreError>,
    {
        let db = |e: DbErr| E::from(StoreError::Db(e));
        let txn = self.db.begin().await.map_err(db)?;
        let current = find(&txn, Lookup::ByPaymentId(payment_id), Lock::ForUpdate)
            .await?
            .ok_or(StoreError::NotFound)?;
        let Some((next, event)) = decide(&current)? else {
            txn.commit().await.map_err(db)?;
            return Ok(current);
        };
        shared::update_if_unchanged(
            &txn,
            to_row(&next),
            Condition::all().add(entity::Column::Version.eq(current.version())),
        )
        .await
        .map_err(db)?;
        outbox::enqueue(&txn, events::to_outbox(&event))
            .await
            .map_err(db)?;
        txn.commit().await.map_err(db)?;
        self.signal.wake();
        Ok(next)
    }

    /// One payment.
    pub async fn get(&self, lookup: Lookup) -> Result<Payment, StoreError> {
        find(&self.db, lookup, Lock::Unlocked)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// One page of payments, newest first, and whether more follow.
    pub async fn list(&self, q: &ListQuery) -> Result<(Vec<Payment>, bool), StoreError> {
        let mut select = entity::Entity::find();
        if let Some(c) = &q.customer_id {
            select = select.filter(entity::Column::CustomerId.eq(c.as_ref()));
        }
        if let Some(s) = q.status {
            select = select.filter(entity::Column::Status.eq(StoredPaymentStatus::from(s)));
        }
        shared::page_newest_first(
            &self.db,
            select,
            entity::Column::PaymentId,
            q.after,
            q.limit,
            from_row,
        )
        .await
    }
}

async fn find<C: ConnectionTrait>(
    conn: &C,
    lookup: Lookup,
    lock: Lock,
) -> Result<Option<Payment>, StoreError> {
    let select = match lookup {
        Lookup::ByPaymentId(id) => entity::Entity::find_by_id(id.to_string()),
        Lookup::ByOrderId(id) => {
            entity::Entity::find().filter(entity::Column::OrderId.eq(id.to_string()))
        }
    };
    shared::find_one(conn, select, lock, from_row).await
}
