//! The product's stories (FR1–FR6, manager confirm and reject) across all four services.

use e2e::System;
use talentshare_proto::mypage::MyPageEntry;
use talentshare_proto::order::{CancelOrderRequest, GetOrderRequest, OrderStatus};
use talentshare_proto::payment::{GetPaymentRequest, PaymentStatus, get_payment_request::Lookup};
use talentshare_proto::reservation::{
    ConfirmReservationRequest, ListReservationsRequest, RejectReservationRequest, Reservation,
    ReservationStatus,
};

use crate::{DECLINING_CARD, GOOD_CARD, MANAGER, place_order};

/// Waits until reservation-svc has the booking of `order_id` (created from the event),
/// looking as coach-kim's manager.
pub async fn booking_of(system: &System, order_id: &str) -> Reservation {
    let client = system.reservation_as_manager(MANAGER, &["coach-kim"]);
    testkit::wait_until(
        "booking created from payment.approved",
        std::time::Duration::from_secs(30),
        || {
            let mut client = client.clone();
            async move {
                let page = client
                    .list_reservations(ListReservationsRequest {
                        talent_id: "coach-kim".into(),
                        page_size: 100,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                page.reservations
                    .into_iter()
                    .find(|r| r.order_id == order_id)
            }
        },
    )
    .await
}

fn statuses(e: &MyPageEntry) -> (OrderStatus, PaymentStatus, ReservationStatus) {
    (e.order_status(), e.payment_status(), e.reservation_status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fr1_fr2_fr4_fr5_placed_order_is_paid_booked_confirmed_and_shown_on_my_page() {
    let system = System::start().await;

    let order = system
        .order_as("alice")
        .place_order(place_order("alice", GOOD_CARD))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.status(), OrderStatus::Paid, "FR2: paid means booked");

    let booking = booking_of(&system, &order.order_id).await;
    assert_eq!(booking.status(), ReservationStatus::Requested);
    let confirmed = system
        .reservation_as_manager(MANAGER, &["coach-kim"])
        .confirm_reservation(ConfirmReservationRequest {
            reservation_id: booking.reservation_id.clone(),
            manager_id: MANAGER.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(confirmed.status(), ReservationStatus::Confirmed);

    let entry = system
        .wait_mypage(
            "alice",
            &order.order_id,
            "my page shows the booking confirmed",
            |e| {
                e.reservation_status() == ReservationStatus::Confirmed
                    && e.order_status() == OrderStatus::Paid
            },
        )
        .await;
    assert_eq!(
        statuses(&entry),
        (
            OrderStatus::Paid,
            PaymentStatus::Approved,
            ReservationStatus::Confirmed
        )
    );
    assert_eq!(
        (entry.customer_id.as_str(), entry.talent_id.as_str()),
        ("alice", "coach-kim")
    );
    assert_eq!(
        (entry.amount_minor, entry.currency.as_str()),
        (50_000, "KRW")
    );
    assert_eq!(entry.payment_id, order.payment_id);
    assert_eq!(entry.reservation_id, booking.reservation_id);
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fr3_declined_payment_cancels_the_booking_and_my_page_shows_it() {
    let system = System::start().await;

    let order = system
        .order_as("bob")
        .place_order(place_order("bob", DECLINING_CARD))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.status(), OrderStatus::PaymentDeclined);

    let entry = system
        .wait_mypage(
            "bob",
            &order.order_id,
            "my page shows the declined order",
            |e| {
                e.order_status() == OrderStatus::PaymentDeclined
                    && e.payment_status() == PaymentStatus::Declined
            },
        )
        .await;
    assert_eq!(
        entry.reservation_status(),
        ReservationStatus::Unspecified,
        "no booking"
    );
    let bookings = system
        .reservation_as_manager(MANAGER, &["coach-kim"])
        .list_reservations(ListReservationsRequest {
            talent_id: "coach-kim".into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        bookings
            .reservations
            .iter()
            .all(|r| r.order_id != order.order_id),
        "FR3: no booking"
    );
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fr6_cancel_after_confirmation_refunds_and_cancels_the_booking() {
    let system = System::start().await;
    let order = system
        .order_as("carol")
        .place_order(place_order("carol", GOOD_CARD))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let booking = booking_of(&system, &order.order_id).await;
    system
        .reservation_as_manager(MANAGER, &["coach-kim"])
        .confirm_reservation(ConfirmReservationRequest {
            reservation_id: booking.reservation_id.clone(),
            manager_id: MANAGER.into(),
        })
        .await
        .unwrap();

    let cancelled = system
        .order_as("carol")
        .cancel_order(CancelOrderRequest {
            order_id: order.order_id.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert!(cancelled.refunded);

    let payment = system
        .payment()
        .get_payment(GetPaymentRequest {
            lookup: Some(Lookup::OrderId(order.order_id.clone())),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(payment.status(), PaymentStatus::Refunded);
    let entry = system
        .wait_mypage(
            "carol",
            &order.order_id,
            "my page shows order, payment and booking cancelled",
            |e| {
                statuses(e)
                    == (
                        OrderStatus::Cancelled,
                        PaymentStatus::Refunded,
                        ReservationStatus::Cancelled,
                    )
            },
        )
        .await;
    assert_eq!(entry.order_id, order.order_id);
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_rejects_then_payment_is_refunded_and_order_and_my_page_show_it() {
    let system = System::start().await;
    let order = system
        .order_as("dave")
        .place_order(place_order("dave", GOOD_CARD))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let booking = booking_of(&system, &order.order_id).await;

    let rejected = system
        .reservation_as_manager(MANAGER, &["coach-kim"])
        .reject_reservation(RejectReservationRequest {
            reservation_id: booking.reservation_id.clone(),
            manager_id: MANAGER.into(),
            reason: "talent unavailable".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(rejected.status(), ReservationStatus::Rejected);

    let order_client = system.order_as("dave");
    let order_id = order.order_id.clone();
    let rejected_order = testkit::wait_until(
        "order shows it was rejected",
        std::time::Duration::from_secs(30),
        || {
            let mut c = order_client.clone();
            let order_id = order_id.clone();
            async move {
                let o = c
                    .get_order(GetOrderRequest { order_id })
                    .await
                    .ok()?
                    .into_inner()
                    .order?;
                (o.status() == OrderStatus::Rejected).then_some(o)
            }
        },
    )
    .await;
    assert!(rejected_order.refunded);
    system
        .wait_mypage(
            "dave",
            &order.order_id,
            "my page shows the rejection and refund",
            |e| {
                statuses(e)
                    == (
                        OrderStatus::Rejected,
                        PaymentStatus::Refunded,
                        ReservationStatus::Rejected,
                    )
            },
        )
        .await;
    system.shutdown().await;
}
