//! The `payments` table: its sea-orm entity, the stored form of its enum columns, and
//! the migrations that build it.

use sea_orm::entity::prelude::*;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, integer_null, string_len, string_len_null, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};

use crate::domain::{DeclineReason, PaymentStatus};

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

/// The `status` column's values: the text stored since the first release, so existing
/// rows read as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum StoredPaymentStatus {
    #[sea_orm(string_value = "APPROVED")]
    Approved,
    #[sea_orm(string_value = "DECLINED")]
    Declined,
    #[sea_orm(string_value = "REFUNDED")]
    Refunded,
    #[sea_orm(string_value = "VOIDED")]
    Voided,
}

impl From<PaymentStatus> for StoredPaymentStatus {
    fn from(s: PaymentStatus) -> Self {
        match s {
            PaymentStatus::Approved => Self::Approved,
            PaymentStatus::Declined => Self::Declined,
            PaymentStatus::Refunded => Self::Refunded,
            PaymentStatus::Voided => Self::Voided,
        }
    }
}

impl From<StoredPaymentStatus> for PaymentStatus {
    fn from(s: StoredPaymentStatus) -> Self {
        match s {
            StoredPaymentStatus::Approved => Self::Approved,
            StoredPaymentStatus::Declined => Self::Declined,
            StoredPaymentStatus::Refunded => Self::Refunded,
            StoredPaymentStatus::Voided => Self::Voided,
        }
    }
}

/// The `decline_reason` column's values, as stored since the first release. The
/// `payment.declined` event carries the same names (see [`crate::events`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum StoredDeclineReason {
    #[sea_orm(string_value = "CARD_DECLINED")]
    CardDeclined,
    #[sea_orm(string_value = "INSUFFICIENT_FUNDS")]
    InsufficientFunds,
    #[sea_orm(string_value = "EXPIRED_CARD")]
    ExpiredCard,
    #[sea_orm(string_value = "LIMIT_EXCEEDED")]
    LimitExceeded,
}

impl From<DeclineReason> for StoredDeclineReason {
    fn from(r: DeclineReason) -> Self {
        match r {
            DeclineReason::CardDeclined => Self::CardDeclined,
            DeclineReason::InsufficientFunds => Self::InsufficientFunds,
            DeclineReason::ExpiredCard => Self::ExpiredCard,
            DeclineReason::LimitExceeded => Self::LimitExceeded,
        }
    }
}

impl From<StoredDeclineReason> for DeclineReason {
    fn from(r: StoredDeclineReason) -> Self {
        match r {
            StoredDeclineReason::CardDeclined => Self::CardDeclined,
            StoredDeclineReason::InsufficientFunds => Self::InsufficientFunds,
            StoredDeclineReason::ExpiredCard => Self::ExpiredCard,
            StoredDeclineReason::LimitExceeded => Self::LimitExceeded,
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
