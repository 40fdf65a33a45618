//! NFR1 (ordering never waits for reservation or my page) and NFR2 (no booking
//! without a completed payment; payment down fails fast, a retry completes once).

use std::time::{Duration, Instant};

use e2e::{Svc, System};
use talentshare_proto::order::{GetOrderRequest, OrderStatus};
use talentshare_proto::payment::{ListPaymentsRequest, PaymentStatus};
use talentshare_proto::reservation::ReservationStatus;
use tonic::Code;

use crate::{GOOD_CARD, place_order};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nfr1_orders_succeed_while_reservation_and_my_page_are_down_and_they_catch_up() {
    let mut system = System::start().await;
    system.stop_service(Svc::Reservation).await;
    system.stop_service(Svc::MyPage).await;

    let mut orders = Vec::new();
    for i in 0..5 {
        let o = system
            .order_as(&format!("erin-{i}"))
            .place_order(place_order(&format!("erin-{i}"), GOOD_CARD))
            .await
            .expect("ordering works with reservation and my page down")
            .into_inner()
            .order
            .unwrap();
        assert_eq!(o.status(), OrderStatus::Paid);
        orders.push(o);
    }

    system.start_service(Svc::Reservation).await;
    system.start_service(Svc::MyPage).await;
    for o in &orders {
        system
            .wait_mypage(
                &o.customer_id,
                &o.order_id,
                "my page caught up with booking requested",
                |e| {
                    e.order_status() == OrderStatus::Paid
                        && e.payment_status() == PaymentStatus::Approved
                        && e.reservation_status() == ReservationStatus::Requested
                },
            )
            .await;
    }
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nfr2_payment_down_fails_fast_and_a_retry_with_the_same_request_id_succeeds_once() {
    let mut system = System::start().await;
    system.stop_service(Svc::Payment).await;
    let request = place_order("frank", GOOD_CARD);

    let started = Instant::now();
    let err = system
        .order_as("frank")
        .place_order(request.clone())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // Connection refused is retried twice with short pauses, far inside PAYMENT_TIMEOUT (3s).
    assert!(
        took < Duration::from_millis(1500),
        "fails fast, took {took:?}"
    );
    // The order exists, waiting for its payment; nothing is PAID without one.
    let paid = system
        .order_as("frank")
        .list_orders(talentshare_proto::order::ListOrdersRequest {
            customer_id: "frank".into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.orders.len(), 1);
    assert_eq!(paid.orders[0].status(), OrderStatus::PendingPayment);

    system.start_service(Svc::Payment).await;
    let first = system
        .order_as("frank")
        .place_order(request.clone())
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let again = system
        .order_as("frank")
        .place_order(request)
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(first.status(), OrderStatus::Paid);
    assert_eq!(first.order_id, again.order_id);
    let got = system
        .order_as("frank")
        .get_order(GetOrderRequest {
            order_id: first.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(got.payment_id, first.payment_id);
    let payments = system
        .payment()
        .list_payments(ListPaymentsRequest {
            customer_id: "frank".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(payments.payments.len(), 1, "charged exactly once");
    system.shutdown().await;
}
