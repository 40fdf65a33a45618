//! A cancellation interrupted between its Refund and recording CANCELLED (a database
//! error, a crash) leaves a refunded payment behind a PAID order with its request
//! recorded; the reconciler, or a repeated CancelOrder, finishes it: CANCELLED,
//! refunded, with the first request's reason, announced once. An order rejected in
//! the meantime stays REJECTED. A CancelOrder whose Refund got no answer is
//! finished the same way, since that Refund may have gone through.

use talentshare_proto::events::event_envelope::Payload;
use talentshare_proto::order::{CancelOrderRequest, Order, OrderStatus};
use talentshare_proto::payment::PaymentStatus;

use crate::helpers::{
    APPROVED_CARD, FAST_GRACE_NO_RECONCILER, FAST_RECONCILER, Options, TestApp, log, place_request,
    spawn_app_with,
};
use crate::rejected::{publish, rejection};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    the_reconciler_finishes_a_cancellation_whose_record_failed_after_the_refund,
    the_reconciler_finishes_a_requested_cancellation_refunded_before_a_crash,
    a_repeated_cancel_order_finishes_an_interrupted_cancellation_with_the_first_reason,
    the_reconciler_leaves_an_order_rejected_while_its_cancellation_was_pending_rejected,
    the_reconciler_finishes_a_cancellation_whose_refund_failed_once_payment_is_back,
);

async fn spawn(backend: Backend, args: &'static [&'static str]) -> TestApp {
    spawn_app_with(
        backend,
        Options {
            payment_down: false,
            args,
        },
    )
    .await
}

async fn cancel(app: &mut TestApp, order_id: &str, reason: &str) -> Result<Order, tonic::Status> {
    app.client
        .cancel_order(CancelOrderRequest {
            order_id: order_id.to_owned(),
            reason: reason.to_owned(),
        })
        .await
        .map(|r| r.into_inner().order.expect("order in response"))
}

/// CancelOrder while the CANCELLED write fails: the refund goes through, the order
/// stays PAID. Asserts exactly that state, the one this recovery exists for.
async fn interrupted_cancel(app: &mut TestApp, paid: &Order, reason: &str) {
    app.fail_cancelled_writes().await;
    let err = cancel(app, &paid.order_id, reason).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
    let payment = app.payment_of(&paid.order_id).await.unwrap();
    assert_eq!(payment.status, PaymentStatus::Refunded as i32);
    assert_eq!(payment.refund_reason, reason);
    assert_eq!(
        app.get(&paid.order_id).await.status,
        OrderStatus::Paid as i32
    );
}

/// Asserts the order ended CANCELLED, refunded, with `reason`, announced by exactly
/// one `order.cancelled` that says so.
async fn assert_cancelled_once(app: &TestApp, paid: &Order, cancelled: &Order, reason: &str) {
    assert!(cancelled.refunded);
    assert_eq!(cancelled.reason, reason);
    assert_eq!(cancelled.payment_id, paid.payment_id);
    let events: Vec<_> = app
        .order_events()
        .await
        .into_iter()
        .filter(|e| e.order_id == paid.order_id)
        .collect();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.event_type.clone(), e.aggregate_version))
            .collect::<Vec<_>>(),
        log(&[
            ("order.placed", 1),
            ("order.paid", 2),
            ("order.cancelled", 3)
        ])
    );
    let Some(Payload::OrderCancelled(body)) = &events[2].payload else {
        panic!("order.cancelled carries OrderCancelled")
    };
    assert_eq!(body.payment_id, paid.payment_id);
    assert_eq!(body.reason, reason);
    assert!(body.refunded);
}

async fn the_reconciler_finishes_a_cancellation_whose_record_failed_after_the_refund(
    backend: Backend,
) {
    let mut app = spawn(backend, FAST_RECONCILER).await;
    let paid = app.place(place_request(APPROVED_CARD)).await;
    interrupted_cancel(&mut app, &paid, "changed my mind").await;

    app.allow_cancelled_writes().await;
    let cancelled = app
        .wait_for_status(&paid.order_id, OrderStatus::Cancelled)
        .await;

    assert_cancelled_once(&app, &paid, &cancelled, "changed my mind").await;
    assert_eq!(app.payments_of("cust-1").await.len(), 1);
    app.stop().await;
}

