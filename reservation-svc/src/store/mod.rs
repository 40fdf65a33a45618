//! Persistence for reservations: the `reservations` table ([`schema`]), the conversion
//! between a reservation and its row ([`rows`]), and the transactions that change a
//! reservation together with its outbox event.
//!
//! One reservation per order lives in the schema: `order_id` is unique, and a
//! reservation is created with `ON CONFLICT (order_id) DO NOTHING`. Of two replicas
//! creating one order's reservation at once exactly one inserts; the other re-reads
//! the winner and applies its event to that.
//!
//! Every change reads the row under a lock (PostgreSQL `FOR UPDATE`; SQLite runs one
//! writer at a time) and writes it back only if it is still as read (same version,
//! status and pending rejection), so replicas never overwrite each other's changes.

mod rows;
mod schema;

use chrono::{DateTime, Utc};
use platform::outbox::{self, OutboxSignal};
use platform::store::{self as shared, Lock};
use platform::time::now;
use platform::values::ExternalId;
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, DatabaseConnection, QueryOrder, QuerySelect, TransactionTrait};
use uuid::Uuid;

use crate::domain::{
    self, Change, Claim, OrderEvent, PendingRejection, Refused, RejectReason, Reservation,
    ReservationStatus, Transition,
};
use crate::events;
use rows::{from_row, to_row};

pub use schema::{Migrator, StoredReservationStatus, entity};

/// Errors of the store. Unexpected database failures stay `Db`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reservation not found")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
}

/// What consuming one upstream event did, for the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The order's reservation was created (REQUESTED, or a CANCELLED tombstone).
    Created(ReservationStatus),
    /// The existing reservation changed.
    Updated(ReservationStatus),
    /// Nothing to do.
    Unchanged,
}

/// Where a reservation stands once a rejection has been recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// Its rejection is pending (just recorded, or earlier): refund, then finish it.
    Pending(Reservation, PendingRejection),
    /// It is already REJECTED.
    Rejected(Reservation),
}

/// Filters and cursor of one `ListReservations` page.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub talent_id: Option<ExternalId>,
    pub status: Option<ReservationStatus>,
    /// Rows older than this reservation id (ids are UUID v7, so this is time order).
    pub after: Option<Uuid>,
    pub limit: u64,
}

/// Reservations storage. Cheap to clone.
#[derive(Clone)]
pub struct ReservationStore {
    db: DatabaseConnection,
    signal: OutboxSignal,
}

impl ReservationStore {
    /// A store over `db`, waking the relay through `signal` after each event.
    pub fn new(db: DatabaseConnection, signal: OutboxSignal) -> Self {
        Self { db, signal }
    }

    /// Confirms a reservation (its payment already checked); a CONFIRMED one is
    /// returned unchanged.
    pub async fn confirm(
        &self,
        reservation_id: Uuid,
        manager_id: &ExternalId,
    ) -> Result<Reservation, StoreError> {
        self.transition(reservation_id, |r| r.confirm(manager_id, now()))
            .await
    }

    /// Records a manager's rejection before its refund, in a short transaction under
    /// the row lock and without an event, so that no confirmation can slip in between
    /// the refund and [`ReservationStore::reject`], and a crash leaves a claim the
    /// reconciler finishes. A claim already pending is returned as it is.
    pub async fn claim_rejection(
        &self,
        reservation_id: Uuid,
        manager_id: &ExternalId,
        reason: &RejectReason,
    ) -> Result<Claimed, StoreError> {
        let txn = self.db.begin().await?;
        let current = find(&txn, Key::Reservation(reservation_id), Lock::ForUpdate)
            .await?
            .ok_or(StoreError::NotFound)?;
        let claimed = match current.claim_rejection(manager_id, reason, now())? {
            Claim::AlreadyRejected => Claimed::Rejected(current),
            Claim::Pending(pending) => Claimed::Pending(current, pending),
            Claim::Recorded(recorded, pending) => {
                update(&txn, &current, &recorded).await?;
                Claimed::Pending(recorded, pending)
            }
        };
        txn.commit().await?;
        Ok(claimed)
    }

