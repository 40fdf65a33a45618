//! Persistence for orders: the `orders` table ([`schema`]), the conversion between an
//! order and its row ([`rows`]), and the transactions that change an order together
//! with its outbox event.
//!
//! - Idempotency lives in the schema: `request_id` is unique, and placing inserts
//!   with `ON CONFLICT (request_id) DO NOTHING`, so of any number of concurrent
//!   PlaceOrder calls with one request id exactly one inserts (and writes one event).
//! - Every later change goes through [`change_in`]: read the order (row-locked on
//!   PostgreSQL), let the domain decide, then update only if the version is still
//!   the one read. Two replicas resolving the same order therefore produce one
//!   transition and one event; the second sees the result and changes nothing.
//! - A cancellation is recorded as a request ([`OrderStore::request_cancellation`])
//!   in its own transaction before the refund is asked for, so a PAID order whose
//!   refund went through without its CANCELLED being recorded can be found
//!   ([`OrderStore::stalled_cancellations`]) and finished.
//! - A refund owed for a payment approved after its order ended is recorded the same
//!   way ([`OrderStore::amend`]) before it is asked for, and found again
//!   ([`OrderStore::refunds_due`]) until it is done.

mod rows;
mod schema;

use chrono::{DateTime, Utc};
use platform::outbox::{self, OutboxSignal};
use platform::store::{self as shared, Lock};
use platform::time::now;
use platform::values::ExternalId;
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, DatabaseConnection, QueryOrder, TransactionTrait};
use uuid::Uuid;

use crate::domain::{Change, NewOrder, Order, OrderStatus, PlaceRefused, Refused};
use crate::events;
use rows::{from_row, to_row};

pub use schema::{Migrator, StoredOrderStatus, entity};

