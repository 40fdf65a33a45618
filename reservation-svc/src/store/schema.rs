//! The `reservations` table: its sea-orm entity, the stored form of its status, and
//! the migrations that build it.

use sea_orm::entity::prelude::*;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, integer_null, string_len, string_len_null, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};

use crate::domain::ReservationStatus;

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

/// The `status` column's values: the text stored since the first release, so existing
/// rows read as they are.
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