    /// Rejects a reservation (its payment already refunded), with its pending
    /// rejection's manager and reason when it has one; a REJECTED one is returned
    /// unchanged.
    pub async fn reject(
        &self,
        reservation_id: Uuid,
        manager_id: &ExternalId,
        reason: &RejectReason,
    ) -> Result<Reservation, StoreError> {
        self.transition(reservation_id, |r| r.reject(manager_id, reason, now()))
            .await
    }

    /// Drops the pending rejection recorded at `requested_at` (its refund was refused
    /// for good, so nothing was refunded); a no-op if that claim is gone.
    pub async fn release_rejection(
        &self,
        reservation_id: Uuid,
        requested_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        let current = find(&txn, Key::Reservation(reservation_id), Lock::ForUpdate)
            .await?
            .ok_or(StoreError::NotFound)?;
        if let Some(released) = current.release_rejection(requested_at) {
            update(&txn, &current, &released).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Up to `limit` reservations whose rejection has been pending since before
    /// `cutoff`, oldest claim first.
    pub async fn stale_rejections(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Reservation>, StoreError> {
        // Times compare in SQL on both backends (see `platform::store`).
        let select = entity::Entity::find()
            .filter(entity::Column::Status.eq(StoredReservationStatus::Requested))
            .filter(entity::Column::RejectRequestedAt.lt(cutoff))
            .order_by_asc(entity::Column::RejectRequestedAt);
        Ok(shared::batch(&self.db, "stale rejections", select, limit, from_row).await?)
    }

    /// Up to `limit` active reservations (REQUESTED or CONFIRMED, no rejection
    /// pending) with a payment, last changed before `before`, for a session starting
    /// after `sessions_after`, after `after` in id order: the anti-entropy pass walks
    /// them page by page. Also returns where the next page starts, `None` at the end
    /// (an unreadable row is skipped, reported, and still moves the walk on).
    pub async fn active_between(
        &self,
        before: DateTime<Utc>,
        sessions_after: DateTime<Utc>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<(Vec<Reservation>, Option<Uuid>), StoreError> {
        let select = entity::Entity::find()
            .filter(entity::Column::Status.is_in([
                StoredReservationStatus::Requested,
                StoredReservationStatus::Confirmed,
            ]))
            .filter(entity::Column::RejectRequestedAt.is_null())
            .filter(entity::Column::PaymentId.is_not_null())
            .filter(entity::Column::UpdatedAt.lt(before))
            .filter(entity::Column::SessionStartTime.gt(sessions_after));
        Ok(shared::walk_step(
            &self.db,
            "active reservations",
            select,
            entity::Column::ReservationId,
            after,
            limit,
            from_row,
        )
        .await?)
    }

    /// Which of `order_ids` have a reservation (or a tombstone).
    pub async fn orders_with_reservation(
        &self,
        order_ids: &[Uuid],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        if order_ids.is_empty() {
            return Ok(Default::default());
        }
        let rows = entity::Entity::find()
            .select_only()
            .column(entity::Column::OrderId)
            .filter(entity::Column::OrderId.is_in(order_ids.iter().map(Uuid::to_string)))
            .into_tuple::<String>()
            .all(&self.db)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect())
    }

    /// Applies an upstream event the anti-entropy pass reconstructed, in its own
    /// transaction, exactly as the consumer would (see [`apply_event`]).
    pub async fn apply_repair(&self, event: &OrderEvent) -> Result<Applied, StoreError> {
        let txn = self.db.begin().await?;
        let applied = apply_event(&txn, event).await?;
        txn.commit().await?;
        if applied != Applied::Unchanged {
            self.signal.wake();
        }
        Ok(applied)
    }

    /// Applies a manager's action under a row lock: the state read is the state
    /// changed, even if an event or another manager got there since the caller's
    /// first look.
    async fn transition(
        &self,
        reservation_id: Uuid,
        action: impl FnOnce(&Reservation) -> Result<Transition, Refused>,
    ) -> Result<Reservation, StoreError> {
        let txn = self.db.begin().await?;
        let current = find(&txn, Key::Reservation(reservation_id), Lock::ForUpdate)
            .await?
            .ok_or(StoreError::NotFound)?;
        match action(&current)? {
            Transition::AlreadyDone => {
                txn.commit().await?;
                Ok(current)
            }
            Transition::Changed(changed, event) => {
                update(&txn, &current, &changed).await?;
                outbox::enqueue(&txn, events::to_outbox(&event)).await?;
                txn.commit().await?;
                self.signal.wake();
                Ok(changed)
            }
        }
    }

    /// One reservation.
    pub async fn get(&self, reservation_id: Uuid) -> Result<Reservation, StoreError> {
        find(&self.db, Key::Reservation(reservation_id), Lock::Unlocked)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// One page of reservations, newest first, and whether more follow.
    pub async fn list(&self, q: &ListQuery) -> Result<(Vec<Reservation>, bool), StoreError> {
        let mut select = entity::Entity::find();
        if let Some(t) = &q.talent_id {
            select = select.filter(entity::Column::TalentId.eq(t.as_ref()));
        }
        if let Some(s) = q.status {
            select = select.filter(entity::Column::Status.eq(StoredReservationStatus::from(s)));
        }
        shared::page_newest_first(
            &self.db,
            select,
            entity::Column::ReservationId,
            q.after,
            q.limit,
            from_row,
        )
        .await
    }
}

/// Applies an upstream event to its order's reservation, writing through `conn`
/// only (the consumer's transaction, which also holds the inbox row; on SQLite's
/// single connection, touching the pool here would deadlock).
pub async fn apply_event<C: ConnectionTrait>(
    conn: &C,
    event: &OrderEvent,
) -> Result<Applied, StoreError> {
    let order_id = event.order_id();
    // Two rounds at most: a create that lost the race for this order to another
    // replica re-reads the winner (committed by then: the insert waited for it) and
    // applies the event to that instead.
    for _ in 0..2 {
        let current = find(conn, Key::Order(order_id), Lock::ForUpdate).await?;
        match domain::apply(current.as_ref(), event, Uuid::now_v7(), now()) {
            Change::Create(created, announced) => {
                if shared::insert_once(conn, to_row(&created), entity::Column::OrderId).await? {
                    outbox::enqueue(conn, events::to_outbox(&announced)).await?;
                    return Ok(Applied::Created(created.status()));
                }
            }
            Change::Update(changed, announced) => {
                // `apply` updates only a reservation it was given.
                let current = current.as_ref().ok_or_else(|| {
                    StoreError::Corrupt(format!("order {order_id}: update without a reservation"))
                })?;
                update(conn, current, &changed).await?;
                if let Some(announced) = announced {
                    outbox::enqueue(conn, events::to_outbox(&announced)).await?;
                }
                return Ok(Applied::Updated(changed.status()));
            }
            Change::Unchanged => return Ok(Applied::Unchanged),
        }
    }
    Err(StoreError::Corrupt(format!(
        "order {order_id} conflicted on insert but has no reservation"
    )))
}

/// Writes `changed` over the row only while it is still `current`: same version,
/// status and pending rejection (a claim changes neither version nor status, so the
/// claim is part of the condition).
async fn update<C: ConnectionTrait>(
    conn: &C,
    current: &Reservation,
    changed: &Reservation,
) -> Result<(), StoreError> {
    let claimed_at = current.rejecting().map(|p| p.requested_at());
    shared::update_if_unchanged(
        conn,
        to_row(changed),
        Condition::all()
            .add(entity::Column::Version.eq(current.version()))
            .add(entity::Column::Status.eq(StoredReservationStatus::from(current.status())))
            .add(match claimed_at {
                Some(at) => entity::Column::RejectRequestedAt.eq(at),
                None => entity::Column::RejectRequestedAt.is_null(),
            }),
    )
    .await?;
    Ok(())
}

/// How to find one reservation.
#[derive(Clone, Copy, Debug)]
enum Key {
    Reservation(Uuid),
    Order(Uuid),
}

async fn find<C: ConnectionTrait>(
    conn: &C,
    key: Key,
    lock: Lock,
) -> Result<Option<Reservation>, StoreError> {
    let select = match key {
        Key::Reservation(id) => entity::Entity::find_by_id(id.to_string()),
        Key::Order(id) => entity::Entity::find().filter(entity::Column::OrderId.eq(id.to_string())),
    };
    shared::find_one(conn, select, lock, from_row).await
}
