//! sea-orm storage for payments: the `payments` table, its migration, and the
//! transactions that change a payment together with its outbox event.
//!
//! Idempotency lives in the schema: `order_id` is unique, and a charge inserts with
//! `ON CONFLICT (order_id) DO NOTHING`. Of any number of concurrent charges for one
//! order exactly one inserts (and writes one event); the others read the winner.
//! A void inserts under the same key, so between a Pay and a Void for one order the
//! first to commit decides, and the other reads what it decided.

use platform::outbox::{self, OutboxSignal};
use platform::time::now;
use platform::values::{AmountMinor, Currency, ExternalId, Money};
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
    Booking, ChargeRequest, DeclineReason, Payment, PaymentStatus, Refund, RefundRefused,
    VoidRequest,
};
use crate::events;

/// The `payments` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub payment_id: String,
        #[sea_orm(unique)]
        pub order_id: String,
        pub customer_id: String,
        pub amount_minor: i64,
        pub currency: String,
        pub status: String,
        pub decline_reason: Option<String>,
        pub card_last4: String,
        /// The booking columns are all set, or all null (a void, an older row).
        pub talent_id: Option<String>,
        pub session_start_time: Option<DateTimeUtc>,
        pub session_minutes: Option<i32>,
        pub refund_reason: Option<String>,
        pub void_reason: Option<String>,
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
            Box::new(CreatePayments),
            Box::new(AddVoidReason),
            Box::new(AddBooking),
        ]
    }
}

struct CreatePayments;

impl MigrationName for CreatePayments {
    fn name(&self) -> &str {
        "m0100_payment_create_payments"
    }
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    PaymentId,
    OrderId,
    CustomerId,
    AmountMinor,
    Currency,
    Status,
    DeclineReason,
    CardLast4,
    RefundReason,
    VoidReason,
    TalentId,
    SessionStartTime,
    SessionMinutes,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePayments {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .if_not_exists()
                    .col(string_len(Payments::PaymentId, 36).primary_key())
                    .col(string_len(Payments::OrderId, 36).unique_key())
                    .col(string_len(Payments::CustomerId, 64))
                    .col(big_integer(Payments::AmountMinor))
                    .col(string_len(Payments::Currency, 3))
                    .col(string_len(Payments::Status, 16))
                    .col(string_len_null(Payments::DeclineReason, 32))
                    .col(string_len(Payments::CardLast4, 4))
                    .col(string_len_null(Payments::RefundReason, 800))
                    .col(big_integer(Payments::Version))
                    .col(timestamp_with_time_zone(Payments::CreatedAt))
                    .col(timestamp_with_time_zone(Payments::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("payments_customer_id")
                    .table(Payments::Table)
                    .col(Payments::CustomerId)
                    .col(Payments::PaymentId)
                    .to_owned(),
            )
            .await
    }
}

/// Voids (see [`crate::domain::Payment::void`]) keep their reason; the status column
/// already fits `VOIDED`. Nullable, so existing rows need no backfill.
struct AddVoidReason;

impl MigrationName for AddVoidReason {
    fn name(&self) -> &str {
        "m0101_payment_add_void_reason"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddVoidReason {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    // Like `refund_reason`: 200 characters of up to 4 bytes each.
                    .add_column(string_len_null(Payments::VoidReason, 800))
                    .to_owned(),
            )
            .await
    }
}

/// The booking a payment pays for, kept so that reservation-svc's anti-entropy pass
/// can make a booking whose `payment.approved` was lost. Nullable: a void has none,
/// and older rows are left without one.
struct AddBooking;

impl MigrationName for AddBooking {
    fn name(&self) -> &str {
        "m0102_payment_add_booking"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddBooking {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in [
            string_len_null(Payments::TalentId, 64),
            timestamp_with_time_zone_null(Payments::SessionStartTime),
            integer_null(Payments::SessionMinutes),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(Payments::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// Errors of the store. Unexpected database failures stay `Db`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a payment for order {0} already exists with different terms")]
    Conflict(Uuid),
    #[error("order {0} was voided for a different customer, amount or currency")]
    VoidConflict(Uuid),
    #[error("payment not found")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] RefundRefused),
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

    /// Charges once per order. Returns the payment and whether this call created it.
    pub async fn charge(&self, req: &ChargeRequest) -> Result<(Payment, bool), StoreError> {
        let (payment, event) = Payment::charge(req, Uuid::now_v7(), now());
        let txn = self.db.begin().await?;
        let inserted = entity::Entity::insert(to_row(&payment))
            .on_conflict(
                OnConflict::column(entity::Column::OrderId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        if inserted == 1 {
            outbox::enqueue(&txn, events::to_outbox(&event)).await?;
            txn.commit().await?;
            self.signal.wake();
            return Ok((payment, true));
        }
        let existing = find(&txn, Lookup::ByOrderId(req.order_id), false).await?;
        txn.commit().await?;
        let existing = existing.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "order {} conflicted but has no payment",
                req.order_id
            ))
        })?;
        if existing.matches(req) {
            Ok((existing, false))
        } else {
            Err(StoreError::Conflict(req.order_id))
        }
    }

    /// Closes the order's payment unless one exists: returns the VOIDED payment this
    /// call (or an earlier one) recorded, or the payment a Pay made first, unchanged.
    pub async fn void(&self, req: &VoidRequest) -> Result<Payment, StoreError> {
        let void = Payment::void(req, Uuid::now_v7(), now());
        let inserted = entity::Entity::insert(to_row(&void))
            .on_conflict(
                OnConflict::column(entity::Column::OrderId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        if inserted == 1 {
            return Ok(void);
        }
        let existing = find(&self.db, Lookup::ByOrderId(req.order_id), false)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "order {} conflicted but has no payment",
                    req.order_id
                ))
            })?;
        if existing.matches_void(req) {
            Ok(existing)
        } else {
            Err(StoreError::VoidConflict(req.order_id))
        }
    }

