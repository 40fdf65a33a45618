//! A Pay that reaches payment-svc after order-svc gave its order up charges nothing
//! (issue 9, hole 1). Two order-svc replicas share one PostgreSQL database: A reaches
//! payment-svc through a proxy that holds every byte for 6 s each way, B directly.
//! A places the order; its Pay (2 s deadline) is still on the wire when B's reconciler
//! (grace 4 s) gives the order up. Before voids, payment-svc approved that late Pay
//! and nothing refunded it; now B voids the order at payment-svc first, and the late
//! Pay meets the void.

use std::time::{Duration, Instant};

use talentshare_proto::order::{GetOrderRequest, OrderStatus};
use talentshare_proto::payment::PaymentStatus;
use testkit::Backend;

use crate::helpers::{APPROVED_CARD, Options, log, place_request, spawn_app_with, wait_until};

const REPLICA_A: &[&str] = &[
    "--payment-timeout",
    "2s",
    "--reconcile-after",
    "4s",
    "--reconcile-interval",
    "10m",
];

const REPLICA_B: &[&str] = &[
    "--payment-timeout",
    "2s",
    "--reconcile-after",
    "4s",
    "--reconcile-interval",
    "200ms",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pay_delayed_past_the_abandonment_meets_the_void_and_charges_nothing() {
    let mut app = spawn_app_with(
        Backend::Postgres,
        Options {
            payment_down: false,
            args: REPLICA_A,
        },
    )
    .await;
    let replica_b = app.start_replica(REPLICA_B).await;
    app.proxy.set_delay(Duration::from_secs(6));

    let req = place_request(APPROVED_CARD);
    let placed_at = Instant::now();
    let err = app.client.place_order(req.clone()).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Unavailable
        ),
        "A's Pay times out: {err:?}"
    );
    let pending = app.orders_of("cust-1").await.remove(0);

    let cancelled = app
        .wait_for_status(&pending.order_id, OrderStatus::Cancelled)
        .await;
    assert_eq!(cancelled.reason, "payment not completed");
    let delivered_when_given_up = app.proxy.bytes_to_upstream();
    let answered_when_given_up = app.proxy.bytes_from_upstream();
    assert!(
        placed_at.elapsed() < Duration::from_secs(6),
        "given up before the Pay could arrive"
    );
    // The late Pay left A at once and reaches payment-svc 6 s after it was sent;
    // payment-svc's answer then leaves at once (and takes 6 s more to reach nobody).
    wait_until(
        "the held Pay to reach payment-svc",
        Duration::from_secs(15),
        || async { (app.proxy.bytes_to_upstream() > delivered_when_given_up).then_some(()) },
    )
    .await;
    wait_until(
        "payment-svc to answer the late Pay",
        Duration::from_secs(15),
        || async { (app.proxy.bytes_from_upstream() > answered_when_given_up).then_some(()) },
    )
    .await;

    let payments = app.payments_of("cust-1").await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    let payment = &payments[0];
    assert_eq!(
        (payment.order_id.as_str(), payment.status()),
        (pending.order_id.as_str(), PaymentStatus::Voided),
        "the late Pay met the void: nothing charged"
    );
    assert_eq!(payment.card_last4, "", "a void never saw a card");
    assert_eq!(payment.void_reason, "payment not completed");
    let order = app.get(&pending.order_id).await;
    assert_eq!(order, cancelled, "the order stays given up");
    let seen_by_b = replica_b
        .client
        .clone()
        .get_order(GetOrderRequest {
            order_id: pending.order_id.clone(),
        })
        .await
        .expect("B answers")
        .into_inner()
        .order;
    assert_eq!(seen_by_b.as_ref(), Some(&cancelled), "both replicas agree");
    assert_eq!(
        app.event_log(&pending.order_id).await,
        log(&[("order.placed", 1), ("order.cancelled", 2)])
    );

    // A retry on A finds the order given up and does not call payment-svc again.
    let retried = app.place(req).await;
    assert_eq!(retried, cancelled);
    replica_b.stop().await;
    app.proxy.set_delay(Duration::ZERO);
    app.stop().await;
}
