//! An order as an `orders` row and back. Reading parses every column again and checks
//! the invariants the domain relies on: a row that does not parse is reported as
//! corrupt, never trusted.

use platform::store::{optional_uuid, read_stored, stored};
use platform::values::{AmountMinor, Currency, ExternalId, Money};
use sea_orm::Set;
use uuid::Uuid;

use super::StoreError;
use super::schema::{StoredOrderStatus, entity};
use crate::domain::{Booking, Order, OrderRecord};

pub(super) fn to_row(o: &Order) -> entity::ActiveModel {
    entity::ActiveModel {
        order_id: Set(o.order_id().to_string()),
        request_id: Set(o.request_id().to_string()),
        customer_id: Set(o.customer_id().to_string()),
        talent_id: Set(o.booking().talent_id.to_string()),
        session_start: Set(o.booking().session_start),
        session_minutes: Set(o.booking().session_minutes),
        amount_minor: Set(o.money().amount.get()),
        currency: Set(o.money().currency.code().to_owned()),
        card_last4: Set(o.card_last4().to_owned()),
        status: Set(stored::<StoredOrderStatus>(o.status())),
        payment_id: Set(o.payment_id().map(|p| p.to_string())),
        decline_reason: Set(o.decline_reason().map(str::to_owned)),
        refunded: Set(o.refunded()),
        reason: Set(o.reason().map(str::to_owned)),
        cancel_requested_at: Set(o.cancel_request().map(|r| r.requested_at())),
        cancel_reason: Set(o
            .cancel_request()
            .and_then(|r| r.reason().map(str::to_owned))),
        refund_due_payment_id: Set(o.refund_due().map(|p| p.to_string())),
        version: Set(o.version()),
        payment_attempted_at: Set(o.payment_attempted_at()),
        created_at: Set(o.created_at()),
        updated_at: Set(o.updated_at()),
    }
}

/// Parses a row back into the domain; a row that does not parse, or whose parts
/// break a rule [`Order::restore`] checks (such as a decided order without its
/// payment), is reported, not trusted.
pub(super) fn from_row(m: entity::Model) -> Result<Order, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("order {}: {what}", m.order_id));
    Order::restore(OrderRecord {
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
        status: read_stored::<StoredOrderStatus>(&m.status)
            .ok_or_else(|| corrupt("status"))?
            .into(),
        payment_id: optional_uuid(m.payment_id.as_deref()).map_err(|_| corrupt("payment_id"))?,
        decline_reason: m.decline_reason.clone(),
        refunded: m.refunded,
        reason: m.reason.clone(),
        cancel_requested_at: m.cancel_requested_at,
        cancel_reason: m.cancel_reason.clone(),
        refund_due: optional_uuid(m.refund_due_payment_id.as_deref())
            .map_err(|_| corrupt("refund_due_payment_id"))?,
        version: m.version,
        payment_attempted_at: m.payment_attempted_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
    .map_err(|e| corrupt(&e.to_string()))
}
