//! A payment as a `payments` row and back. Reading parses every column again: a row
//! that does not parse is reported as corrupt, never trusted.

use platform::store::{booking_columns, read_stored, stored};
use platform::values::{AmountMinor, Currency, ExternalId, Money};
use sea_orm::Set;
use uuid::Uuid;

use super::StoreError;
use super::schema::{StoredDeclineReason, StoredPaymentStatus, entity};
use crate::domain::{DeclineReason, Payment, PaymentRecord};

/// The stored name of a decline reason, which the `payment.declined` event carries.
pub(crate) fn reason_str(r: DeclineReason) -> String {
    stored::<StoredDeclineReason>(r)
}

pub(super) fn to_row(p: &Payment) -> entity::ActiveModel {
    entity::ActiveModel {
        payment_id: Set(p.payment_id().to_string()),
        order_id: Set(p.order_id().to_string()),
        customer_id: Set(p.customer_id().to_string()),
        amount_minor: Set(p.money().amount.get()),
        currency: Set(p.money().currency.code().to_owned()),
        status: Set(stored::<StoredPaymentStatus>(p.status())),
        decline_reason: Set(p.decline_reason().map(stored::<StoredDeclineReason>)),
        card_last4: Set(p.card_last4().to_owned()),
        talent_id: Set(p.booking().map(|b| b.talent_id.to_string())),
        session_start_time: Set(p.booking().map(|b| b.session_start)),
        session_minutes: Set(p.booking().map(|b| b.session_minutes)),
        refund_reason: Set(p.refund_reason().map(str::to_owned)),
        void_reason: Set(p.void_reason().map(str::to_owned)),
        version: Set(p.version()),
        created_at: Set(p.created_at()),
        updated_at: Set(p.updated_at()),
    }
}

pub(super) fn from_row(m: entity::Model) -> Result<Payment, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("payment {}: {what}", m.payment_id));
    Ok(Payment::restore(PaymentRecord {
        payment_id: Uuid::parse_str(&m.payment_id).map_err(|_| corrupt("payment_id"))?,
        order_id: Uuid::parse_str(&m.order_id).map_err(|_| corrupt("order_id"))?,
        customer_id: ExternalId::try_from(m.customer_id.clone())
            .map_err(|_| corrupt("customer_id"))?,
        money: Money {
            amount: AmountMinor::try_from(m.amount_minor).map_err(|_| corrupt("amount_minor"))?,
            currency: Currency::try_from(m.currency.as_str()).map_err(|_| corrupt("currency"))?,
        },
        status: read_stored::<StoredPaymentStatus>(&m.status)
            .ok_or_else(|| corrupt("status"))?
            .into(),
        decline_reason: m
            .decline_reason
            .as_deref()
            .map(|r| read_stored::<StoredDeclineReason>(r).ok_or_else(|| corrupt("decline_reason")))
            .transpose()?
            .map(Into::into),
        card_last4: m.card_last4.clone(),
        booking: booking_columns(
            m.talent_id.as_deref(),
            m.session_start_time,
            m.session_minutes,
        )
        .map_err(corrupt)?,
        refund_reason: m.refund_reason.clone(),
        void_reason: m.void_reason.clone(),
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }))
}
