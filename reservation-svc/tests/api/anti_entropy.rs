//! The anti-entropy pass cancels an active booking whose payment was refunded when
//! the `order.cancelled` that should have cancelled it never arrived, exactly as that
//! event would have; a booking whose payment stands, or whose rejection is pending,
//! is left alone.

use std::time::Duration;

use talentshare_proto::payment::RefundRequest;
use talentshare_proto::reservation::ReservationStatus;

use crate::confirm::confirm;
use crate::helpers::{spawn_app_deaf_to_payments, spawn_app_with_args, wait_until};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    a_booking_whose_order_cancellation_was_lost_is_cancelled_by_the_pass,
    a_paid_order_whose_approval_was_lost_is_booked_by_the_pass,
);

const FAST_PASS: &[&str] = &[
    "--anti-entropy-interval",
    "100ms",
    "--anti-entropy-quiet",
    "300ms",
];

async fn a_paid_order_whose_approval_was_lost_is_booked_by_the_pass(backend: Backend) {
    let app = spawn_app_deaf_to_payments(backend, FAST_PASS).await;
    let payment = app.pay("talent-7").await;

    let booked = app.reservation_of(&payment.order_id).await;
    assert_eq!(booked.status(), ReservationStatus::Requested);
    assert_eq!(booked.payment_id, payment.payment_id);
    assert_eq!(booked.talent_id, "talent-7");
    assert_eq!(
        booked.session_start_time.map(|t| t.seconds),
        Some(crate::helpers::SESSION_START_SECONDS)
    );
    assert_eq!(booked.session_minutes, 90);
    let requested: Vec<_> = app
        .reservation_events()
        .await
        .iter()
        .map(|e| e.envelope())
        .filter(|e| e.event_type == "reservation.requested")
        .collect();
    assert_eq!(requested.len(), 1, "announced once: {requested:?}");
    // Later passes find it booked and leave it alone.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.rows_of(&payment.order_id).await.len(), 1);
    assert!(
        app.reservation_events().await.is_empty(),
        "nothing new announced"
    );
    app.stop().await;
}

async fn a_booking_whose_order_cancellation_was_lost_is_cancelled_by_the_pass(backend: Backend) {
    let app = spawn_app_with_args(backend, FAST_PASS).await;
    let (requested_payment, requested) = app.book("talent-7").await;
    let (confirmed_payment, confirmed) = app.book("talent-7").await;
    let (_, untouched) = app.book("talent-7").await;
    let (rejecting_payment, rejecting) = app.book("talent-7").await;
    // A manager's rejection recorded, its refund made, REJECTED not yet stored: the
    // rejection reconciler's to finish, not the pass's to cancel.
    app.claim_rejection(&rejecting.reservation_id, "mgr-1", "double booked")
        .await;
    app.payments()
        .refund(RefundRequest {
            payment_id: rejecting_payment.payment_id.clone(),
            reason: "double booked".into(),
        })
        .await
        .expect("the rejection's refund");
    confirm(&app, &confirmed.reservation_id, "mgr-1")
        .await
        .expect("confirm");
    app.reservation_events().await;

    // order-svc refunded both payments on the customers' cancellations; their
    // `order.cancelled` events were lost.
    for payment in [&requested_payment, &confirmed_payment] {
        app.payments()
            .refund(RefundRequest {
                payment_id: payment.payment_id.clone(),
                reason: "plans changed".into(),
            })
            .await
            .expect("refund");
    }

    for (case, r) in [("requested", &requested), ("confirmed", &confirmed)] {
        let now = wait_until(
            &format!("{case} booking cancelled by the pass"),
            Duration::from_secs(20),
            || async {
                let now = app.get(&r.reservation_id).await;
                (now.status() == ReservationStatus::Cancelled).then_some(now)
            },
        )
        .await;
        assert_eq!(now.reason, "plans changed", "{case}: the refund's reason");
    }
    let events: Vec<_> = app
        .reservation_events()
        .await
        .iter()
        .map(|e| e.envelope())
        .collect();
    let cancelled: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "reservation.cancelled")
        .map(|e| e.aggregate_id.clone())
        .collect();
    assert_eq!(cancelled.len(), 2, "{events:?}");
    assert!(cancelled.contains(&requested.reservation_id));
    assert!(cancelled.contains(&confirmed.reservation_id));
    assert_eq!(
        app.get(&untouched.reservation_id).await.status(),
        ReservationStatus::Requested,
        "its payment stands"
    );
    let still = app.get(&rejecting.reservation_id).await;
    assert_eq!(
        (still.status(), still.reason.as_str()),
        (ReservationStatus::Requested, ""),
        "a pending rejection is left to its reconciler"
    );
    app.stop().await;
}
