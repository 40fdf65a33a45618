//! Pay: approval, the test cards that decline, idempotency per order id, and only
//! the last four card digits stored.

use talentshare_proto::payment::{DeclineReason, PaymentStatus};
use tonic::Code;

use std::time::Duration;

use crate::helpers::{APPROVED_CARD, TestApp, pay_request, spawn_app, wait_until};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    pay_returns_an_approved_payment_and_stores_only_the_last_four_digits,
    pay_declines_each_documented_test_card,
    pay_twice_with_the_same_order_id_returns_the_same_payment,
    pay_returns_already_exists_when_the_order_was_paid_with_other_terms,
    fifty_concurrent_identical_pays_make_one_payment_and_one_event,
);

async fn pay_returns_an_approved_payment_and_stores_only_the_last_four_digits(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let req = pay_request(APPROVED_CARD, 12_500);

    let p = app
        .client
        .pay(req.clone())
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();

    assert_eq!(p.status(), PaymentStatus::Approved);
    assert_eq!(p.order_id, req.order_id);
    assert_eq!(p.customer_id, "cust-1");
    assert_eq!((p.amount_minor, p.currency.as_str()), (12_500, "USD"));
    assert_eq!(p.card_last4, "4242");
    assert_eq!(p.decline_reason(), DeclineReason::Unspecified);
    assert_eq!(
        p.booking, req.booking,
        "the booking is kept with the payment"
    );
    assert!(uuid::Uuid::parse_str(&p.payment_id).is_ok());
    let rows = app.payment_rows().await;
    assert_eq!(rows.len(), 1);
    let stored = format!("{:?}", rows[0]);
    assert!(
        !stored.contains("4242424242424242") && !stored.contains("4242 4242 4242 4242"),
        "{stored}"
    );
    assert_eq!(rows[0].card_last4, "4242");
    app.stop().await;
}

async fn pay_declines_each_documented_test_card(backend: Backend) {
    let mut app = spawn_app(backend).await;
    for (card, amount, reason) in [
        ("4000000000000002", 100, DeclineReason::CardDeclined),
        ("4000000000009995", 100, DeclineReason::InsufficientFunds),
        ("4000000000000069", 100, DeclineReason::ExpiredCard),
        (APPROVED_CARD, 100_000_001, DeclineReason::LimitExceeded),
    ] {
        let p = app
            .client
            .pay(pay_request(card, amount))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(p.status(), PaymentStatus::Declined, "card {card}");
        assert_eq!(p.decline_reason(), reason, "card {card}");
    }
    app.stop().await;
}

async fn pay_twice_with_the_same_order_id_returns_the_same_payment(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let req = pay_request(APPROVED_CARD, 5_000);

    let first = app
        .client
        .pay(req.clone())
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    let second = app
        .client
        .pay(req.clone())
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();

    assert_eq!(first, second);
    assert_eq!(app.payment_rows().await.len(), 1);
    app.stop().await;
}

async fn pay_returns_already_exists_when_the_order_was_paid_with_other_terms(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let req = pay_request(APPROVED_CARD, 5_000);
    app.client.pay(req.clone()).await.unwrap();

    let mut other_amount = req.clone();
    other_amount.amount_minor = 5_001;
    let mut other_card = req.clone();
    other_card.card_number = "5555555555554444".into();
    for (case, r) in [("amount", other_amount), ("card", other_card)] {
        let err = app.client.pay(r).await.unwrap_err();
        let d = testkit::expect_reason(&err, Code::AlreadyExists, "PAYMENT_DETAILS_DIFFER");
        assert!(d.metadata.contains_key("order_id"), "{case}: {d:?}");
    }
    assert_eq!(app.payment_rows().await.len(), 1);
    app.stop().await;
}

async fn fifty_concurrent_identical_pays_make_one_payment_and_one_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let req = pay_request(APPROVED_CARD, 7_700);

    let calls = (0..50).map(|_| {
        let mut client = app.client.clone();
        let req = req.clone();
        tokio::spawn(async move {
            client
                .pay(req)
                .await
                .map(|r| r.into_inner().payment.unwrap())
        })
    });
    let results = futures::future::join_all(calls).await;

    let payments: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap().expect("every call succeeds"))
        .collect();
    assert!(
        payments.iter().all(|p| p == &payments[0]),
        "all 50 callers see the same payment"
    );
    assert_eq!(app.payment_rows().await.len(), 1);
    // Once the outbox is empty every event has been confirmed by the broker, so
    // the queue holds all of them.
    wait_until("outbox drained", Duration::from_secs(10), || async {
        (app.outbox_len().await == 0).then_some(())
    })
    .await;
    let events = app.broker.drain(&app.all_events_queue()).await;
    assert_eq!(events.len(), 1, "exactly one payment.approved event");
    assert_eq!(events[0].routing_key, "payment.approved");
    TestApp::stop(app).await;
}
