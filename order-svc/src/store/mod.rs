//! sea-orm storage for orders: the `orders` table, its migration, and the
//! transactions that change an order together with its outbox event.
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

use chrono::{DateTime, Utc};
use platform::outbox::{self, OutboxSignal};
use platform::time::now;
use platform::values::{AmountMinor, Currency, ExternalId, Money};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{LockType, OnConflict};
use sea_orm::{DatabaseConnection, QueryOrder, QuerySelect, Set, TransactionTrait};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, boolean, integer, string_len, string_len_null, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};
use uuid::Uuid;

use crate::domain::{
    Booking, CancelRequest, Change, NewOrder, Order, OrderStatus, PlaceRefused, Refused,
};
use crate::events;

/// The `orders` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        #[sea_orm(unique)]
        pub request_id: String,
        pub customer_id: String,
        pub talent_id: String,
        pub session_start: DateTimeUtc,
        pub session_minutes: i32,
        pub amount_minor: i64,
        pub currency: String,
        pub card_last4: String,
        pub status: String,
        pub payment_id: Option<String>,
        pub decline_reason: Option<String>,
        pub refunded: bool,
        pub reason: Option<String>,
        /// With `cancel_reason`: the order's [`crate::domain::CancelRequest`].
        pub cancel_requested_at: Option<DateTimeUtc>,
        pub cancel_reason: Option<String>,
        pub refund_due_payment_id: Option<String>,
        pub version: i64,
        pub payment_attempted_at: DateTimeUtc,
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
            Box::new(CreateOrders),
            Box::new(AddCancelRequest),
            Box::new(AddRefundDue),
        ]
    }
}

struct CreateOrders;

impl MigrationName for CreateOrders {
    fn name(&self) -> &str {
        "m0200_order_create_orders"
    }
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    OrderId,
    RequestId,
    CustomerId,
    TalentId,
    SessionStart,
    SessionMinutes,
    AmountMinor,
    Currency,
    CardLast4,
    Status,
    PaymentId,
    DeclineReason,
    Refunded,
    Reason,
    CancelRequestedAt,
    CancelReason,
    RefundDuePaymentId,
    Version,
    PaymentAttemptedAt,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOrders {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .if_not_exists()
                    .col(string_len(Orders::OrderId, 36).primary_key())
                    .col(string_len(Orders::RequestId, 36).unique_key())
                    .col(string_len(Orders::CustomerId, 64))
                    .col(string_len(Orders::TalentId, 64))
                    .col(timestamp_with_time_zone(Orders::SessionStart))
                    .col(integer(Orders::SessionMinutes))
                    .col(big_integer(Orders::AmountMinor))
                    .col(string_len(Orders::Currency, 3))
                    .col(string_len(Orders::CardLast4, 4))
                    .col(string_len(Orders::Status, 24))
                    .col(string_len_null(Orders::PaymentId, 36))
                    .col(string_len_null(Orders::DeclineReason, 64))
                    .col(boolean(Orders::Refunded))
                    // 200 characters of up to 4 bytes each, whatever the backend counts.
                    .col(string_len_null(Orders::Reason, 800))
                    .col(big_integer(Orders::Version))
                    .col(timestamp_with_time_zone(Orders::PaymentAttemptedAt))
                    .col(timestamp_with_time_zone(Orders::CreatedAt))
                    .col(timestamp_with_time_zone(Orders::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // ListOrders: one customer's orders by id (time order).
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("orders_customer_id")
                    .table(Orders::Table)
                    .col(Orders::CustomerId)
                    .col(Orders::OrderId)
                    .to_owned(),
            )
            .await?;
        // The reconciler: pending orders whose payment attempt is old.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("orders_status_payment_attempted_at")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .col(Orders::PaymentAttemptedAt)
                    .to_owned(),
            )
            .await
    }
}

/// The customer's cancellation request, stored before the refund is asked for (see
/// [`OrderStore::request_cancellation`]). Both columns are nullable, so existing rows
/// need no backfill.
struct AddCancelRequest;

