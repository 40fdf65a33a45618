//! sea-orm storage for my page: the `my_page_entries` table (one row per order), its
//! migration, the read queries, and [`apply_event`], which folds one event into its
//! row inside the consumer's transaction.
//!
//! mypage-svc publishes nothing, so no write here enqueues an outbox event; the
//! outbox table exists only because every service's platform migrations create it.

use platform::values::{AmountMinor, Currency, ExternalId, Money};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{LockType, OnConflict};
use sea_orm::{DatabaseConnection, QueryOrder, QuerySelect, Set};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, integer_null, string_len, string_len_null,
    timestamp_with_time_zone, timestamp_with_time_zone_null,
};
use uuid::Uuid;

use crate::domain::{
    self, Booking, Conflict, DomainEvent, Entry, MAX_REASON_CHARS, OrderStatus, PaymentStatus,
    ReservationStatus, Versioned,
};

/// The `my_page_entries` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "my_page_entries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        pub customer_id: String,
        pub talent_id: Option<String>,
        pub session_start_time: Option<DateTimeUtc>,
        pub session_minutes: Option<i32>,
        pub amount_minor: Option<i64>,
        pub currency: Option<String>,
        pub order_status: Option<String>,
        /// Version of the order aggregate behind `order_status`; 0 while it is empty.
        pub order_version: i64,
        pub payment_status: Option<String>,
        /// Version of the payment aggregate behind `payment_status`; 0 while it is empty.
        pub payment_version: i64,
        pub reservation_status: Option<String>,
        /// Version of the reservation aggregate behind `reservation_status`; 0 while it is empty.
        pub reservation_version: i64,
        pub payment_id: Option<String>,
        pub reservation_id: Option<String>,
        pub decline_reason: Option<String>,
        pub update_time: DateTimeUtc,
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
            Box::new(CreateEntries),
        ]
    }
}

struct CreateEntries;

impl MigrationName for CreateEntries {
    fn name(&self) -> &str {
        "m0400_mypage_create_entries"
    }
}