    /// Refunds a payment once; later calls return it unchanged.
    pub async fn refund(
        &self,
        payment_id: Uuid,
        reason: Option<String>,
    ) -> Result<Payment, StoreError> {
        let txn = self.db.begin().await?;
        // Row lock on PostgreSQL so concurrent refunds of one payment serialise.
        let current = find(&txn, Lookup::ByPaymentId(payment_id), true)
            .await?
            .ok_or(StoreError::NotFound)?;
        match current.refund(reason, now())? {
            Refund::AlreadyRefunded => {
                txn.commit().await?;
                Ok(current)
            }
            Refund::Refunded(refunded, event) => {
                let res = entity::Entity::update_many()
                    .set(to_row(&refunded))
                    .filter(entity::Column::PaymentId.eq(payment_id.to_string()))
                    .filter(entity::Column::Version.eq(current.version))
                    .exec(&txn)
                    .await?;
                if res.rows_affected != 1 {
                    // Lost a race without row locks (SQLite serialises, so not expected).
                    return Err(StoreError::Db(DbErr::RecordNotUpdated));
                }
                outbox::enqueue(&txn, events::to_outbox(&event)).await?;
                txn.commit().await?;
                self.signal.wake();
                Ok(refunded)
            }
        }
    }

    /// One payment.
    pub async fn get(&self, lookup: Lookup) -> Result<Payment, StoreError> {
        find(&self.db, lookup, false)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// One page of payments, newest first, and whether more follow.
    pub async fn list(&self, q: &ListQuery) -> Result<(Vec<Payment>, bool), StoreError> {
        let mut select = entity::Entity::find().order_by_desc(entity::Column::PaymentId);
        if let Some(c) = &q.customer_id {
            select = select.filter(entity::Column::CustomerId.eq(c.as_ref()));
        }
        if let Some(s) = q.status {
            select = select.filter(entity::Column::Status.eq(status_str(s)));
        }
        if let Some(after) = q.after {
            select = select.filter(entity::Column::PaymentId.lt(after.to_string()));
        }
        let rows = select.limit(q.limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > q.limit;
        let payments = rows
            .into_iter()
            .take(q.limit as usize)
            .map(from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((payments, more))
    }
}

async fn find<C: ConnectionTrait>(
    conn: &C,
    lookup: Lookup,
    lock: bool,
) -> Result<Option<Payment>, StoreError> {
    let mut select = match lookup {
        Lookup::ByPaymentId(id) => entity::Entity::find_by_id(id.to_string()),
        Lookup::ByOrderId(id) => {
            entity::Entity::find().filter(entity::Column::OrderId.eq(id.to_string()))
        }
    };
    if lock && conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        select = select.lock(LockType::Update);
    }
    select.one(conn).await?.map(from_row).transpose()
}

fn status_str(s: PaymentStatus) -> &'static str {
    match s {
        PaymentStatus::Approved => "APPROVED",
        PaymentStatus::Declined => "DECLINED",
        PaymentStatus::Refunded => "REFUNDED",
        PaymentStatus::Voided => "VOIDED",
    }
}

pub(crate) fn reason_str(r: DeclineReason) -> &'static str {
    match r {
        DeclineReason::CardDeclined => "CARD_DECLINED",
        DeclineReason::InsufficientFunds => "INSUFFICIENT_FUNDS",
        DeclineReason::ExpiredCard => "EXPIRED_CARD",
        DeclineReason::LimitExceeded => "LIMIT_EXCEEDED",
    }
}

fn to_row(p: &Payment) -> entity::ActiveModel {
    entity::ActiveModel {
        payment_id: Set(p.payment_id.to_string()),
        order_id: Set(p.order_id.to_string()),
        customer_id: Set(p.customer_id.to_string()),
        amount_minor: Set(p.money.amount.get()),
        currency: Set(p.money.currency.code().to_owned()),
        status: Set(status_str(p.status).to_owned()),
        decline_reason: Set(p.decline_reason.map(|r| reason_str(r).to_owned())),
        card_last4: Set(p.card_last4.clone()),
        talent_id: Set(p.booking.as_ref().map(|b| b.talent_id.to_string())),
        session_start_time: Set(p.booking.as_ref().map(|b| b.session_start)),
        session_minutes: Set(p.booking.as_ref().map(|b| b.session_minutes)),
        refund_reason: Set(p.refund_reason.clone()),
        void_reason: Set(p.void_reason.clone()),
        version: Set(p.version),
        created_at: Set(p.created_at),
        updated_at: Set(p.updated_at),
    }
}

/// Parses a row back into the domain; a row that does not parse is reported, not trusted.
fn from_row(m: entity::Model) -> Result<Payment, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("payment {}: {what}", m.payment_id));
    let status = match m.status.as_str() {
        "APPROVED" => PaymentStatus::Approved,
        "DECLINED" => PaymentStatus::Declined,
        "REFUNDED" => PaymentStatus::Refunded,
        "VOIDED" => PaymentStatus::Voided,
        _ => return Err(corrupt("status")),
    };
    let decline_reason = match m.decline_reason.as_deref() {
        None => None,
        Some("CARD_DECLINED") => Some(DeclineReason::CardDeclined),
        Some("INSUFFICIENT_FUNDS") => Some(DeclineReason::InsufficientFunds),
        Some("EXPIRED_CARD") => Some(DeclineReason::ExpiredCard),
        Some("LIMIT_EXCEEDED") => Some(DeclineReason::LimitExceeded),
        Some(_) => return Err(corrupt("decline_reason")),
    };
    Ok(Payment {
        payment_id: Uuid::parse_str(&m.payment_id).map_err(|_| corrupt("payment_id"))?,
        order_id: Uuid::parse_str(&m.order_id).map_err(|_| corrupt("order_id"))?,
        customer_id: ExternalId::try_from(m.customer_id.clone())
            .map_err(|_| corrupt("customer_id"))?,
        money: Money {
            amount: AmountMinor::try_from(m.amount_minor).map_err(|_| corrupt("amount_minor"))?,
            currency: Currency::try_from(m.currency.as_str()).map_err(|_| corrupt("currency"))?,
        },
        status,
        decline_reason,
        card_last4: m.card_last4.clone(),
        booking: match (&m.talent_id, m.session_start_time, m.session_minutes) {
            (Some(talent_id), Some(session_start), Some(session_minutes)) => Some(Booking {
                talent_id: ExternalId::try_from(talent_id.clone())
                    .map_err(|_| corrupt("talent_id"))?,
                session_start,
                session_minutes,
            }),
            (None, None, None) => None,
            _ => return Err(corrupt("booking columns partly set")),
        },
        refund_reason: m.refund_reason.clone(),
        void_reason: m.void_reason.clone(),
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}
