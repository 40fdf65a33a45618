//! PlaceOrder: paying, declines, idempotency per request id, and payment-svc being
//! away (UNAVAILABLE, the order left PENDING_PAYMENT, a retry finishing it once).

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use talentshare_proto::events::event_envelope::Payload;
use talentshare_proto::order::OrderStatus;
use talentshare_proto::payment::PaymentStatus;
use tonic::Code;

use crate::helpers::{
    APPROVED_CARD, DECLINED_CARD, Options, log, place_request, spawn_app, spawn_app_with,
    wait_until,
};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    place_order_pays_and_returns_a_paid_order_announced_as_placed_then_paid,
    place_order_with_a_declined_card_ends_payment_declined,
    place_order_repeated_with_one_request_id_places_and_charges_once,
    place_order_returns_unavailable_while_payment_is_down_and_a_retry_pays_once,
    place_order_replayed_after_the_session_started_returns_the_first_order,
);

async fn place_order_pays_and_returns_a_paid_order_announced_as_placed_then_paid(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let req = place_request(APPROVED_CARD);

    let order = app.place(req.clone()).await;

    assert_eq!(order.status, OrderStatus::Paid as i32);
    assert_eq!(order.request_id, req.request_id);
    assert_eq!(
        (order.customer_id.as_str(), order.talent_id.as_str()),
        ("cust-1", "talent-7")
    );
    assert_eq!(order.session_start_time, req.session_start_time);
    assert_eq!(
        (order.amount_minor, order.currency.as_str()),
        (15_000, "KRW")
    );
    assert_eq!(order.card_last4, "4242");
    assert!(!order.refunded);
    assert!(order.decline_reason.is_empty() && order.reason.is_empty());
    assert_eq!(app.get(&order.order_id).await, order, "stored as returned");

    let payment = app.payment_of(&order.order_id).await.expect("a payment");
    assert_eq!(payment.status, PaymentStatus::Approved as i32);
    assert_eq!(payment.payment_id, order.payment_id);
    assert_eq!(
        (payment.amount_minor, payment.currency.as_str()),
        (15_000, "KRW")
    );

    let events = app.order_events().await;
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e.aggregate_id, order.order_id);
        assert_eq!(e.order_id, order.order_id);
        assert_eq!(e.customer_id, "cust-1");
    }
    assert_eq!(
        (events[0].event_type.as_str(), events[0].aggregate_version),
        ("order.placed", 1)
    );
    let Some(Payload::OrderPlaced(placed)) = &events[0].payload else {
        panic!("order.placed carries OrderPlaced")
    };
    assert_eq!(placed.talent_id, "talent-7");
    assert_eq!(placed.session_start_time, req.session_start_time);
    assert_eq!(placed.session_minutes, 60);
    assert_eq!(
        (placed.amount_minor, placed.currency.as_str()),
        (15_000, "KRW")
    );
    assert_eq!(
        (events[1].event_type.as_str(), events[1].aggregate_version),
        ("order.paid", 2)
    );
    let Some(Payload::OrderPaid(paid)) = &events[1].payload else {
        panic!("order.paid carries OrderPaid")
    };
    assert_eq!(paid.payment_id, order.payment_id);
    app.stop().await;
}

async fn place_order_with_a_declined_card_ends_payment_declined(backend: Backend) {
    let mut app = spawn_app(backend).await;

    let order = app.place(place_request(DECLINED_CARD)).await;

    assert_eq!(order.status, OrderStatus::PaymentDeclined as i32);
    assert_eq!(order.decline_reason, "DECLINE_REASON_CARD_DECLINED");
    assert_eq!(order.card_last4, "0002");
    let payment = app.payment_of(&order.order_id).await.expect("a payment");
    assert_eq!(payment.status, PaymentStatus::Declined as i32);
    assert_eq!(order.payment_id, payment.payment_id);

    let events = app.order_events().await;
    assert_eq!(
        events
            .iter()
            .map(|e| (e.event_type.clone(), e.aggregate_version))
            .collect::<Vec<_>>(),
        log(&[("order.placed", 1), ("order.payment_declined", 2)])
    );
    let Some(Payload::OrderPaymentDeclined(declined)) = &events[1].payload else {
        panic!("order.payment_declined carries OrderPaymentDeclined")
    };
    assert_eq!(declined.payment_id, payment.payment_id);
    assert_eq!(declined.decline_reason, "DECLINE_REASON_CARD_DECLINED");
    app.stop().await;
}