#[derive(DeriveIden)]
enum MyPageEntries {
    Table,
    OrderId,
    CustomerId,
    TalentId,
    SessionStartTime,
    SessionMinutes,
    AmountMinor,
    Currency,
    OrderStatus,
    OrderVersion,
    PaymentStatus,
    PaymentVersion,
    ReservationStatus,
    ReservationVersion,
    PaymentId,
    ReservationId,
    DeclineReason,
    UpdateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateEntries {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MyPageEntries::Table)
                    .if_not_exists()
                    .col(string_len(MyPageEntries::OrderId, 36).primary_key())
                    .col(string_len(MyPageEntries::CustomerId, 64))
                    .col(string_len_null(MyPageEntries::TalentId, 64))
                    .col(timestamp_with_time_zone_null(
                        MyPageEntries::SessionStartTime,
                    ))
                    .col(integer_null(MyPageEntries::SessionMinutes))
                    .col(big_integer_null(MyPageEntries::AmountMinor))
                    .col(string_len_null(MyPageEntries::Currency, 3))
                    .col(string_len_null(MyPageEntries::OrderStatus, 16))
                    .col(big_integer(MyPageEntries::OrderVersion))
                    .col(string_len_null(MyPageEntries::PaymentStatus, 16))
                    .col(big_integer(MyPageEntries::PaymentVersion))
                    .col(string_len_null(MyPageEntries::ReservationStatus, 16))
                    .col(big_integer(MyPageEntries::ReservationVersion))
                    .col(string_len_null(MyPageEntries::PaymentId, 36))
                    .col(string_len_null(MyPageEntries::ReservationId, 36))
                    .col(string_len_null(
                        MyPageEntries::DeclineReason,
                        MAX_REASON_CHARS as u32,
                    ))
                    .col(timestamp_with_time_zone(MyPageEntries::UpdateTime))
                    .to_owned(),
            )
            .await?;
        // GetMyPage and WatchMyPage read one customer's rows newest order first.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("my_page_entries_customer_order")
                    .table(MyPageEntries::Table)
                    .col(MyPageEntries::CustomerId)
                    .col(MyPageEntries::OrderId)
                    .to_owned(),
            )
            .await
    }
}

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
) -> Result<Entry, ApplyError> {
    let current = match find(txn, event.order_id, true).await? {
        Some(row) => row,
        None => {
            let created = domain::apply(None, event);
            let inserted = entity::Entity::insert(to_row(&created))
                .on_conflict(
                    OnConflict::column(entity::Column::OrderId)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
            if inserted == 1 {
                return Ok(created);
            }
            // Another replica created the row since we looked: fold into theirs.
            find(txn, event.order_id, true).await?.ok_or_else(|| {
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
        entity::Entity::update(to_row(&next)).exec(txn).await?;
    }
    Ok(next)
}

/// Reads one row; `lock` takes a row lock on PostgreSQL so that replicas folding
/// events of the same order serialise (SQLite has a single writer anyway).
async fn find<C: ConnectionTrait>(
    conn: &C,
    order_id: Uuid,
    lock: bool,
) -> Result<Option<Entry>, StoreError> {
    let mut select = entity::Entity::find_by_id(order_id.to_string());
    if lock && conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        select = select.lock(LockType::Update);
    }
    select.one(conn).await?.map(from_row).transpose()
}

/// Read access to my page. Cheap to clone.
#[derive(Clone)]
pub struct MyPageStore {
    db: DatabaseConnection,
}

impl MyPageStore {
    /// A store over `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The entry of one order, if any event about it has arrived.
    pub async fn get(&self, order_id: Uuid) -> Result<Option<Entry>, StoreError> {
        find(&self.db, order_id, false).await
    }

    /// One page of `customer`'s entries, newest order first, starting after the
    /// order `after`; and whether more follow.
    pub async fn page(
        &self,
        customer: &ExternalId,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<(Vec<Entry>, bool), StoreError> {
        // Order ids are UUID v7 in canonical lower-case form, so their text order
        // is their creation order on every backend.
        let mut select = entity::Entity::find()
            .filter(entity::Column::CustomerId.eq(customer.as_ref()))
            .order_by_desc(entity::Column::OrderId);
        if let Some(after) = after {
            select = select.filter(entity::Column::OrderId.lt(after.to_string()));
        }
        let rows = select.limit(limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > limit;
        let entries = rows
            .into_iter()
            .take(limit as usize)
            .map(from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((entries, more))
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

fn order_status_str(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::PendingPayment => "PENDING_PAYMENT",
        OrderStatus::Paid => "PAID",
        OrderStatus::PaymentDeclined => "PAYMENT_DECLINED",
        OrderStatus::Cancelled => "CANCELLED",
        OrderStatus::Rejected => "REJECTED",
    }
}

fn parse_order_status(s: &str) -> Option<OrderStatus> {
    Some(match s {
        "PENDING_PAYMENT" => OrderStatus::PendingPayment,
        "PAID" => OrderStatus::Paid,
        "PAYMENT_DECLINED" => OrderStatus::PaymentDeclined,
        "CANCELLED" => OrderStatus::Cancelled,
        "REJECTED" => OrderStatus::Rejected,
        _ => return None,
    })
}

fn payment_status_str(s: PaymentStatus) -> &'static str {
    match s {
        PaymentStatus::Approved => "APPROVED",
        PaymentStatus::Declined => "DECLINED",
        PaymentStatus::Refunded => "REFUNDED",
    }
}

fn parse_payment_status(s: &str) -> Option<PaymentStatus> {
    Some(match s {
        "APPROVED" => PaymentStatus::Approved,
        "DECLINED" => PaymentStatus::Declined,
        "REFUNDED" => PaymentStatus::Refunded,
        _ => return None,
    })
}

fn reservation_status_str(s: ReservationStatus) -> &'static str {
    match s {
        ReservationStatus::Requested => "REQUESTED",
        ReservationStatus::Confirmed => "CONFIRMED",
        ReservationStatus::Rejected => "REJECTED",
        ReservationStatus::Cancelled => "CANCELLED",
    }
}

fn parse_reservation_status(s: &str) -> Option<ReservationStatus> {
    Some(match s {
        "REQUESTED" => ReservationStatus::Requested,
        "CONFIRMED" => ReservationStatus::Confirmed,
        "REJECTED" => ReservationStatus::Rejected,
        "CANCELLED" => ReservationStatus::Cancelled,
        _ => return None,
    })
}

/// A status column and its version column: `(None, 0)` for "not yet".
fn versioned_columns<S: Copy>(
    v: Option<Versioned<S>>,
    name: fn(S) -> &'static str,
) -> (Option<String>, i64) {
    match v {
        None => (None, 0),
        Some(v) => (Some(name(v.status).to_owned()), v.version),
    }
}

fn to_row(e: &Entry) -> entity::ActiveModel {
    let (order_status, order_version) = versioned_columns(e.order, order_status_str);
    let (payment_status, payment_version) = versioned_columns(e.payment, payment_status_str);
    let (reservation_status, reservation_version) =
        versioned_columns(e.reservation, reservation_status_str);
    entity::ActiveModel {
        order_id: Set(e.order_id.to_string()),
        customer_id: Set(e.customer_id.to_string()),
        talent_id: Set(e.booking.as_ref().map(|b| b.talent_id.to_string())),
        session_start_time: Set(e.booking.as_ref().map(|b| b.session_start)),
        session_minutes: Set(e.booking.as_ref().map(|b| b.session_minutes)),
        amount_minor: Set(e.price.map(|m| m.amount.get())),
        currency: Set(e.price.map(|m| m.currency.code().to_owned())),
        order_status: Set(order_status),
        order_version: Set(order_version),
        payment_status: Set(payment_status),
        payment_version: Set(payment_version),
        reservation_status: Set(reservation_status),
        reservation_version: Set(reservation_version),
        payment_id: Set(e.payment_id.map(|id| id.to_string())),
        reservation_id: Set(e.reservation_id.map(|id| id.to_string())),
        decline_reason: Set(e.decline_reason.clone()),
        update_time: Set(e.updated_at),
    }
}

/// Parses a row back into the domain; a row that does not parse is reported, not trusted.
fn from_row(m: entity::Model) -> Result<Entry, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("entry {}: {what}", m.order_id));
    let booking = match (&m.talent_id, m.session_start_time, m.session_minutes) {
        (None, None, None) => None,
        (Some(talent), Some(session_start), Some(session_minutes)) => Some(Booking {
            talent_id: ExternalId::try_from(talent.clone()).map_err(|_| corrupt("talent_id"))?,
            session_start,
            session_minutes,
        }),
        _ => return Err(corrupt("booking columns are partly empty")),
    };
    let price = match (m.amount_minor, &m.currency) {
        (None, None) => None,
        (Some(amount), Some(currency)) => Some(Money {
            amount: AmountMinor::try_from(amount).map_err(|_| corrupt("amount_minor"))?,
            currency: Currency::try_from(currency.as_str()).map_err(|_| corrupt("currency"))?,
        }),
        _ => return Err(corrupt("price columns are partly empty")),
    };
    let optional_uuid = |s: &Option<String>, what: &str| {
        s.as_deref()
            .map(Uuid::parse_str)
            .transpose()
            .map_err(|_| corrupt(what))
    };
    Ok(Entry {
        order_id: Uuid::parse_str(&m.order_id).map_err(|_| corrupt("order_id"))?,
        customer_id: ExternalId::try_from(m.customer_id.clone())
            .map_err(|_| corrupt("customer_id"))?,
        booking,
        price,
        order: versioned(&m.order_status, m.order_version, parse_order_status)
            .ok_or_else(|| corrupt("order_status/order_version"))?,
        payment: versioned(&m.payment_status, m.payment_version, parse_payment_status)
            .ok_or_else(|| corrupt("payment_status/payment_version"))?,
        reservation: versioned(
            &m.reservation_status,
            m.reservation_version,
            parse_reservation_status,
        )
        .ok_or_else(|| corrupt("reservation_status/reservation_version"))?,
        payment_id: optional_uuid(&m.payment_id, "payment_id")?,
        reservation_id: optional_uuid(&m.reservation_id, "reservation_id")?,
        decline_reason: m.decline_reason.clone(),
        updated_at: m.update_time,
    })
}

/// Reads a status column and its version; `None` when they disagree.
fn versioned<S>(
    status: &Option<String>,
    version: i64,
    parse: fn(&str) -> Option<S>,
) -> Option<Option<Versioned<S>>> {
    match status {
        None if version == 0 => Some(None),
        Some(s) if version >= 1 => parse(s).map(|status| Some(Versioned { version, status })),
        _ => None,
    }
}
