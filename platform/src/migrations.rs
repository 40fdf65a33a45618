//! Tables the platform itself owns in every service database: the transactional
//! outbox and the consumer inbox. A service lists [`CreateOutbox`] and
//! [`CreateInbox`] in its own migrator before its domain tables.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_pk_auto, blob, string, string_len, timestamp_with_time_zone};

/// Creates `outbox_events`: events written in the same transaction as the state
/// change they announce, waiting for the relay to publish them.
pub struct CreateOutbox;

/// Creates `inbox_events`: ids of events a consumer has applied, so a redelivery
/// is recognised and acknowledged without being applied twice.
pub struct CreateInbox;

// Explicit names: the derive would name both after this module, and migration
// names must be unique within a service's migrator.
impl MigrationName for CreateOutbox {
    fn name(&self) -> &str {
        "m0001_platform_create_outbox"
    }
}

impl MigrationName for CreateInbox {
    fn name(&self) -> &str {
        "m0002_platform_create_inbox"
    }
}

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Id,
    EventId,
    RoutingKey,
    Payload,
    Traceparent,
    CreatedAt,
}

#[derive(DeriveIden)]
enum InboxEvents {
    Table,
    EventId,
    EventType,
    HandledAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .if_not_exists()
                    // The auto-increment id is the publishing order.
                    .col(big_pk_auto(OutboxEvents::Id))
                    .col(string_len(OutboxEvents::EventId, 36).unique_key())
                    .col(string_len(OutboxEvents::RoutingKey, 255))
                    .col(blob(OutboxEvents::Payload))
                    .col(string_len(OutboxEvents::Traceparent, 55))
                    .col(timestamp_with_time_zone(OutboxEvents::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OutboxEvents::Table).to_owned())
            .await
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateInbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InboxEvents::Table)
                    .if_not_exists()
                    .col(string_len(InboxEvents::EventId, 36).primary_key())
                    .col(string(InboxEvents::EventType))
                    .col(timestamp_with_time_zone(InboxEvents::HandledAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(InboxEvents::Table).to_owned())
            .await
    }
}
