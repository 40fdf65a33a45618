//! Hand-written `Debug` for the messages that carry a card number, so that logging
//! a request (`{:?}` in a span field, an error, a test failure) never writes the full
//! number. `build.rs` tells prost not to derive `Debug` for exactly these messages
//! (`CARD_MESSAGES`); every other field is printed as the derived `Debug` would.

use std::fmt;

use crate::order::PlaceOrderRequest;
use crate::payment::PayRequest;

/// A card number as it may appear in logs: `**** ` and its last 4 digits
/// (`**** 4242`). Spaces and other non-digits are ignored. A value with fewer than
/// 8 digits, which is no valid card anyway, shows no digits at all, so a short
/// number cannot be printed almost whole. An empty value stays empty (not given).
pub fn mask_card_number(card: &str) -> String {
    let digits: Vec<char> = card.chars().filter(char::is_ascii_digit).collect();
    if card.is_empty() {
        String::new()
    } else if digits.len() < 8 {
        "****".to_owned()
    } else {
        let last4: String = digits[digits.len() - 4..].iter().collect();
        format!("**** {last4}")
    }
}

/// Prints a masked card number without quotes, so it cannot be mistaken for the value.
struct Masked<'a>(&'a str);

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_card_number(self.0))
    }
}

impl fmt::Debug for PlaceOrderRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured without `..`: a field added to the message fails to compile
        // here instead of silently missing from the logs.
        let Self {
            request_id,
            customer_id,
            talent_id,
            session_start_time,
            session_minutes,
            amount_minor,
            currency,
            card_number,
        } = self;
        f.debug_struct("PlaceOrderRequest")
            .field("request_id", request_id)
            .field("customer_id", customer_id)
            .field("talent_id", talent_id)
            .field("session_start_time", session_start_time)
            .field("session_minutes", session_minutes)
            .field("amount_minor", amount_minor)
            .field("currency", currency)
            .field("card_number", &Masked(card_number))
            .finish()
    }
}

impl fmt::Debug for PayRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured without `..`, as above.
        let Self {
            order_id,
            customer_id,
            amount_minor,
            currency,
            card_number,
            booking,
        } = self;
        f.debug_struct("PayRequest")
            .field("order_id", order_id)
            .field("customer_id", customer_id)
            .field("amount_minor", amount_minor)
            .field("currency", currency)
            .field("card_number", &Masked(card_number))
            .field("booking", booking)
            .finish()
    }
}
