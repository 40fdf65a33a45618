//! The anti-entropy pass repairs what a lost event left wrong, comparing each decided
//! order with its payment at payment-svc: a rejection whose `reservation.rejected`
//! never arrived, and an ended order whose payment is still approved.

use talentshare_proto::events::event_envelope::Payload;
use talentshare_proto::order::OrderStatus;
use talentshare_proto::payment::PaymentStatus;
use tonic::Code;

use crate::helpers::{
    APPROVED_CARD, Options, log, pay_request_for, place_request, spawn_app_with, wait_until,
};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    a_paid_order_whose_payment_its_rejection_refunded_is_recorded_rejected,
    an_ended_order_still_holding_an_approved_payment_gets_it_refunded,
);

/// The pass every 100 ms over orders quiet for 300 ms; the reconciler asleep, so
/// only the pass can make the repairs.
const FAST_PASS: &[&str] = &[
    "--anti-entropy-interval",
    "100ms",
    "--anti-entropy-quiet",
    "300ms",
    "--reconcile-interval",
    "10m",
];

async fn a_paid_order_whose_payment_its_rejection_refunded_is_recorded_rejected(backend: Backend) {
    let mut app = spawn_app_with(
        backend,
        Options {
            payment_down: false,
            args: FAST_PASS,
        },
    )
    .await;
    let paid = app.place(place_request(APPROVED_CARD)).await;
    assert_eq!(paid.status, OrderStatus::Paid as i32);
    // reservation-svc's rejection refunds the payment; its `reservation.rejected`
    // is lost (dead-lettered, say), so order-svc never hears of it.
    app.refund_directly(&paid.payment_id, "double booked").await;

    let rejected = app
        .wait_for_status(&paid.order_id, OrderStatus::Rejected)
        .await;
    assert!(rejected.refunded);
    assert_eq!(rejected.reason, "double booked");
    assert_eq!(rejected.payment_id, paid.payment_id);
    assert_eq!(
        app.event_log(&paid.order_id).await,
        log(&[
            ("order.placed", 1),
            ("order.paid", 2),
            ("order.rejected", 3)
        ])
    );
    let announced = app
        .order_events()
        .await
        .into_iter()
        .find(|e| e.order_id == paid.order_id && e.event_type == "order.rejected")
        .expect("order.rejected");
    let Some(Payload::OrderRejected(r)) = announced.payload else {
        panic!("payload {:?}", announced.payload);
    };
    assert_eq!(
        r.reservation_id, "",
        "learnt from the payment, not the reservation"
    );
    app.stop().await;
}

async fn an_ended_order_still_holding_an_approved_payment_gets_it_refunded(backend: Backend) {
    let mut app = spawn_app_with(
        backend,
        Options {
            payment_down: true,
            args: FAST_PASS,
        },
    )
    .await;
    let req = place_request(APPROVED_CARD);
    let err = app.client.place_order(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let pending = app.orders_of("cust-1").await.remove(0);
    // An order an older version gave up without a void, and the Pay it never saw
    // land: the money is kept without a booking.
    let conn = app.db().await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &conn,
        &format!(
            "UPDATE orders SET status = 'CANCELLED', version = 2, reason = 'payment not completed' \
             WHERE order_id = '{}'",
            pending.order_id
        ),
    )
    .await
    .expect("give the order up the old way");
    let _ = conn.close().await;
    let charged = app
        .payment
        .pay(pay_request_for(&pending, &req))
        .await
        .expect("the late Pay")
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(charged.status(), PaymentStatus::Approved);
    app.proxy.restore().await;

    let refunded = wait_until(
        "the kept payment refunded",
        std::time::Duration::from_secs(20),
        || {
            let mut app_payment = app.payment.clone();
            let order_id = pending.order_id.clone();
            async move {
                let p = app_payment
                    .get_payment(talentshare_proto::payment::GetPaymentRequest {
                        lookup: Some(
                            talentshare_proto::payment::get_payment_request::Lookup::OrderId(
                                order_id,
                            ),
                        ),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .payment?;
                (p.status() == PaymentStatus::Refunded).then_some(p)
            }
        },
    )
    .await;
    assert_eq!(
        refunded.refund_reason,
        "payment approved after the order had ended"
    );
    let order = wait_until(
        "the order shows its refunded payment",
        std::time::Duration::from_secs(10),
        || {
            let mut client = app.client.clone();
            let order_id = pending.order_id.clone();
            async move {
                let o = client
                    .get_order(talentshare_proto::order::GetOrderRequest { order_id })
                    .await
                    .ok()?
                    .into_inner()
                    .order?;
                o.refunded.then_some(o)
            }
        },
    )
    .await;
    assert_eq!(order.status, OrderStatus::Cancelled as i32);
    assert_eq!(order.payment_id, charged.payment_id);
    let rows = app.order_rows().await;
    assert_eq!(rows[0].refund_due_payment_id, None, "the debt is cleared");
    app.stop().await;
}
