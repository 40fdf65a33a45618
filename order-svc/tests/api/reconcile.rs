//! The reconciler settles orders left PENDING_PAYMENT once payment-svc answers:
//! PAID when the payment went through, CANCELLED (after voiding it at payment-svc)
//! when it never happened; a row it
//! cannot read is skipped (and reported), never a reason to stop settling the others.

use talentshare_proto::order::OrderStatus;
use talentshare_proto::payment::PaymentStatus;
use tonic::Code;

use crate::helpers::{
    APPROVED_CARD, FAST_RECONCILER, Options, TestApp, log, pay_request_for, place_request,
    spawn_app_with,
};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    the_reconciler_marks_a_pending_order_paid_when_its_payment_went_through,
    the_reconciler_cancels_a_pending_order_whose_payment_never_happened,
    the_reconciler_skips_an_unreadable_order_and_settles_the_others,
);

async fn spawn_with_payment_down(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        Options {
            payment_down: true,
            args: FAST_RECONCILER,
        },
    )
    .await
}

async fn the_reconciler_marks_a_pending_order_paid_when_its_payment_went_through(backend: Backend) {
    let mut app = spawn_with_payment_down(backend).await;
    let req = place_request(APPROVED_CARD);
    let err = app.client.place_order(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let pending = app.orders_of("cust-1").await.remove(0);
    assert_eq!(pending.status, OrderStatus::PendingPayment as i32);
    // The Pay that reached payment-svc although its answer never came back.
    let payment = app
        .payment
        .pay(pay_request_for(&pending, &req))
        .await
        .expect("pay directly")
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Approved as i32);

    app.proxy.restore().await;
    let paid = app
        .wait_for_status(&pending.order_id, OrderStatus::Paid)
        .await;

    assert_eq!(paid.payment_id, payment.payment_id);
    assert_eq!(paid.card_last4, "4242");
    assert_eq!(
        app.event_log(&paid.order_id).await,
        log(&[("order.placed", 1), ("order.paid", 2)])
    );
    assert_eq!(app.payments_of("cust-1").await.len(), 1, "charged once");
    app.stop().await;
}

async fn the_reconciler_cancels_a_pending_order_whose_payment_never_happened(backend: Backend) {
    let mut app = spawn_with_payment_down(backend).await;
    let req = place_request(APPROVED_CARD);
    let err = app.client.place_order(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let pending = app.orders_of("cust-1").await.remove(0);

    app.proxy.restore().await;
    let cancelled = app
        .wait_for_status(&pending.order_id, OrderStatus::Cancelled)
        .await;

    assert_eq!(cancelled.reason, "payment not completed");
    assert!(cancelled.payment_id.is_empty());
    assert!(!cancelled.refunded);
    assert_eq!(
        app.event_log(&cancelled.order_id).await,
        log(&[("order.placed", 1), ("order.cancelled", 2)])
    );
    // Given up at payment-svc first: the order's payment is a void, nothing charged.
    let void = app.payment_of(&cancelled.order_id).await.expect("a void");
    assert_eq!(void.status(), PaymentStatus::Voided);
    // A late retry of the same request finds the order given up and pays nothing.
    let retried = app.place(req).await;
    assert_eq!(retried, cancelled);
    let still = app.payment_of(&cancelled.order_id).await.expect("the void");
    assert_eq!(still, void, "nothing charged");
    app.stop().await;
}

async fn the_reconciler_skips_an_unreadable_order_and_settles_the_others(backend: Backend) {
    let mut app = spawn_with_payment_down(backend).await;
    for _ in 0..2 {
        let err = app
            .client
            .place_order(place_request(APPROVED_CARD))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    }
    // Newest first: the older order is the one the reconciler reads first.
    let pending = app.orders_of("cust-1").await;
    let (good, bad) = (&pending[0].order_id, &pending[1].order_id);
    let conn = app.db().await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &conn,
        &format!("UPDATE orders SET payment_id = 'not-a-uuid' WHERE order_id = '{bad}'"),
    )
    .await
    .expect("corrupt one row");
    let _ = conn.close().await;

    app.proxy.restore().await;
    let cancelled = app.wait_for_status(good, OrderStatus::Cancelled).await;
    assert_eq!(cancelled.reason, "payment not completed");
    let rows = app.order_rows().await;
    let left = rows.iter().find(|r| &r.order_id == bad).expect("bad row");
    assert_eq!(
        left.status, "PENDING_PAYMENT",
        "the unreadable row is left alone"
    );
    app.stop().await;
}
