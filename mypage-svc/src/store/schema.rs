//! The `my_page_entries` table: its sea-orm entity, the stored form of its three status
//! columns, and the migration that builds it.

use sea_orm::entity::prelude::*;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, integer_null, string_len, string_len_null,
    timestamp_with_time_zone, timestamp_with_time_zone_null,
};

use crate::domain::{MAX_REASON_CHARS, OrderStatus, PaymentStatus, ReservationStatus};

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
        /// The customer's change sequence number of the last change to this row (0 for
        /// a row last changed before sequence numbers were kept); see
        /// [`super::customers`].
        pub change_seq: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `my_page_customers` table: each customer's change sequence, the position
/// WatchMyPage resume tokens point into. A transaction that changes a customer's
/// rows first takes the next number under the customer's row lock and holds it to
/// its commit, so one customer's numbers commit in order.
pub mod customers {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "my_page_customers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        /// The number of the customer's latest committed change (1, 2, ...).
        pub change_seq: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `order_status` column's values, as stored since the first release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum StoredOrderStatus {
    #[sea_orm(string_value = "PENDING_PAYMENT")]
    PendingPayment,
    #[sea_orm(string_value = "PAID")]
    Paid,
    #[sea_orm(string_value = "PAYMENT_DECLINED")]
    PaymentDeclined,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
    #[sea_orm(string_value = "REJECTED")]
    Rejected,
}

impl From<OrderStatus> for StoredOrderStatus {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::PendingPayment => Self::PendingPayment,
            OrderStatus::Paid => Self::Paid,
            OrderStatus::PaymentDeclined => Self::PaymentDeclined,
            OrderStatus::Cancelled => Self::Cancelled,
            OrderStatus::Rejected => Self::Rejected,
        }
    }
}

impl From<StoredOrderStatus> for OrderStatus {
    fn from(s: StoredOrderStatus) -> Self {
        match s {
            StoredOrderStatus::PendingPayment => Self::PendingPayment,
            StoredOrderStatus::Paid => Self::Paid,
            StoredOrderStatus::PaymentDeclined => Self::PaymentDeclined,
            StoredOrderStatus::Cancelled => Self::Cancelled,
            StoredOrderStatus::Rejected => Self::Rejected,
        }
    }
}

/// The `payment_status` column's values, as stored since the first release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum StoredPaymentStatus {
    #[sea_orm(string_value = "APPROVED")]
    Approved,
    #[sea_orm(string_value = "DECLINED")]
    Declined,
    #[sea_orm(string_value = "REFUNDED")]
    Refunded,
}

impl From<PaymentStatus> for StoredPaymentStatus {
    fn from(s: PaymentStatus) -> Self {
        match s {
            PaymentStatus::Approved => Self::Approved,
            PaymentStatus::Declined => Self::Declined,
            PaymentStatus::Refunded => Self::Refunded,
        }
    }
}

impl From<StoredPaymentStatus> for PaymentStatus {
    fn from(s: StoredPaymentStatus) -> Self {
        match s {
            StoredPaymentStatus::Approved => Self::Approved,
            StoredPaymentStatus::Declined => Self::Declined,
            StoredPaymentStatus::Refunded => Self::Refunded,
        }
    }
}

/// The `reservation_status` column's values, as stored since the first release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum StoredReservationStatus {
    #[sea_orm(string_value = "REQUESTED")]
    Requested,
    #[sea_orm(string_value = "CONFIRMED")]
    Confirmed,
    #[sea_orm(string_value = "REJECTED")]
    Rejected,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
}