impl MigrationName for AddCancelRequest {
    fn name(&self) -> &str {
        "m0201_order_add_cancel_intent"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddCancelRequest {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column(timestamp_with_time_zone_null(Orders::CancelRequestedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    // Like `reason`: 200 characters of up to 4 bytes each.
                    .add_column(string_len_null(Orders::CancelReason, 800))
                    .to_owned(),
            )
            .await?;
        // The reconciler: PAID orders whose cancellation request is old.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("orders_status_cancel_requested_at")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .col(Orders::CancelRequestedAt)
                    .to_owned(),
            )
            .await
    }
}

/// The refund owed for a payment approved after its order ended (see
/// [`crate::domain::Order::owe_refund`]). Nullable: existing rows owe nothing.
struct AddRefundDue;

impl MigrationName for AddRefundDue {
    fn name(&self) -> &str {
        "m0202_order_add_refund_due"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddRefundDue {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column(string_len_null(Orders::RefundDuePaymentId, 36))
                    .to_owned(),
            )
            .await?;
        // The reconciler: orders that owe a refund. Almost none do; the index (which has
        // an entry for every row, NULLs included) finds those few without a table scan.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("orders_refund_due_payment_id")
                    .table(Orders::Table)
                    .col(Orders::RefundDuePaymentId)
                    .to_owned(),
            )
            .await
    }
}

