//! sea-orm storage for reservations: the `reservations` table, its migration, and
//! the transactions that change a reservation together with its outbox event.
//!
//! One reservation per order lives in the schema: `order_id` is unique, and a
//! reservation is created with `ON CONFLICT (order_id) DO NOTHING`. Of two replicas
//! creating one order's reservation at once exactly one inserts; the other re-reads
//! the winner and applies its event to that.
//!
//! Every change reads the row under a lock (PostgreSQL `FOR UPDATE`; SQLite runs one
//! writer at a time) and writes it back only if it is still as read (same version,
//! status and pending rejection), so replicas never overwrite each other's changes.

use chrono::{DateTime, Utc};
use platform::outbox::{self, OutboxSignal};
use platform::time::now;
use platform::values::ExternalId;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{LockType, OnConflict};
use sea_orm::{DatabaseConnection, QueryOrder, QuerySelect, Set, TransactionTrait};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, integer_null, string_len, string_len_null, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};
use uuid::Uuid;

use crate::domain::{
    self, Booking, Change, Claim, OrderEvent, PendingRejection, Refused, RejectReason, Reservation,
    ReservationStatus, Transition,
};
use crate::events;

/// The `reservations` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reservation_id: String,
        #[sea_orm(unique)]
        pub order_id: String,
        pub customer_id: String,
        /// The booking columns are all set, or all null for a tombstone.
        pub talent_id: Option<String>,
        pub session_start_time: Option<DateTimeUtc>,
        pub session_minutes: Option<i32>,
        pub payment_id: Option<String>,
        pub status: String,
        pub manager_id: Option<String>,
        pub reason: Option<String>,
        /// The pending rejection: all three set, or all null.
        pub reject_requested_at: Option<DateTimeUtc>,
        pub reject_manager_id: Option<String>,
        pub reject_reason: Option<String>,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The service's migrations: platform tables first, then its own.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(platform::migrations::CreateOutbox),
            Box::new(platform::migrations::CreateInbox),
            Box::new(CreateReservations),
            Box::new(AddRejectIntent),
        ]
    }
}

struct CreateReservations;