/// Errors of the store. Unexpected database failures stay `Db`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("request {0} was used for an order with different details")]
    Conflict(Uuid),
    #[error("order not found")]
    NotFound,
    #[error(transparent)]
    Place(#[from] PlaceRefused),
    /// The order (its id) cannot make the change.
    #[error("{1}")]
    Refused(Uuid, #[source] Refused),
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
}

/// What placing found.
#[derive(Clone, Debug)]
pub enum Placed {
    /// A new order, stored with its `order.placed` event.
    Created(Order),
    /// The order an earlier call with the same request id placed, on the same terms.
    Existing(Order),
}

/// Filters and cursor of one `ListOrders` page.
#[derive(Clone, Debug)]
pub struct ListQuery {
    pub customer_id: ExternalId,
    pub status: Option<OrderStatus>,
    /// Rows older than this order id (ids are UUID v7, so this is time order).
    pub after: Option<Uuid>,
    pub limit: u64,
}

/// Orders storage. Cheap to clone.
#[derive(Clone)]
pub struct OrderStore {
    db: DatabaseConnection,
    signal: OutboxSignal,
}

impl OrderStore {
    /// A store over `db`, waking the relay through `signal` after each event.
    pub fn new(db: DatabaseConnection, signal: OutboxSignal) -> Self {
        Self { db, signal }
    }

    /// Places an order once per request id. A repeat with the same terms finds the
    /// first order (and is not checked against `now` again: the session may have
    /// started since); one with other terms is a [`StoreError::Conflict`].
    pub async fn place(&self, new: &NewOrder, now: DateTime<Utc>) -> Result<Placed, StoreError> {
        let txn = self.db.begin().await?;
        // The Pay attempt is stamped when it is about to go, not when the request
        // arrived: time spent waiting for a connection must not age it towards the
        // reconciler's grace.
        let now = Ord::max(now, platform::time::now());
        // Insert first and look only when the request id is taken: a repeat is rare,
        // and this keeps a new order to two statements. The domain still checks the
        // terms before anything is written; a repeat whose session has started since
        // is then answered from the existing order below, not refused.
        let placed = Order::place(new, Uuid::now_v7(), now);
        if let Ok((order, event)) = &placed
            && shared::insert_once(&txn, to_row(order), entity::Column::RequestId).await?
        {
            outbox::enqueue(&txn, events::to_outbox(order, event)).await?;
            txn.commit().await?;
            self.signal.wake();
            return Ok(Placed::Created(order.clone()));
        }
        // The request id was used before (perhaps by a concurrent call that committed
        // first), or the terms are refused: an earlier order with this request id
        // answers the call; without one, the refusal stands.
        let existing = find(&txn, Key::Request(new.request_id), Lock::Unlocked).await?;
        txn.commit().await?;
        let Some(existing) = existing else {
            placed?;
            return Err(StoreError::Corrupt(format!(
                "request {} conflicted but has no order",
                new.request_id
            )));
        };
        same_terms(existing, new)
    }

    /// One order.
    pub async fn get(&self, order_id: Uuid) -> Result<Order, StoreError> {
        find(&self.db, Key::Order(order_id), Lock::Unlocked)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// One page of a customer's orders, newest first, and whether more follow.
    pub async fn list(&self, q: &ListQuery) -> Result<(Vec<Order>, bool), StoreError> {
        let mut select =
            entity::Entity::find().filter(entity::Column::CustomerId.eq(q.customer_id.as_ref()));
        if let Some(s) = q.status {
            select = select.filter(entity::Column::Status.eq(StoredOrderStatus::from(s)));
        }
        shared::page_newest_first(
            &self.db,
            select,
            entity::Column::OrderId,
            q.after,
            q.limit,
            from_row,
        )
        .await
    }

    /// Up to `limit` PENDING_PAYMENT orders whose latest Pay attempt started before
    /// `cutoff`, oldest first.
    pub async fn stale_pending(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Order>, StoreError> {
        // Times compare in SQL on both backends (see `platform::store`).
        let select = entity::Entity::find()
            .filter(entity::Column::Status.eq(StoredOrderStatus::PendingPayment))
            .filter(entity::Column::PaymentAttemptedAt.lt(cutoff))
            .order_by_asc(entity::Column::OrderId);
        Ok(shared::batch(&self.db, "stale pending orders", select, limit, from_row).await?)
    }

    /// Up to `limit` PAID orders whose cancellation was requested before `cutoff`,
    /// oldest request first: their refund was asked for but their CANCELLED never
    /// recorded.
    pub async fn stalled_cancellations(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Order>, StoreError> {
        // NULL (no request) never passes `<`.
        let select = entity::Entity::find()
            .filter(entity::Column::Status.eq(StoredOrderStatus::Paid))
            .filter(entity::Column::CancelRequestedAt.lt(cutoff))
            .order_by_asc(entity::Column::CancelRequestedAt)
            .order_by_asc(entity::Column::OrderId);
        Ok(shared::batch(&self.db, "stalled cancellations", select, limit, from_row).await?)
    }

    /// Records, in its own transaction and before any refund is asked for, that the
    /// customer asked to cancel the order, if it is PAID and no request is recorded
    /// yet (the first request and its reason stand). No event: nothing has happened
    /// anyone else needs to hear of until the order is CANCELLED. Returns the order
    /// as it now stands; the caller looks at its status and request.
    pub async fn request_cancellation(
        &self,
        order_id: Uuid,
        reason: Option<String>,
    ) -> Result<Order, StoreError> {
        let (order, _) = self
            .amend(order_id, |o, now| o.request_cancellation(reason, now))
            .await?;
        Ok(order)
    }

    /// Records that a Pay call for the order starts now, if it is still
    /// PENDING_PAYMENT. Returns the order and whether it is (still) to be paid.
    pub async fn begin_payment_attempt(&self, order_id: Uuid) -> Result<(Order, bool), StoreError> {
        self.amend(order_id, |o, now| o.attempt_payment(now)).await
    }

    /// Writes what `amend` makes of the order, in its own transaction and without an
    /// event: bookkeeping nobody else needs to hear of (a Pay attempt's time, a
    /// cancellation request, a refund owed). Returns the order as it now stands and
    /// whether it changed.
    pub async fn amend<F>(&self, order_id: Uuid, amend: F) -> Result<(Order, bool), StoreError>
    where
        F: FnOnce(&Order, DateTime<Utc>) -> Option<Order>,
    {
        let txn = self.db.begin().await?;
        let current = find(&txn, Key::Order(order_id), Lock::ForUpdate)
            .await?
            .ok_or(StoreError::NotFound)?;
        let Some(amended) = amend(&current, now()) else {
            txn.commit().await?;
            return Ok((current, false));
        };
        update(&txn, &current, &amended).await?;
        txn.commit().await?;
        Ok((amended, true))
    }

    /// Up to `limit` orders that owe the refund of a payment approved after they
    /// ended, oldest first.
    pub async fn refunds_due(&self, limit: u64) -> Result<Vec<Order>, StoreError> {
        let select = entity::Entity::find()
            .filter(entity::Column::RefundDuePaymentId.is_not_null())
            .order_by_asc(entity::Column::OrderId);
        Ok(shared::batch(&self.db, "orders owing a refund", select, limit, from_row).await?)
    }

    /// Up to `limit` decided orders (any status but PENDING_PAYMENT) last changed
    /// before `before` and either changed since `since` or PAID for a session starting
    /// after `sessions_after` (a booking still to come, however old its payment), after
    /// `after` in id order: the anti-entropy pass walks them page by page and compares
    /// each with its payment. Also returns where the next page starts, `None` once the
    /// walk has reached the end (an unreadable row is skipped, reported, and still
    /// moves the walk on).
    pub async fn settled_between(
        &self,
        since: DateTime<Utc>,
        before: DateTime<Utc>,
        sessions_after: DateTime<Utc>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<(Vec<Order>, Option<Uuid>), StoreError> {
        let select = entity::Entity::find()
            .filter(entity::Column::Status.ne(StoredOrderStatus::PendingPayment))
            .filter(entity::Column::UpdatedAt.lt(before))
            .filter(
                sea_orm::Condition::any()
                    .add(entity::Column::UpdatedAt.gte(since))
                    .add(
                        sea_orm::Condition::all()
                            .add(entity::Column::Status.eq(StoredOrderStatus::Paid))
                            .add(entity::Column::SessionStart.gt(sessions_after)),
                    ),
            );
        Ok(shared::walk_step(
            &self.db,
            "settled orders",
            select,
            entity::Column::OrderId,
            after,
            limit,
            from_row,
        )
        .await?)
    }

    /// Changes one order as `decide` says, in its own transaction; see [`change_in`].
    pub async fn change<F>(&self, order_id: Uuid, decide: F) -> Result<Order, StoreError>
    where
        F: FnOnce(&Order, DateTime<Utc>) -> Result<Change, Refused>,
    {
        let txn = self.db.begin().await?;
        let (order, changed) = change_in(&txn, order_id, decide).await?;
        txn.commit().await?;
        if changed {
            self.signal.wake();
        }
        Ok(order)
    }

    /// [`Self::change`] starting from `seen`, the order as this call itself just
    /// wrote it: the change is decided on `seen` and written only if the row still
    /// has its version, which saves the locked read on the hot path (settling the
    /// payment of the order just placed). If anything changed the row meanwhile, or
    /// `seen` leads to no change or a refusal, it is decided again on the row as it
    /// stands, exactly as [`Self::change`] does.
    pub async fn change_from<F>(&self, seen: &Order, decide: F) -> Result<Order, StoreError>
    where
        F: Fn(&Order, DateTime<Utc>) -> Result<Change, Refused>,
    {
        if let Ok(Some((next, event))) = decide(seen, now()) {
            let txn = self.db.begin().await?;
            match update(&txn, seen, &next).await {
                Ok(()) => {
                    outbox::enqueue(&txn, events::to_outbox(&next, &event)).await?;
                    txn.commit().await?;
                    self.signal.wake();
                    return Ok(next);
                }
                Err(DbErr::RecordNotUpdated) => txn.rollback().await?,
                Err(e) => return Err(e.into()),
            }
        }
        self.change(seen.order_id(), decide).await
    }
}

/// Reads the order (row-locked on PostgreSQL, so concurrent changes of one order
/// serialise), lets `decide` choose the change from the current row and the current
/// time, and writes the new row and its outbox event through `conn`, which must be a
/// transaction. Returns the order as it now stands and whether it changed.
pub async fn change_in<C, F>(
    conn: &C,
    order_id: Uuid,
    decide: F,
) -> Result<(Order, bool), StoreError>
where
    C: ConnectionTrait,
    F: FnOnce(&Order, DateTime<Utc>) -> Result<Change, Refused>,
{
    let current = find(conn, Key::Order(order_id), Lock::ForUpdate)
        .await?
        .ok_or(StoreError::NotFound)?;
    match decide(&current, now()).map_err(|r| StoreError::Refused(order_id, r))? {
        None => Ok((current, false)),
        Some((next, event)) => {
            update(conn, &current, &next).await?;
            outbox::enqueue(conn, events::to_outbox(&next, &event)).await?;
            Ok((next, true))
        }
    }
}

/// Writes `next` over `current`, only if the row still has `current`'s version and
/// status (a lost race without row locks becomes an error, never a lost update).
async fn update<C: ConnectionTrait>(conn: &C, current: &Order, next: &Order) -> Result<(), DbErr> {
    shared::update_if_unchanged(
        conn,
        to_row(next),
        Condition::all()
            .add(entity::Column::Version.eq(current.version()))
            .add(entity::Column::Status.eq(StoredOrderStatus::from(current.status()))),
    )
    .await
}

fn same_terms(existing: Order, new: &NewOrder) -> Result<Placed, StoreError> {
    if existing.matches(new) {
        Ok(Placed::Existing(existing))
    } else {
        Err(StoreError::Conflict(new.request_id))
    }
}

/// How to find one order.
#[derive(Clone, Copy, Debug)]
enum Key {
    Order(Uuid),
    Request(Uuid),
}

async fn find<C: ConnectionTrait>(
    conn: &C,
    key: Key,
    lock: Lock,
) -> Result<Option<Order>, StoreError> {
    let select = match key {
        Key::Order(id) => entity::Entity::find_by_id(id.to_string()),
        Key::Request(id) => {
            entity::Entity::find().filter(entity::Column::RequestId.eq(id.to_string()))
        }
    };
    shared::find_one(conn, select, lock, from_row).await
}