impl From<ReservationStatus> for StoredReservationStatus {
    fn from(s: ReservationStatus) -> Self {
        match s {
            ReservationStatus::Requested => Self::Requested,
            ReservationStatus::Confirmed => Self::Confirmed,
            ReservationStatus::Rejected => Self::Rejected,
            ReservationStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<StoredReservationStatus> for ReservationStatus {
    fn from(s: StoredReservationStatus) -> Self {
        match s {
            StoredReservationStatus::Requested => Self::Requested,
            StoredReservationStatus::Confirmed => Self::Confirmed,
            StoredReservationStatus::Rejected => Self::Rejected,
            StoredReservationStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// The service's migrations: platform tables first, then its own.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(platform::migrations::CreateOutbox),
            Box::new(platform::migrations::CreateInbox),
            Box::new(CreateEntries),
            Box::new(AddChangePositions),
            Box::new(NumberEveryWrite),
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

struct AddChangePositions;

impl MigrationName for AddChangePositions {
    fn name(&self) -> &str {
        "m0401_mypage_change_positions"
    }
}

#[derive(DeriveIden)]
enum MyPageCustomers {
    Table,
    CustomerId,
    ChangeSeq,
}

#[derive(DeriveIden)]
enum Entries {
    #[sea_orm(iden = "my_page_entries")]
    Table,
    ChangeSeq,
}

#[async_trait::async_trait]
impl MigrationTrait for AddChangePositions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Rows written before this migration keep 0: a resumed stream already holds
        // them, from the snapshot its first stream began with.
        manager
            .alter_table(
                Table::alter()
                    .table(Entries::Table)
                    .add_column_if_not_exists(big_integer(Entries::ChangeSeq).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MyPageCustomers::Table)
                    .if_not_exists()
                    .col(string_len(MyPageCustomers::CustomerId, 64).primary_key())
                    .col(big_integer(MyPageCustomers::ChangeSeq))
                    .to_owned(),
            )
            .await
    }
}

/// The store's identity, so a resume token from another store (a database replaced
/// or reset) is refused, and, on PostgreSQL, a trigger that numbers any write that
/// did not number itself: during a rolling upgrade, replicas of the previous version
/// write rows without a change number (inserting 0, updating without touching it);
/// the trigger takes the customer's next number for them, under the same row lock,
/// so a resumed stream still finds those rows. (SQLite is one process: no replica
/// of another version writes beside this one.)
struct NumberEveryWrite;

impl MigrationName for NumberEveryWrite {
    fn name(&self) -> &str {
        "m0402_mypage_store_id_and_numbering_trigger"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for NumberEveryWrite {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS my_page_store (id VARCHAR(36) NOT NULL PRIMARY KEY)",
        )
        .await?;
        // A fresh id per database; the literal is a UUID this process generated.
        db.execute_unprepared(&format!(
            "INSERT INTO my_page_store (id) SELECT '{}' \
             WHERE NOT EXISTS (SELECT 1 FROM my_page_store)",
            uuid::Uuid::new_v4()
        ))
        .await?;
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        db.execute_unprepared(
            "CREATE OR REPLACE FUNCTION my_page_number_write() RETURNS trigger AS $$
             BEGIN
               IF (TG_OP = 'INSERT' AND NEW.change_seq = 0)
                  OR (TG_OP = 'UPDATE' AND NEW.change_seq = OLD.change_seq) THEN
                 INSERT INTO my_page_customers (customer_id, change_seq)
                   VALUES (NEW.customer_id, 1)
                   ON CONFLICT (customer_id)
                   DO UPDATE SET change_seq = my_page_customers.change_seq + 1
                   RETURNING change_seq INTO NEW.change_seq;
               END IF;
               RETURN NEW;
             END
             $$ LANGUAGE plpgsql",
        )
        .await?;
        db.execute_unprepared("DROP TRIGGER IF EXISTS my_page_entries_number ON my_page_entries")
            .await?;
        db.execute_unprepared(
            "CREATE TRIGGER my_page_entries_number BEFORE INSERT OR UPDATE ON my_page_entries \
             FOR EACH ROW EXECUTE FUNCTION my_page_number_write()",
        )
        .await?;
        Ok(())
    }
}
