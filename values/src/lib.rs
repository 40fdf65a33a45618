//! talentshare's pure shared values: what every service accepts from clients and
//! stores (ids, money, currencies, card numbers, reasons, the field-violation list
//! their validation yields), [`time`] at the precision every backend stores, and
//! [`paging`] tokens, and the [`Booking`] every service carries. No I/O: no runtime, no network, no database, so the services'
//! domain cores can depend on this crate and nothing else of the platform
//! (`tests/purity.rs` keeps it that way).
//!
//! These carry no business rules, only the shape of valid input, so that order-svc
//! and payment-svc refuse exactly the same card numbers and currencies. Each type has
//! one fallible constructor; once built, a value is valid by construction.

pub mod booking;
pub mod paging;
pub mod time;

pub use booking::{Booking, SESSION_MINUTES};

use std::fmt;

/// One invalid request field: its path in the request (`booking.talent_id`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Field path as the client spelled it in the request.
    pub field: String,
    /// What is wrong, in words a client developer can act on.
    pub description: String,
}

/// Collects every violation of one request, so the client sees all of them at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations(Vec<Violation>);

impl Violations {
    /// No violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(Violation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Keeps the value when `result` is Ok, records the violation under `field` otherwise.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    /// `Ok(())` when nothing was recorded.
    pub fn into_result(self) -> Result<(), Violations> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }

    /// The recorded violations.
    pub fn iter(&self) -> impl Iterator<Item = &Violation> {
        self.0.iter()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// Why a single value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("is required")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("may only contain letters, digits, '.', '_' and '-'")]
    BadCharacters,
    #[error("must be a UUID")]
    NotUuid,
    #[error("must be greater than zero")]
    NotPositive,
    #[error("must be at most {0}")]
    TooLarge(i64),
    #[error("must be one of KRW, JPY, USD, EUR, GBP")]
    UnknownCurrency,
    #[error("must be 12 to 19 digits (spaces allowed)")]
    CardFormat,
    #[error("fails the Luhn check")]
    CardChecksum,
}

/// Longest free-text reason (refund, cancellation, rejection), in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// An optional free-text reason: empty means none; longer than [`MAX_REASON_CHARS`]
/// is refused.
pub fn optional_reason(s: &str) -> Result<Option<String>, ValueError> {
    if s.chars().count() > MAX_REASON_CHARS {
        return Err(ValueError::TooLong(MAX_REASON_CHARS));
    }
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

/// Parses a system-generated id (UUID, any version, canonical or simple form).
pub fn parse_uuid(s: &str) -> Result<uuid::Uuid, ValueError> {
    if s.is_empty() {
        return Err(ValueError::Empty);
    }
    if s.len() > 36 {
        return Err(ValueError::NotUuid);
    }
    uuid::Uuid::parse_str(s).map_err(|_| ValueError::NotUuid)
}

/// An id owned by another system (customer, talent, manager): 1–64 characters of
/// `[A-Za-z0-9._-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExternalId(String);

impl ExternalId {
    /// Longest accepted id.
    pub const MAX_LEN: usize = 64;
}

impl TryFrom<String> for ExternalId {
    type Error = ValueError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(ValueError::TooLong(Self::MAX_LEN));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ValueError::BadCharacters);
        }
        Ok(Self(s))
    }
}

impl AsRef<str> for ExternalId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ISO 4217 currencies talentshare accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Currency {
    Krw,
    Jpy,
    Usd,
    Eur,
    Gbp,
}

impl Currency {
    /// The ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Krw => "KRW",
            Currency::Jpy => "JPY",
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Gbp => "GBP",
        }
    }
}

impl TryFrom<&str> for Currency {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        match s {
            "" => Err(ValueError::Empty),
            "KRW" => Ok(Currency::Krw),
            "JPY" => Ok(Currency::Jpy),
            "USD" => Ok(Currency::Usd),
            "EUR" => Ok(Currency::Eur),
            "GBP" => Ok(Currency::Gbp),
            _ => Err(ValueError::UnknownCurrency),
        }
    }
}

/// A positive amount in minor units (cents, or won for KRW).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AmountMinor(i64);

impl AmountMinor {
    /// Largest accepted amount: far above any session price, far below i64 overflow
    /// when amounts are summed.
    pub const MAX: i64 = 1_000_000_000_000;

    /// The amount in minor units.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for AmountMinor {
    type Error = ValueError;

    fn try_from(v: i64) -> Result<Self, Self::Error> {
        if v <= 0 {
            Err(ValueError::NotPositive)
        } else if v > Self::MAX {
            Err(ValueError::TooLarge(Self::MAX))
        } else {
            Ok(Self(v))
        }
    }
}

