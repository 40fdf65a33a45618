//! Persistence for my page: the `my_page_entries` table, one row per order
//! ([`schema`]), the conversion between an entry and its row ([`rows`]), the read
//! queries, and [`apply_event`] / [`apply_events`], which fold one event, or a batch,
//! into their rows inside the consumer's transaction.
//!
//! mypage-svc publishes nothing, so no write here enqueues an outbox event; the
//! outbox table exists only because every service's platform migrations create it.

mod rows;
mod schema;

use std::collections::HashMap;

use platform::store::{self as shared, Lock};
use platform::values::ExternalId;
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, DatabaseConnection, QueryOrder};
use uuid::Uuid;

use crate::domain::{self, Conflict, DomainEvent, Entry};
use rows::{from_row, to_row};

pub use schema::{
    Migrator, StoredOrderStatus, StoredPaymentStatus, StoredReservationStatus, entity,
};

/// Errors of the store. Unexpected database failures stay `Db`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
}

/// Why an event could not be folded into its row.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Conflict(#[from] Conflict),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DbErr> for ApplyError {
    fn from(e: DbErr) -> Self {
        ApplyError::Store(StoreError::Db(e))
    }
}

/// Folds `event` into its order's row (creating the row for the order's first
/// event). Runs inside the consumer's transaction, which also holds the inbox row,
/// so the change and "this event was handled" commit together.
///
/// Returns the entry as it now stands.
pub async fn apply_event<C: ConnectionTrait>(
    txn: &C,
    event: &DomainEvent,
    change_seq: i64,
) -> Result<Entry, ApplyError> {
    let current = match find(txn, event.order_id, Lock::ForUpdate).await? {
        Some(row) => row,
        None => {
            let created = domain::apply(None, event);
            if shared::insert_once(txn, to_row(&created, change_seq), entity::Column::OrderId)
                .await?
            {
                return Ok(created);
            }
            // Another replica created the row since we looked: fold into theirs.
            find(txn, event.order_id, Lock::ForUpdate)
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "order {} conflicted on insert but has no row",
                        event.order_id
                    ))
                })?
        }
    };
    domain::check(&current, event)?;
    let next = domain::apply(Some(current.clone()), event);
    if next != current {
        write_over(txn, &current, &next, change_seq).await?;
    }
    Ok(next)
}

/// Folds events that arrived together into their rows, in order: one locked read
/// of every row they touch, the fold in memory, then one write per order that
/// changed. What it leaves is what [`apply_event`] would leave event by event; the
/// difference is the number of statements (a backlog of four events per order
/// costs about a quarter of the round trips).
///
/// Returns the entries that changed, once each.
///
/// # Errors
///
/// As [`apply_event`]. When another replica created one of the rows after the
/// read, the insert finds it taken and this returns the database's
/// `RecordNotInserted`; the consumer then applies the batch's events one by one,
/// and [`apply_event`] folds into that row.
pub async fn apply_events<C: ConnectionTrait>(
    txn: &C,
    events: &[DomainEvent],
    change_seqs: &HashMap<String, i64>,
) -> Result<Vec<Entry>, ApplyError> {
    let mut ids: Vec<String> = events.iter().map(|e| e.order_id.to_string()).collect();
    ids.sort_unstable();
    ids.dedup();
    let select = entity::Entity::find()
        .filter(entity::Column::OrderId.is_in(ids))
        .order_by_asc(entity::Column::OrderId);
    let stored: Vec<Entry> = shared::find_all(txn, select, Lock::ForUpdate, from_row).await?;
    let mut folds: HashMap<Uuid, (Option<Entry>, Entry)> = stored
        .into_iter()
        .map(|row| (row.order_id(), (Some(row.clone()), row)))
        .collect();
    let mut order = Vec::new();
    for event in events {
        match folds.get_mut(&event.order_id) {
            Some((_, entry)) => {
                domain::check(entry, event)?;
                *entry = domain::apply(Some(entry.clone()), event);
            }
            None => {
                folds.insert(event.order_id, (None, domain::apply(None, event)));
            }
        }
        if !order.contains(&event.order_id) {
            order.push(event.order_id);
        }
    }
    let mut changed = Vec::new();
    for order_id in order {
        let (stored, next) = folds.remove(&order_id).expect("folded above");
        let change_seq = *change_seqs
            .get(next.customer_id().as_ref())
            .ok_or_else(|| {
                StoreError::Corrupt(format!("no change number for order {order_id}'s customer"))
            })?;
        match stored {
            None => {
                if !shared::insert_once(txn, to_row(&next, change_seq), entity::Column::OrderId)
                    .await?
                {
                    return Err(StoreError::Db(DbErr::RecordNotInserted).into());
                }
                changed.push(next);
            }
            Some(current) if current != next => {
                write_over(txn, &current, &next, change_seq).await?;
                changed.push(next);
            }
            Some(_) => {}
        }
    }
    Ok(changed)
}

