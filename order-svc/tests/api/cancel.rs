//! CancelOrder: refund then CANCELLED (once), refusals for ended orders, payment-svc
//! away, and pending orders settled with payment-svc first.

use talentshare_proto::events::event_envelope::Payload;
use talentshare_proto::order::{CancelOrderRequest, Order, OrderStatus};
use talentshare_proto::payment::PaymentStatus;
use tonic::Code;

use crate::helpers::{
    APPROVED_CARD, DECLINED_CARD, FAST_GRACE_NO_RECONCILER, Options, TestApp, log, pay_request_for,
    place_request, spawn_app, spawn_app_with, wait_until,
};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    cancel_order_refunds_a_paid_order_and_announces_it_once,
    cancel_order_of_a_declined_order_is_failed_precondition,
    cancel_order_of_an_unknown_order_is_permission_denied,
    cancel_order_returns_unavailable_and_changes_nothing_while_payment_is_down,
    cancel_order_of_a_pending_order_waits_out_the_grace_when_no_payment_exists,
    cancel_order_of_a_pending_order_whose_payment_went_through_refunds_it,
);

async fn cancel(app: &mut TestApp, order_id: &str, reason: &str) -> Result<Order, tonic::Status> {
    app.client
        .cancel_order(CancelOrderRequest {
            order_id: order_id.to_owned(),
            reason: reason.to_owned(),
        })
        .await
        .map(|r| r.into_inner().order.expect("order in response"))
}

async fn cancel_order_refunds_a_paid_order_and_announces_it_once(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let paid = app.place(place_request(APPROVED_CARD)).await;

    let cancelled = cancel(&mut app, &paid.order_id, "changed my mind")
        .await
        .expect("cancel");

    assert_eq!(cancelled.status, OrderStatus::Cancelled as i32);
    assert!(cancelled.refunded);
    assert_eq!(cancelled.reason, "changed my mind");
    assert_eq!(cancelled.payment_id, paid.payment_id);
    let payment = app.payment_of(&paid.order_id).await.unwrap();
    assert_eq!(payment.status, PaymentStatus::Refunded as i32);
    assert_eq!(payment.refund_reason, "changed my mind");

    let again = cancel(&mut app, &paid.order_id, "another reason")
        .await
        .expect("cancelling again succeeds");
    assert_eq!(again, cancelled, "unchanged, first reason kept");

    let events = app.order_events().await;
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
    assert_eq!(body.reason, "changed my mind");
    assert!(body.refunded);
    app.stop().await;
}

async fn cancel_order_of_a_declined_order_is_failed_precondition(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let declined = app.place(place_request(DECLINED_CARD)).await;

    let err = cancel(&mut app, &declined.order_id, "").await.unwrap_err();

    // A client tells "ended" from "in flight" by the reason, not the message.
    let d = testkit::expect_reason(&err, Code::FailedPrecondition, "ORDER_ALREADY_ENDED");
    assert_eq!(d.metadata["order_id"], declined.order_id);
    assert_eq!(d.metadata["order_status"], "ORDER_STATUS_PAYMENT_DECLINED");
    assert_eq!(d.preconditions.len(), 1, "{d:?}");
    assert_eq!(d.preconditions[0].0, "STATE");
    assert_eq!(
        d.preconditions[0].1,
        format!("orders/{}", declined.order_id)
    );
    assert_eq!(d.retry, None, "retrying cannot help");
    assert_eq!(app.get(&declined.order_id).await, declined, "unchanged");
    app.stop().await;
}

async fn cancel_order_of_an_unknown_order_is_permission_denied(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let err = cancel(&mut app, &uuid::Uuid::now_v7().to_string(), "")
        .await
        .unwrap_err();
    // The same answer as for another customer's order (AIP-211).
    let d = testkit::expect_reason(&err, Code::PermissionDenied, "ACCESS_DENIED");
    assert!(d.metadata.is_empty(), "names nothing: {d:?}");
    app.stop().await;
}