/// Money: an amount in minor units and its currency. Never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    /// The amount.
    pub amount: AmountMinor,
    /// Its currency.
    pub currency: Currency,
}

/// A card number that passed format and Luhn checks. Its `Debug` shows only the
/// last four digits, and nothing but [`CardNumber::last4`] should leave the
/// request that carried it.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    /// The last four digits: the only part that may be stored or shown.
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// The digits, for the charge decision only. Never log or store them.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for CardNumber {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        if s.len() > 40 || !s.chars().all(|c| c.is_ascii_digit() || c == ' ') {
            return Err(ValueError::CardFormat);
        }
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        if !(12..=19).contains(&digits.len()) {
            return Err(ValueError::CardFormat);
        }
        if !luhn_valid(&digits) {
            return Err(ValueError::CardChecksum);
        }
        Ok(Self(digits))
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber(****{})", self.last4())
    }
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn luhn_accepts_known_test_cards_and_rejects_a_typo() {
        for ok in [
            "4242424242424242",
            "4000 0000 0000 0002",
            "5555555555554444",
            "378282246310005",
        ] {
            assert!(CardNumber::try_from(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            CardNumber::try_from("4242424242424241"),
            Err(ValueError::CardChecksum)
        );
    }

    #[test]
    fn card_format_rules() {
        assert_eq!(CardNumber::try_from(""), Err(ValueError::Empty));
        assert_eq!(
            CardNumber::try_from("42424242"),
            Err(ValueError::CardFormat)
        );
        assert_eq!(
            CardNumber::try_from("4242-4242-4242-4242"),
            Err(ValueError::CardFormat)
        );
        assert_eq!(
            CardNumber::try_from("４２４２４２４２４２４２４２４２"),
            Err(ValueError::CardFormat)
        );
    }

    #[test]
    fn card_debug_shows_only_last_four() {
        let c = CardNumber::try_from("4242 4242 4242 4242").unwrap();
        assert_eq!(c.last4(), "4242");
        assert_eq!(format!("{c:?}"), "CardNumber(****4242)");
    }

    #[test]
    fn external_id_rules() {
        assert!(ExternalId::try_from("cust-1.a_b".to_owned()).is_ok());
        assert_eq!(ExternalId::try_from(String::new()), Err(ValueError::Empty));
        assert_eq!(
            ExternalId::try_from("a".repeat(65)),
            Err(ValueError::TooLong(64))
        );
        assert_eq!(
            ExternalId::try_from("a b".to_owned()),
            Err(ValueError::BadCharacters)
        );
    }

    #[test]
    fn amount_and_currency_rules() {
        assert_eq!(AmountMinor::try_from(0), Err(ValueError::NotPositive));
        assert_eq!(AmountMinor::try_from(-5), Err(ValueError::NotPositive));
        assert_eq!(
            AmountMinor::try_from(i64::MAX),
            Err(ValueError::TooLarge(AmountMinor::MAX))
        );
        assert_eq!(AmountMinor::try_from(1).map(AmountMinor::get), Ok(1));
        assert_eq!(Currency::try_from("usd"), Err(ValueError::UnknownCurrency));
        assert_eq!(Currency::try_from("KRW"), Ok(Currency::Krw));
    }

    #[test]
    fn reason_rules() {
        assert_eq!(optional_reason(""), Ok(None));
        assert_eq!(optional_reason("late"), Ok(Some("late".into())));
        assert_eq!(
            optional_reason(&"é".repeat(200)).map(|r| r.is_some()),
            Ok(true)
        );
        assert_eq!(
            optional_reason(&"a".repeat(201)),
            Err(ValueError::TooLong(200))
        );
    }

    #[test]
    fn uuid_rules() {
        assert!(parse_uuid(&uuid::Uuid::now_v7().to_string()).is_ok());
        assert_eq!(parse_uuid(""), Err(ValueError::Empty));
        assert_eq!(parse_uuid("not-a-uuid"), Err(ValueError::NotUuid));
        assert_eq!(parse_uuid(&"a".repeat(1000)), Err(ValueError::NotUuid));
    }

    proptest! {
        #[test]
        fn any_valid_card_round_trips_its_last_four(body in "[0-9]{11,18}") {
            // Append the check digit that makes the number Luhn-valid.
            let check = (0..10u8).find(|d| luhn_valid(&format!("{body}{d}"))).unwrap();
            let number = format!("{body}{check}");
            let card = CardNumber::try_from(number.as_str()).unwrap();
            prop_assert_eq!(card.last4(), &number[number.len() - 4..]);
        }

        #[test]
        fn card_parser_never_panics(s in ".{0,64}") {
            let _ = CardNumber::try_from(s.as_str());
        }
    }
}