/// Errors of the store. Unexpected database failures stay `Db`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("request {0} was used for an order with different details")]
    Conflict(Uuid),
    #[error("order not found")]
    NotFound,
    #[error(transparent)]
    Place(#[from] PlaceRefused),
    #[error(transparent)]
    Refused(#[from] Refused),
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
        if let Some(existing) = find_by_request(&txn, new.request_id).await? {
            txn.commit().await?;
            return same_terms(existing, new);
        }
        let (order, event) = Order::place(new, Uuid::now_v7(), now)?;
        let inserted = entity::Entity::insert(to_row(&order))
            .on_conflict(
                OnConflict::column(entity::Column::RequestId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        if inserted == 1 {
            outbox::enqueue(&txn, events::to_outbox(&order, &event)).await?;
            txn.commit().await?;
            self.signal.wake();
            return Ok(Placed::Created(order));
        }
        // A concurrent call with the same request id committed first.
        let existing = find_by_request(&txn, new.request_id).await?;
        txn.commit().await?;
        let existing = existing.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "request {} conflicted but has no order",
                new.request_id
            ))
        })?;
        same_terms(existing, new)
    }

    /// One order.
    pub async fn get(&self, order_id: Uuid) -> Result<Order, StoreError> {
        find(&self.db, order_id, false)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// One page of a customer's orders, newest first, and whether more follow.
    pub async fn list(&self, q: &ListQuery) -> Result<(Vec<Order>, bool), StoreError> {
        let mut select = entity::Entity::find()
            .filter(entity::Column::CustomerId.eq(q.customer_id.as_ref()))
            .order_by_desc(entity::Column::OrderId);
        if let Some(s) = q.status {
            select = select.filter(entity::Column::Status.eq(status_str(s)));
        }
        if let Some(after) = q.after {
            select = select.filter(entity::Column::OrderId.lt(after.to_string()));
        }
        let rows = select.limit(q.limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > q.limit;
        let orders = rows
            .into_iter()
            .take(q.limit as usize)
            .map(from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((orders, more))
    }

    /// Up to `limit` PENDING_PAYMENT orders whose latest Pay attempt started before
    /// `cutoff`, oldest first.
    pub async fn stale_pending(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Order>, StoreError> {
        // On SQLite the times are RFC 3339 text ending in `+00:00`; such text sorts in
        // time order even when the fraction has a varying number of digits ('+' sorts
        // before every digit), so `<` compares times on both backends.
        let rows = entity::Entity::find()
            .filter(entity::Column::Status.eq(status_str(OrderStatus::PendingPayment)))
            .filter(entity::Column::PaymentAttemptedAt.lt(cutoff))
            .order_by_asc(entity::Column::OrderId)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(platform::db::readable_rows(
            "stale pending orders",
            rows,
            |m| m.order_id.clone(),
            from_row,
        ))
    }

    /// Up to `limit` PAID orders whose cancellation was requested before `cutoff`,
    /// oldest request first: their refund was asked for but their CANCELLED never
    /// recorded.
    pub async fn stalled_cancellations(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Order>, StoreError> {
        // Times compare as in `stale_pending`; NULL (no request) never passes `<`.
        let rows = entity::Entity::find()
            .filter(entity::Column::Status.eq(status_str(OrderStatus::Paid)))
            .filter(entity::Column::CancelRequestedAt.lt(cutoff))
            .order_by_asc(entity::Column::CancelRequestedAt)
            .order_by_asc(entity::Column::OrderId)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(platform::db::readable_rows(
            "stalled cancellations",
            rows,
            |m| m.order_id.clone(),
            from_row,
        ))
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
        let current = find(&txn, order_id, true)
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
        let rows = entity::Entity::find()
            .filter(entity::Column::RefundDuePaymentId.is_not_null())
            .order_by_asc(entity::Column::OrderId)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(platform::db::readable_rows(
            "orders owing a refund",
            rows,
            |m| m.order_id.clone(),
            from_row,
        ))
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
        // Times compare as in `stale_pending`.
        let mut select = entity::Entity::find()
            .filter(entity::Column::Status.ne(status_str(OrderStatus::PendingPayment)))
            .filter(entity::Column::UpdatedAt.lt(before))
            .filter(
                sea_orm::Condition::any()
                    .add(entity::Column::UpdatedAt.gte(since))
                    .add(
                        sea_orm::Condition::all()
                            .add(entity::Column::Status.eq(status_str(OrderStatus::Paid)))
                            .add(entity::Column::SessionStart.gt(sessions_after)),
                    ),
            )
            .order_by_asc(entity::Column::OrderId)
            .limit(limit);
        if let Some(after) = after {
            select = select.filter(entity::Column::OrderId.gt(after.to_string()));
        }
        let rows = select.all(&self.db).await?;
        let next = if (rows.len() as u64) < limit {
            None
        } else {
            rows.last().and_then(|m| Uuid::parse_str(&m.order_id).ok())
        };
        let orders =
            platform::db::readable_rows("settled orders", rows, |m| m.order_id.clone(), from_row);
        Ok((orders, next))
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
    let current = find(conn, order_id, true)
        .await?
        .ok_or(StoreError::NotFound)?;
    match decide(&current, now())? {
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
    let res = entity::Entity::update_many()
        .set(to_row(next))
        .filter(entity::Column::OrderId.eq(current.order_id.to_string()))
        .filter(entity::Column::Version.eq(current.version))
        .filter(entity::Column::Status.eq(status_str(current.status)))
        .exec(conn)
        .await?;
    if res.rows_affected != 1 {
        return Err(DbErr::RecordNotUpdated);
    }
    Ok(())
}

fn same_terms(existing: Order, new: &NewOrder) -> Result<Placed, StoreError> {
    if existing.matches(new) {
        Ok(Placed::Existing(existing))
    } else {
        Err(StoreError::Conflict(new.request_id))
    }
}

async fn find<C: ConnectionTrait>(
    conn: &C,
    order_id: Uuid,
    lock: bool,
) -> Result<Option<Order>, StoreError> {
    let mut select = entity::Entity::find_by_id(order_id.to_string());
    if lock && conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        select = select.lock(LockType::Update);
    }
    select.one(conn).await?.map(from_row).transpose()
}

async fn find_by_request<C: ConnectionTrait>(
    conn: &C,
    request_id: Uuid,
) -> Result<Option<Order>, StoreError> {
    entity::Entity::find()
        .filter(entity::Column::RequestId.eq(request_id.to_string()))
        .one(conn)
        .await?
        .map(from_row)
        .transpose()
}

fn status_str(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::PendingPayment => "PENDING_PAYMENT",
        OrderStatus::Paid => "PAID",
        OrderStatus::PaymentDeclined => "PAYMENT_DECLINED",
        OrderStatus::Cancelled => "CANCELLED",
        OrderStatus::Rejected => "REJECTED",
    }
}

fn to_row(o: &Order) -> entity::ActiveModel {
    entity::ActiveModel {
        order_id: Set(o.order_id.to_string()),
        request_id: Set(o.request_id.to_string()),
        customer_id: Set(o.customer_id.to_string()),
        talent_id: Set(o.booking.talent_id.to_string()),
        session_start: Set(o.booking.session_start),
        session_minutes: Set(o.booking.session_minutes),
        amount_minor: Set(o.money.amount.get()),
        currency: Set(o.money.currency.code().to_owned()),
        card_last4: Set(o.card_last4.clone()),
        status: Set(status_str(o.status).to_owned()),
        payment_id: Set(o.payment_id.map(|p| p.to_string())),
        decline_reason: Set(o.decline_reason.clone()),
        refunded: Set(o.refunded),
        reason: Set(o.reason.clone()),
        cancel_requested_at: Set(o.cancel_request.as_ref().map(|r| r.requested_at)),
        cancel_reason: Set(o.cancel_request.as_ref().and_then(|r| r.reason.clone())),
        refund_due_payment_id: Set(o.refund_due.map(|p| p.to_string())),
        version: Set(o.version),
        payment_attempted_at: Set(o.payment_attempted_at),
        created_at: Set(o.created_at),
        updated_at: Set(o.updated_at),
    }
}

/// Parses a row back into the domain; a row that does not parse (or breaks an
/// invariant, such as a decided order without its payment) is reported, not trusted.
fn from_row(m: entity::Model) -> Result<Order, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("order {}: {what}", m.order_id));
    let status = OrderStatus::ALL
        .into_iter()
        .find(|s| status_str(*s) == m.status)
        .ok_or_else(|| corrupt("status"))?;
    let payment_id = m
        .payment_id
        .as_deref()
        .map(Uuid::parse_str)
        .transpose()
        .map_err(|_| corrupt("payment_id"))?;
    if matches!(status, OrderStatus::Paid | OrderStatus::PaymentDeclined) && payment_id.is_none() {
        return Err(corrupt("decided without a payment_id"));
    }
    let cancel_request = match (m.cancel_requested_at, &m.cancel_reason) {
        (Some(requested_at), reason) => Some(CancelRequest {
            requested_at,
            reason: reason.clone(),
        }),
        (None, None) => None,
        (None, Some(_)) => return Err(corrupt("cancel_reason without cancel_requested_at")),
    };
    Ok(Order {
        order_id: Uuid::parse_str(&m.order_id).map_err(|_| corrupt("order_id"))?,
        request_id: Uuid::parse_str(&m.request_id).map_err(|_| corrupt("request_id"))?,
        customer_id: ExternalId::try_from(m.customer_id.clone())
            .map_err(|_| corrupt("customer_id"))?,
        booking: Booking {
            talent_id: ExternalId::try_from(m.talent_id.clone())
                .map_err(|_| corrupt("talent_id"))?,
            session_start: m.session_start,
            session_minutes: m.session_minutes,
        },
        money: Money {
            amount: AmountMinor::try_from(m.amount_minor).map_err(|_| corrupt("amount_minor"))?,
            currency: Currency::try_from(m.currency.as_str()).map_err(|_| corrupt("currency"))?,
        },
        card_last4: m.card_last4.clone(),
        status,
        payment_id,
        decline_reason: m.decline_reason.clone(),
        refunded: m.refunded,
        reason: m.reason.clone(),
        cancel_request,
        refund_due: m
            .refund_due_payment_id
            .as_deref()
            .map(Uuid::parse_str)
            .transpose()
            .map_err(|_| corrupt("refund_due_payment_id"))?,
        version: m.version,
        payment_attempted_at: m.payment_attempted_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}
