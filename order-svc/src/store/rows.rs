//! An order as an `orders` row and back. Reading parses every column again and checks
//! the invariants the domain relies on: a row that does not parse is reported as
//! corrupt, never trusted.

use platform::store::optional_uuid;
use platform::values::{AmountMinor, Currency, ExternalId, Money};
use sea_orm::Set;
use uuid::Uuid;

use super::StoreError;
use super::schema::entity;
use crate::domain::{Booking, CancelRequest, Order, OrderStatus};

pub(super) fn to_row(o: &Order) -> entity::ActiveModel {
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
        status: Set(o.status.into()),
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
pub(super) fn from_row(m: entity::Model) -> Result<Order, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("order {}: {what}", m.order_id));
    let status = OrderStatus::from(m.status);
    let payment_id = optional_uuid(m.payment_id.as_deref()).map_err(|_| corrupt("payment_id"))?;
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
        refund_due: optional_uuid(m.refund_due_payment_id.as_deref())
            .map_err(|_| corrupt("refund_due_payment_id"))?,
        version: m.version,
        payment_attempted_at: m.payment_attempted_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}
