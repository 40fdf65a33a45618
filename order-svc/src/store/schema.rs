//! The `orders` table: its sea-orm entity, the stored form of its status, and the
//! migrations that build it.

use sea_orm::entity::prelude::*;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, boolean, integer, string_len, string_len_null, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};

use crate::domain::OrderStatus;

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

/// The `status` column's values: the text stored since the first release, so existing
/// rows read as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(24))")]
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
/// [`super::OrderStore::request_cancellation`]). Both columns are nullable, so existing rows
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
