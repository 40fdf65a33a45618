//! Requests that carry a card number print it masked in `Debug`, and print every
//! other field; and no other message in the contract carries a card number (a new
//! one would have to join `CARD_MESSAGES` in build.rs).

use prost::Message;
use prost_types::{FileDescriptorSet, Timestamp};
use talentshare_proto::{FILE_DESCRIPTOR_SET, mask_card_number, order, payment};

const CARD: &str = "4111 1111 1111 4242";

fn assert_masked(shown: &str) {
    assert!(!shown.contains(CARD), "{shown}");
    assert!(!shown.contains("4111"), "{shown}");
    assert!(!shown.contains("41111111"), "{shown}");
    assert!(shown.contains("**** 4242"), "{shown}");
}

#[test]
fn place_order_request_masks_the_card_and_prints_the_rest() {
    let req = order::PlaceOrderRequest {
        request_id: "0192f5a0-0000-7000-8000-00000000a001".into(),
        customer_id: "alice".into(),
        talent_id: "coach-kim".into(),
        session_start_time: Some(Timestamp {
            seconds: 1_893_492_000,
            nanos: 0,
        }),
        session_minutes: 60,
        amount_minor: 50_000,
        currency: "KRW".into(),
        card_number: CARD.into(),
    };
    for shown in [format!("{req:?}"), format!("{req:#?}")] {
        assert_masked(&shown);
        for part in [
            "0192f5a0-0000-7000-8000-00000000a001",
            "alice",
            "coach-kim",
            "1893492000",
            "60",
            "50000",
            "KRW",
        ] {
            assert!(shown.contains(part), "{part} missing from {shown}");
        }
    }
}

#[test]
fn pay_request_masks_the_card_and_prints_the_rest() {
    let req = payment::PayRequest {
        order_id: "0192f5a0-0000-7000-8000-000000000001".into(),
        customer_id: "alice".into(),
        amount_minor: 50_000,
        currency: "KRW".into(),
        card_number: CARD.replace(' ', ""),
        booking: Some(payment::BookingDetails {
            talent_id: "coach-kim".into(),
            session_start_time: None,
            session_minutes: 90,
        }),
    };
    let shown = format!("{req:?}");
    assert_masked(&shown);
    for part in [
        "0192f5a0-0000-7000-8000-000000000001",
        "alice",
        "50000",
        "KRW",
        "coach-kim",
        "90",
    ] {
        assert!(shown.contains(part), "{part} missing from {shown}");
    }
}

#[test]
fn masking_keeps_at_most_the_last_four_digits() {
    assert_eq!(mask_card_number("4242424242424242"), "**** 4242");
    assert_eq!(mask_card_number("4242 4242 4242 1234"), "**** 1234");
    assert_eq!(mask_card_number("12345"), "****");
    assert_eq!(mask_card_number("not a card"), "****");
    assert_eq!(mask_card_number(""), "");
}

#[test]
fn only_the_masked_messages_carry_a_card_number() {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    let mut carrying = Vec::new();
    for file in &set.file {
        for msg in &file.message_type {
            if msg.field.iter().any(|f| f.name() == "card_number") {
                carrying.push(format!("{}.{}", file.package(), msg.name()));
            }
            // Nested messages would need the same treatment; there are none today.
            assert!(
                msg.nested_type
                    .iter()
                    .all(|n| n.field.iter().all(|f| f.name() != "card_number")),
                "a nested message of {} carries card_number",
                msg.name()
            );
        }
    }
    carrying.sort();
    assert_eq!(
        carrying,
        [
            "talentshare.order.v1.PlaceOrderRequest",
            "talentshare.payment.v1.PayRequest"
        ]
    );
}