impl MigrationName for CreateReservations {
    fn name(&self) -> &str {
        "m0300_reservation_create_reservations"
    }
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    ReservationId,
    OrderId,
    CustomerId,
    TalentId,
    SessionStartTime,
    SessionMinutes,
    PaymentId,
    Status,
    ManagerId,
    Reason,
    RejectRequestedAt,
    RejectManagerId,
    RejectReason,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateReservations {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Reservations::Table)
                    .if_not_exists()
                    .col(string_len(Reservations::ReservationId, 36).primary_key())
                    .col(string_len(Reservations::OrderId, 36).unique_key())
                    .col(string_len(Reservations::CustomerId, 64))
                    .col(string_len_null(Reservations::TalentId, 64))
                    .col(timestamp_with_time_zone_null(
                        Reservations::SessionStartTime,
                    ))
                    .col(integer_null(Reservations::SessionMinutes))
                    .col(string_len_null(Reservations::PaymentId, 36))
                    .col(string_len(Reservations::Status, 16))
                    .col(string_len_null(Reservations::ManagerId, 64))
                    // 200 characters of up to 4 bytes each, whatever the backend counts.
                    .col(string_len_null(Reservations::Reason, 800))
                    .col(big_integer(Reservations::Version))
                    .col(timestamp_with_time_zone(Reservations::CreatedAt))
                    .col(timestamp_with_time_zone(Reservations::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // The two list filters, each walked newest first by id.
        for (name, col) in [
            ("reservations_talent_id", Reservations::TalentId),
            ("reservations_status", Reservations::Status),
        ] {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name(name)
                        .table(Reservations::Table)
                        .col(col)
                        .col(Reservations::ReservationId)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// The pending rejection: the claim a RejectReservation records before it refunds.
struct AddRejectIntent;

impl MigrationName for AddRejectIntent {
    fn name(&self) -> &str {
        "m0301_reservation_add_reject_intent"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddRejectIntent {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds only one at a time.
        for column in [
            timestamp_with_time_zone_null(Reservations::RejectRequestedAt),
            string_len_null(Reservations::RejectManagerId, 64),
            string_len_null(Reservations::RejectReason, 800),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(Reservations::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        // The reconciler's search: pending rejections, oldest first.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("reservations_reject_requested_at")
                    .table(Reservations::Table)
                    .col(Reservations::RejectRequestedAt)
                    .to_owned(),
            )
            .await
    }
}

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
        let current = find(&txn, Key::Reservation(reservation_id), true)
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
        let current = find(&txn, Key::Reservation(reservation_id), true)
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
        // On SQLite the times are RFC 3339 text ending in `+00:00`; such text sorts in
        // time order even when the fraction has a varying number of digits ('+' sorts
        // before every digit), so `<` compares times on both backends.
        let rows = entity::Entity::find()
            .filter(entity::Column::Status.eq(status_str(ReservationStatus::Requested)))
            .filter(entity::Column::RejectRequestedAt.lt(cutoff))
            .order_by_asc(entity::Column::RejectRequestedAt)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(platform::db::readable_rows(
            "stale rejections",
            rows,
            |m| m.reservation_id.clone(),
            from_row,
        ))
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
        // Times compare as in `stale_rejections`.
        let mut select = entity::Entity::find()
            .filter(entity::Column::Status.is_in([
                status_str(ReservationStatus::Requested),
                status_str(ReservationStatus::Confirmed),
            ]))
            .filter(entity::Column::RejectRequestedAt.is_null())
            .filter(entity::Column::PaymentId.is_not_null())
            .filter(entity::Column::UpdatedAt.lt(before))
            .filter(entity::Column::SessionStartTime.gt(sessions_after))
            .order_by_asc(entity::Column::ReservationId)
            .limit(limit);
        if let Some(after) = after {
            select = select.filter(entity::Column::ReservationId.gt(after.to_string()));
        }
        let rows = select.all(&self.db).await?;
        let next = if (rows.len() as u64) < limit {
            None
        } else {
            rows.last()
                .and_then(|m| Uuid::parse_str(&m.reservation_id).ok())
        };
        let reservations = platform::db::readable_rows(
            "active reservations",
            rows,
            |m| m.reservation_id.clone(),
            from_row,
        );
        Ok((reservations, next))
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
        let current = find(&txn, Key::Reservation(reservation_id), true)
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
        find(&self.db, Key::Reservation(reservation_id), false)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// One page of reservations, newest first, and whether more follow.
    pub async fn list(&self, q: &ListQuery) -> Result<(Vec<Reservation>, bool), StoreError> {
        let mut select = entity::Entity::find().order_by_desc(entity::Column::ReservationId);
        if let Some(t) = &q.talent_id {
            select = select.filter(entity::Column::TalentId.eq(t.as_ref()));
        }
        if let Some(s) = q.status {
            select = select.filter(entity::Column::Status.eq(status_str(s)));
        }
        if let Some(after) = q.after {
            select = select.filter(entity::Column::ReservationId.lt(after.to_string()));
        }
        let rows = select.limit(q.limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > q.limit;
        let reservations = rows
            .into_iter()
            .take(q.limit as usize)
            .map(from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((reservations, more))
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
        let current = find(conn, Key::Order(order_id), true).await?;
        match domain::apply(current.as_ref(), event, Uuid::now_v7(), now()) {
            Change::Create(created, announced) => {
                let inserted = entity::Entity::insert(to_row(&created))
                    .on_conflict(
                        OnConflict::column(entity::Column::OrderId)
                            .do_nothing()
                            .to_owned(),
                    )
                    .exec_without_returning(conn)
                    .await?;
                if inserted == 1 {
                    outbox::enqueue(conn, events::to_outbox(&announced)).await?;
                    return Ok(Applied::Created(created.status));
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
                return Ok(Applied::Updated(changed.status));
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
    let claimed_at = current.rejecting.as_ref().map(|p| p.requested_at);
    let res = entity::Entity::update_many()
        .set(to_row(changed))
        .filter(entity::Column::ReservationId.eq(current.reservation_id.to_string()))
        .filter(entity::Column::Version.eq(current.version))
        .filter(entity::Column::Status.eq(status_str(current.status)))
        .filter(match claimed_at {
            Some(at) => entity::Column::RejectRequestedAt.eq(at),
            None => entity::Column::RejectRequestedAt.is_null(),
        })
        .exec(conn)
        .await?;
    if res.rows_affected != 1 {
        // Lost a race without row locks (SQLite serialises, so not expected).
        return Err(StoreError::Db(DbErr::RecordNotUpdated));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Key {
    Reservation(Uuid),
    Order(Uuid),
}

async fn find<C: ConnectionTrait>(
    conn: &C,
    key: Key,
    lock: bool,
) -> Result<Option<Reservation>, StoreError> {
    let mut select = match key {
        Key::Reservation(id) => entity::Entity::find_by_id(id.to_string()),
        Key::Order(id) => entity::Entity::find().filter(entity::Column::OrderId.eq(id.to_string())),
    };
    if lock && conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        select = select.lock(LockType::Update);
    }
    select.one(conn).await?.map(from_row).transpose()
}

fn status_str(s: ReservationStatus) -> &'static str {
    match s {
        ReservationStatus::Requested => "REQUESTED",
        ReservationStatus::Confirmed => "CONFIRMED",
        ReservationStatus::Rejected => "REJECTED",
        ReservationStatus::Cancelled => "CANCELLED",
    }
}

fn to_row(r: &Reservation) -> entity::ActiveModel {
    let booking = r.booking.as_ref();
    entity::ActiveModel {
        reservation_id: Set(r.reservation_id.to_string()),
        order_id: Set(r.order_id.to_string()),
        customer_id: Set(r.customer_id.to_string()),
        talent_id: Set(booking.map(|b| b.talent_id.to_string())),
        session_start_time: Set(booking.map(|b| b.session_start)),
        session_minutes: Set(booking.map(|b| b.session_minutes)),
        payment_id: Set(r.payment_id.map(|p| p.to_string())),
        status: Set(status_str(r.status).to_owned()),
        manager_id: Set(r.manager_id.as_ref().map(ToString::to_string)),
        reason: Set(r.reason.clone()),
        reject_requested_at: Set(r.rejecting.as_ref().map(|p| p.requested_at)),
        reject_manager_id: Set(r.rejecting.as_ref().map(|p| p.manager_id.to_string())),
        reject_reason: Set(r.rejecting.as_ref().map(|p| p.reason.as_ref().to_owned())),
        version: Set(r.version),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    }
}

/// Parses a row back into the domain; a row that does not parse is reported, not
/// trusted. Besides each column, it checks the invariants the domain relies on: only
/// a CANCELLED tombstone may lack its booking or payment, and only a REQUESTED
/// reservation may have a pending rejection.
fn from_row(m: entity::Model) -> Result<Reservation, StoreError> {
    let corrupt =
        |what: &str| StoreError::Corrupt(format!("reservation {}: {what}", m.reservation_id));
    let status = match m.status.as_str() {
        "REQUESTED" => ReservationStatus::Requested,
        "CONFIRMED" => ReservationStatus::Confirmed,
        "REJECTED" => ReservationStatus::Rejected,
        "CANCELLED" => ReservationStatus::Cancelled,
        _ => return Err(corrupt("status")),
    };
    let booking = match (&m.talent_id, m.session_start_time, m.session_minutes) {
        (None, None, None) => None,
        (Some(talent), Some(session_start), Some(session_minutes))
            if domain::SESSION_MINUTES.contains(&session_minutes) =>
        {
            Some(Booking {
                talent_id: ExternalId::try_from(talent.clone())
                    .map_err(|_| corrupt("talent_id"))?,
                session_start,
                session_minutes,
            })
        }
        _ => return Err(corrupt("booking columns")),
    };
    let payment_id = m
        .payment_id
        .as_deref()
        .map(Uuid::parse_str)
        .transpose()
        .map_err(|_| corrupt("payment_id"))?;
    if status != ReservationStatus::Cancelled && (booking.is_none() || payment_id.is_none()) {
        return Err(corrupt("booking or payment missing outside a tombstone"));
    }
    let manager_id = m
        .manager_id
        .clone()
        .map(ExternalId::try_from)
        .transpose()
        .map_err(|_| corrupt("manager_id"))?;
    let rejecting = match (
        &m.reject_requested_at,
        &m.reject_manager_id,
        &m.reject_reason,
    ) {
        (None, None, None) => None,
        (Some(requested_at), Some(manager), Some(reason))
            if status == ReservationStatus::Requested =>
        {
            Some(PendingRejection {
                manager_id: ExternalId::try_from(manager.clone())
                    .map_err(|_| corrupt("reject_manager_id"))?,
                reason: RejectReason::try_from(reason.clone())
                    .map_err(|_| corrupt("reject_reason"))?,
                requested_at: *requested_at,
            })
        }
        _ => return Err(corrupt("pending rejection columns")),
    };
    Ok(Reservation {
        reservation_id: Uuid::parse_str(&m.reservation_id)
            .map_err(|_| corrupt("reservation_id"))?,
        order_id: Uuid::parse_str(&m.order_id).map_err(|_| corrupt("order_id"))?,
        customer_id: ExternalId::try_from(m.customer_id.clone())
            .map_err(|_| corrupt("customer_id"))?,
        booking,
        payment_id,
        status,
        manager_id,
        reason: m.reason.clone(),
        rejecting,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}