async fn cancel_order_returns_unavailable_and_changes_nothing_while_payment_is_down(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let paid = app.place(place_request(APPROVED_CARD)).await;

    app.proxy.cut().await;
    let err = cancel(&mut app, &paid.order_id, "").await.unwrap_err();
    let d = testkit::expect_reason(&err, Code::Unavailable, "PAYMENT_SERVICE_UNAVAILABLE");
    assert!(d.retry.is_some(), "a retry helps: {d:?}");
    assert_eq!(app.get(&paid.order_id).await, paid, "order unchanged");
    assert_eq!(
        app.payment_of(&paid.order_id).await.unwrap().status,
        PaymentStatus::Approved as i32
    );

    app.proxy.restore().await;
    let cancelled = cancel(&mut app, &paid.order_id, "")
        .await
        .expect("a retry cancels");
    assert_eq!(cancelled.status, OrderStatus::Cancelled as i32);
    assert!(cancelled.refunded);
    assert_eq!(
        app.event_log(&paid.order_id).await,
        log(&[
            ("order.placed", 1),
            ("order.paid", 2),
            ("order.cancelled", 3)
        ])
    );
    app.stop().await;
}

async fn cancel_order_of_a_pending_order_waits_out_the_grace_when_no_payment_exists(
    backend: Backend,
) {
    let mut app = spawn_app_with(
        backend,
        Options {
            payment_down: true,
            args: FAST_GRACE_NO_RECONCILER,
        },
    )
    .await;
    let req = place_request(APPROVED_CARD);
    assert_eq!(
        app.client.place_order(req).await.unwrap_err().code(),
        Code::Unavailable
    );
    let pending = app.orders_of("cust-1").await.remove(0);
    app.proxy.restore().await;

    // Right after the failed Pay, payment-svc having no payment proves nothing yet.
    let err = cancel(&mut app, &pending.order_id, "too slow")
        .await
        .unwrap_err();
    let d = testkit::expect_reason(&err, Code::FailedPrecondition, "PAYMENT_IN_FLIGHT");
    assert_eq!(d.metadata["order_status"], "ORDER_STATUS_PENDING_PAYMENT");
    assert!(d.retry.is_some(), "retry shortly: {d:?}");
    assert_eq!(
        app.get(&pending.order_id).await.status,
        OrderStatus::PendingPayment as i32
    );

    let client = app.client.clone();
    let cancelled = wait_until(
        "cancel to succeed once the grace has passed",
        std::time::Duration::from_secs(10),
        || {
            let mut client = client.clone();
            let order_id = pending.order_id.clone();
            async move {
                let r = client
                    .cancel_order(CancelOrderRequest {
                        order_id,
                        reason: "too slow".into(),
                    })
                    .await;
                match r {
                    Ok(r) => r.into_inner().order,
                    Err(s) if s.code() == Code::FailedPrecondition => None,
                    Err(s) => panic!("unexpected {s:?}"),
                }
            }
        },
    )
    .await;
    assert_eq!(cancelled.status, OrderStatus::Cancelled as i32);
    assert_eq!(cancelled.reason, "too slow");
    assert!(!cancelled.refunded && cancelled.payment_id.is_empty());
    let void = app
        .payment_of(&pending.order_id)
        .await
        .expect("voided first");
    assert_eq!(
        (void.status(), void.void_reason.as_str()),
        (PaymentStatus::Voided, "too slow")
    );
    assert_eq!(
        app.event_log(&pending.order_id).await,
        log(&[("order.placed", 1), ("order.cancelled", 2)])
    );
    app.stop().await;
}

async fn cancel_order_of_a_pending_order_whose_payment_went_through_refunds_it(backend: Backend) {
    let mut app = spawn_app_with(
        backend,
        Options {
            payment_down: true,
            args: FAST_GRACE_NO_RECONCILER,
        },
    )
    .await;
    let req = place_request(APPROVED_CARD);
    assert_eq!(
        app.client
            .place_order(req.clone())
            .await
            .unwrap_err()
            .code(),
        Code::Unavailable
    );
    let pending = app.orders_of("cust-1").await.remove(0);
    app.payment
        .pay(pay_request_for(&pending, &req))
        .await
        .expect("pay directly");
    app.proxy.restore().await;

    let cancelled = cancel(&mut app, &pending.order_id, "")
        .await
        .expect("cancel");

    assert_eq!(cancelled.status, OrderStatus::Cancelled as i32);
    assert!(cancelled.refunded);
    let payment = app.payment_of(&pending.order_id).await.unwrap();
    assert_eq!(payment.status, PaymentStatus::Refunded as i32);
    assert_eq!(cancelled.payment_id, payment.payment_id);
    assert_eq!(
        app.event_log(&pending.order_id).await,
        log(&[
            ("order.placed", 1),
            ("order.paid", 2),
            ("order.cancelled", 3)
        ])
    );
    app.stop().await;
}
