//! Refund: once per payment, idempotent afterwards, refused for declined payments.

use std::time::Duration;

use talentshare_proto::payment::{PaymentStatus, RefundRequest};
use tonic::Code;

use crate::helpers::{APPROVED_CARD, pay_request, spawn_app, wait_until};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    refund_refunds_once_and_repeats_return_the_same_payment,
    refund_returns_failed_precondition_for_a_declined_payment,
    refund_returns_not_found_for_an_unknown_payment,
);

async fn refund_refunds_once_and_repeats_return_the_same_payment(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let paid = app
        .client
        .pay(pay_request(APPROVED_CARD, 900))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    let req = RefundRequest {
        payment_id: paid.payment_id.clone(),
        reason: "customer cancelled".into(),
    };

    let first = app
        .client
        .refund(req.clone())
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    let again = app
        .client
        .refund(req)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();

    assert_eq!(first.status(), PaymentStatus::Refunded);
    assert_eq!(first.refund_reason, "customer cancelled");
    assert_eq!(first, again);
    wait_until("outbox drained", Duration::from_secs(10), || async {
        (app.outbox_len().await == 0).then_some(())
    })
    .await;
    let events = app.broker.drain(&app.all_events_queue()).await;
    let keys: Vec<_> = events.iter().map(|e| e.routing_key.as_str()).collect();
    assert_eq!(keys, ["payment.approved", "payment.refunded"]);
    let refunded = events[1].envelope();
    assert_eq!(refunded.aggregate_id, paid.payment_id);
    assert_eq!(refunded.aggregate_version, 2);
    app.stop().await;
}

async fn refund_returns_failed_precondition_for_a_declined_payment(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let declined = app
        .client
        .pay(pay_request("4000000000000002", 900))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();

    let err = app
        .client
        .refund(RefundRequest {
            payment_id: declined.payment_id,
            reason: String::new(),
        })
        .await
        .unwrap_err();

    let d = testkit::expect_reason(&err, Code::FailedPrecondition, "PAYMENT_NOT_REFUNDABLE");
    assert_eq!(d.metadata["payment_status"], "PAYMENT_STATUS_DECLINED");
    assert_eq!(
        d.preconditions[0].1,
        format!("payments/{}", d.metadata["payment_id"])
    );
    assert_eq!(app.payment_rows().await[0].status, "DECLINED");
    app.stop().await;
}

async fn refund_returns_not_found_for_an_unknown_payment(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let err = app
        .client
        .refund(RefundRequest {
            payment_id: uuid::Uuid::now_v7().to_string(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    let d = testkit::expect_reason(&err, Code::NotFound, "NOT_FOUND");
    assert_eq!(d.metadata["resource_type"], "payment");
    app.stop().await;
}