async fn place_order_repeated_with_one_request_id_places_and_charges_once(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let req = place_request(APPROVED_CARD);

    let first = app.place(req.clone()).await;
    let again = app.place(req.clone()).await;
    // Concurrent repeats as well: a client retrying while the first is in flight.
    let concurrent = futures::future::join_all((0..4).map(|_| {
        let mut client = app.client.clone();
        let req = req.clone();
        async move { client.place_order(req).await }
    }))
    .await;

    assert_eq!(again, first);
    for r in concurrent {
        assert_eq!(
            r.expect("repeat succeeds").into_inner().order.unwrap(),
            first
        );
    }
    assert_eq!(app.order_rows().await.len(), 1, "one order");
    assert_eq!(app.payments_of("cust-1").await.len(), 1, "one payment");
    assert_eq!(
        app.event_log(&first.order_id).await,
        log(&[("order.placed", 1), ("order.paid", 2)])
    );

    // The same request id with other terms is refused.
    let mut other = req.clone();
    other.amount_minor += 1;
    let err = app.client.place_order(other).await.unwrap_err();
    let d = testkit::expect_reason(&err, Code::AlreadyExists, "REQUEST_ID_REUSED");
    assert_eq!(d.metadata["request_id"], req.request_id);
    let mut other_card = req;
    other_card.card_number = "5555 5555 5555 4444".into();
    let err = app.client.place_order(other_card).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(app.order_rows().await.len(), 1);
    app.stop().await;
}

async fn place_order_returns_unavailable_while_payment_is_down_and_a_retry_pays_once(
    backend: Backend,
) {
    let mut app = spawn_app_with(
        backend,
        Options {
            payment_down: true,
            ..Default::default()
        },
    )
    .await;
    let req = place_request(APPROVED_CARD);

    let started = Instant::now();
    let err = app.client.place_order(req.clone()).await.unwrap_err();
    let d = testkit::expect_reason(&err, Code::Unavailable, "PAYMENT_SERVICE_UNAVAILABLE");
    assert!(d.retry.is_some(), "retry with the same request_id: {d:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "fails fast: {:?}",
        started.elapsed()
    );
    let stored = app.orders_of("cust-1").await;
    assert_eq!(stored.len(), 1, "the order is stored");
    let pending = &stored[0];
    assert_eq!(pending.status, OrderStatus::PendingPayment as i32);
    assert!(pending.payment_id.is_empty());
    assert_eq!(
        app.event_log(&pending.order_id).await,
        log(&[("order.placed", 1)])
    );

    app.proxy.restore().await;
    let paid = app.place(req.clone()).await;
    assert_eq!(paid.order_id, pending.order_id, "the same order");
    assert_eq!(paid.status, OrderStatus::Paid as i32);
    let again = app.place(req).await;
    assert_eq!(again, paid);

    let payments = app.payments_of("cust-1").await;
    assert_eq!(payments.len(), 1, "charged once");
    assert_eq!(payments[0].payment_id, paid.payment_id);
    assert_eq!(app.order_rows().await.len(), 1);
    assert_eq!(
        app.event_log(&paid.order_id).await,
        log(&[("order.placed", 1), ("order.paid", 2)])
    );
    app.stop().await;
}

async fn place_order_replayed_after_the_session_started_returns_the_first_order(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let start = Utc::now() + TimeDelta::milliseconds(1500);
    let mut req = place_request(APPROVED_CARD);
    req.session_start_time = Some(prost_types::Timestamp {
        seconds: start.timestamp(),
        nanos: start.timestamp_subsec_micros() as i32 * 1000,
    });
    let first = app.place(req.clone()).await;

    wait_until("the session to start", Duration::from_secs(5), || async {
        (Utc::now() > start).then_some(())
    })
    .await;
    let replay = app.place(req.clone()).await;
    assert_eq!(
        replay, first,
        "compared with the first call, not validated again"
    );

    let mut new = req;
    new.request_id = uuid::Uuid::now_v7().to_string();
    let err = app.client.place_order(new).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "a new order must start later"
    );
    app.stop().await;
}