/// Takes the next change number of each of `customers` inside the caller's
/// transaction, which keeps each customer's row locked until it commits: one
/// customer's numbers therefore commit in increasing order, on every replica, and a
/// stream that has sent everything up to number `n` can resume from `n` (see
/// [`crate::watch`]). The rows are locked in customer id order, so transactions
/// sharing customers take turns instead of deadlocking. Call it before touching
/// the customers' entries.
pub async fn next_change_numbers<C: ConnectionTrait>(
    txn: &C,
    customers: impl IntoIterator<Item = &ExternalId>,
) -> Result<HashMap<String, i64>, DbErr> {
    use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
    let mut ids: Vec<&str> = customers.into_iter().map(AsRef::as_ref).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = ids.iter().map(|id| schema::customers::ActiveModel {
        customer_id: sea_orm::Set((*id).to_owned()),
        change_seq: sea_orm::Set(1),
    });
    let taken = schema::customers::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(schema::customers::Column::CustomerId)
                .value(
                    schema::customers::Column::ChangeSeq,
                    Expr::col((
                        schema::customers::Entity,
                        schema::customers::Column::ChangeSeq,
                    ))
                    .add(1),
                )
                .to_owned(),
        )
        .exec_with_returning(txn)
        .await?;
    Ok(taken
        .into_iter()
        .map(|m| (m.customer_id, m.change_seq))
        .collect())
}

/// Writes `next` over `current` only while the row has `current`'s versions: under
/// the row lock they still hold, and without it a lost race is an error (the event
/// is retried), never a lost update.
async fn write_over<C: ConnectionTrait>(
    txn: &C,
    current: &Entry,
    next: &Entry,
    change_seq: i64,
) -> Result<(), DbErr> {
    let (order, payment, reservation) = (
        current.order().map_or(0, |v| v.version),
        current.payment().map_or(0, |v| v.version),
        current.reservation().map_or(0, |v| v.version),
    );
    shared::update_if_unchanged(
        txn,
        to_row(next, change_seq),
        Condition::all()
            .add(entity::Column::OrderVersion.eq(order))
            .add(entity::Column::PaymentVersion.eq(payment))
            .add(entity::Column::ReservationVersion.eq(reservation)),
    )
    .await
}

/// Reads one row; [`Lock::ForUpdate`] makes replicas folding events of the same order
/// take turns.
async fn find<C: ConnectionTrait>(
    conn: &C,
    order_id: Uuid,
    lock: Lock,
) -> Result<Option<Entry>, StoreError> {
    shared::find_one(
        conn,
        entity::Entity::find_by_id(order_id.to_string()),
        lock,
        from_row,
    )
    .await
}

/// Read access to my page. Cheap to clone.
#[derive(Clone)]
pub struct MyPageStore {
    db: DatabaseConnection,
    /// The store's identity (`my_page_store`), read once.
    id: std::sync::Arc<tokio::sync::OnceCell<String>>,
}

impl MyPageStore {
    /// A store over `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            id: std::sync::Arc::default(),
        }
    }

    /// What a resume token of `customer`'s stream is valid for: this store (its id,
    /// made by the migration) and this customer. A token from another store, say one
    /// replaced or reset since, names positions this one never had.
    pub async fn resume_scope(&self, customer: &ExternalId) -> Result<String, StoreError> {
        let id = self
            .id
            .get_or_try_init(|| async {
                let row = self
                    .db
                    .query_one_raw(sea_orm::Statement::from_string(
                        self.db.get_database_backend(),
                        "SELECT id FROM my_page_store",
                    ))
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("my_page_store has no id".into()))?;
                Ok::<_, StoreError>(row.try_get::<String>("", "id")?)
            })
            .await?;
        Ok(format!("{id}/{}", customer.as_ref()))
    }

    /// The entry of one order, if any event about it has arrived.
    pub async fn get(&self, order_id: Uuid) -> Result<Option<Entry>, StoreError> {
        find(&self.db, order_id, Lock::Unlocked).await
    }

    /// One page of `customer`'s entries, newest order first, starting after the
    /// order `after`; and whether more follow.
    pub async fn page(
        &self,
        customer: &ExternalId,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<(Vec<Entry>, bool), StoreError> {
        // Every row was last changed under number 0 (before numbers were kept) or later.
        self.changed_from(customer, 0, after, limit).await
    }

    /// The number of `customer`'s latest committed change; 0 when none was numbered.
    pub async fn change_number(&self, customer: &ExternalId) -> Result<i64, StoreError> {
        Ok(
            schema::customers::Entity::find_by_id(customer.as_ref().to_owned())
                .one(&self.db)
                .await?
                .map_or(0, |m| m.change_seq),
        )
    }

    /// One page of `customer`'s entries last changed under change number `from` or a
    /// later one, newest order first, starting after the order `after`; and whether
    /// more follow.
    pub async fn changed_from(
        &self,
        customer: &ExternalId,
        from: i64,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<(Vec<Entry>, bool), StoreError> {
        let select = entity::Entity::find()
            .filter(entity::Column::CustomerId.eq(customer.as_ref()))
            .filter(entity::Column::ChangeSeq.gte(from));
        shared::page_newest_first(
            &self.db,
            select,
            entity::Column::OrderId,
            after,
            limit,
            from_row,
        )
        .await
    }

    /// Whether `order_id` is one of `customer`'s entries: a page token is only
    /// valid for the customer whose page issued it.
    pub async fn belongs_to(
        &self,
        order_id: Uuid,
        customer: &ExternalId,
    ) -> Result<bool, StoreError> {
        let n = entity::Entity::find_by_id(order_id.to_string())
            .filter(entity::Column::CustomerId.eq(customer.as_ref()))
            .count(&self.db)
            .await?;
        Ok(n > 0)
    }
}