async fn the_reconciler_finishes_a_requested_cancellation_refunded_before_a_crash(
    backend: Backend,
) {
    let mut app = spawn(backend, FAST_RECONCILER).await;
    let paid = app.place(place_request(APPROVED_CARD)).await;
    // What CancelOrder had done when the process died: the request recorded, then
    // the refund made; CANCELLED never written.
    app.request_cancellation(&paid.order_id, "changed my mind")
        .await;
    let refunded = app
        .refund_directly(&paid.payment_id, "changed my mind")
        .await;
    assert_eq!(refunded.status, PaymentStatus::Refunded as i32);

    let cancelled = app
        .wait_for_status(&paid.order_id, OrderStatus::Cancelled)
        .await;

    assert_cancelled_once(&app, &paid, &cancelled, "changed my mind").await;
    let payment = app.payment_of(&paid.order_id).await.unwrap();
    assert_eq!(payment.status, PaymentStatus::Refunded as i32);
    app.stop().await;
}

async fn a_repeated_cancel_order_finishes_an_interrupted_cancellation_with_the_first_reason(
    backend: Backend,
) {
    let mut app = spawn(backend, FAST_GRACE_NO_RECONCILER).await;
    let req = place_request(APPROVED_CARD);
    let paid = app.place(req.clone()).await;
    interrupted_cancel(&mut app, &paid, "first reason").await;

    // A PlaceOrder retry meanwhile returns the order as it stands and pays nothing.
    assert_eq!(app.place(req).await, paid);
    assert_eq!(app.payments_of("cust-1").await.len(), 1, "charged once");

    app.allow_cancelled_writes().await;
    let cancelled = cancel(&mut app, &paid.order_id, "second reason")
        .await
        .expect("the repeat finishes the cancellation");
    assert_eq!(cancelled.status, OrderStatus::Cancelled as i32);
    assert_eq!(
        cancel(&mut app, &paid.order_id, "third reason")
            .await
            .expect("cancelling again succeeds"),
        cancelled,
        "unchanged"
    );

    assert_cancelled_once(&app, &paid, &cancelled, "first reason").await;
    app.stop().await;
}

async fn the_reconciler_leaves_an_order_rejected_while_its_cancellation_was_pending_rejected(
    backend: Backend,
) {
    let mut app = spawn(backend, FAST_RECONCILER).await;
    let paid = app.place(place_request(APPROVED_CARD)).await;
    // The cancellation is stuck (its CANCELLED cannot be written) when the rejection
    // arrives; REJECTED can be written.
    interrupted_cancel(&mut app, &paid, "changed my mind").await;
    publish(&app, &rejection(&paid.order_id, "cust-1", &paid.payment_id)).await;
    let rejected = app
        .wait_for_status(&paid.order_id, OrderStatus::Rejected)
        .await;
    app.allow_cancelled_writes().await;

    // A later interrupted cancellation of another order is finished by the
    // reconciler, so it has had its rounds since the rejection.
    let marker = app.place(place_request(APPROVED_CARD)).await;
    app.request_cancellation(&marker.order_id, "marker").await;
    app.refund_directly(&marker.payment_id, "marker").await;
    let marker_cancelled = app
        .wait_for_status(&marker.order_id, OrderStatus::Cancelled)
        .await;
    assert_cancelled_once(&app, &marker, &marker_cancelled, "marker").await;

    assert_eq!(app.get(&paid.order_id).await, rejected, "left as it was");
    assert!(rejected.refunded);
    assert_eq!(rejected.reason, "talent unavailable");
    assert_eq!(
        app.event_log(&paid.order_id).await,
        log(&[
            ("order.placed", 1),
            ("order.paid", 2),
            ("order.rejected", 3)
        ])
    );
    app.stop().await;
}

async fn the_reconciler_finishes_a_cancellation_whose_refund_failed_once_payment_is_back(
    backend: Backend,
) {
    let mut app = spawn(backend, FAST_RECONCILER).await;
    let paid = app.place(place_request(APPROVED_CARD)).await;
    app.proxy.cut().await;
    let err = cancel(&mut app, &paid.order_id, "changed my mind")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert_eq!(app.get(&paid.order_id).await, paid, "still PAID for now");

    app.proxy.restore().await;
    let cancelled = app
        .wait_for_status(&paid.order_id, OrderStatus::Cancelled)
        .await;

    assert_cancelled_once(&app, &paid, &cancelled, "changed my mind").await;
    let payment = app.payment_of(&paid.order_id).await.unwrap();
    assert_eq!(payment.status, PaymentStatus::Refunded as i32);
    assert_eq!(payment.refund_reason, "changed my mind");
    app.stop().await;
}
