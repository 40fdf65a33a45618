//! `order.cancelled`: cancels a REQUESTED or CONFIRMED reservation, leaves a final
//! one alone, and when it overtakes the approval leaves a tombstone, so whichever
//! arrives first the order ends with one CANCELLED reservation.

use talentshare_proto::events::event_envelope::Payload;
use talentshare_proto::reservation::{Reservation, ReservationStatus};

use crate::confirm::confirm;
use crate::helpers::{approval, spawn_app};
use crate::reject::reject;
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    order_cancelled_cancels_a_requested_or_confirmed_reservation_once,
    order_cancelled_before_the_approval_ends_in_the_same_single_cancelled_reservation,
    order_cancelled_leaves_a_rejected_reservation_rejected,
    approvals_and_cancellations_in_any_order_and_repeated_leave_one_cancelled_reservation_each,
);

async fn order_cancelled_cancels_a_requested_or_confirmed_reservation_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (requested_payment, requested) = app.book("talent-7").await;
    let (confirmed_payment, confirmed) = app.book("talent-7").await;
    confirm(&app, &confirmed.reservation_id, "mgr-1")
        .await
        .expect("confirm");
    app.reservation_events().await;

    let cancellation = app
        .cancel_order(&requested_payment.order_id, &requested_payment.payment_id)
        .await;
    app.cancel_order(&confirmed_payment.order_id, &confirmed_payment.payment_id)
        .await;
    app.barrier().await;

    let events: Vec<_> = app
        .reservation_events()
        .await
        .iter()
        .map(|e| e.envelope())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    for (case, r, manager, version) in [
        ("requested", &requested, "", 2),
        ("confirmed", &confirmed, "mgr-1", 3),
    ] {
        let now = app.get(&r.reservation_id).await;
        assert_eq!(now.status(), ReservationStatus::Cancelled, "{case}");
        assert_eq!(now.reason, "plans changed", "{case}");
        assert_eq!(
            now.manager_id, manager,
            "{case}: the confirming manager stays"
        );
        assert_eq!(now.talent_id, "talent-7", "{case}");
        let event = events
            .iter()
            .find(|e| e.aggregate_id == r.reservation_id)
            .unwrap_or_else(|| panic!("{case}: no event"));
        assert_eq!(event.event_type, "reservation.cancelled", "{case}");
        assert_eq!(event.aggregate_version, version, "{case}");
        assert_eq!(event.order_id, r.order_id, "{case}");
        let Some(Payload::ReservationCancelled(body)) = &event.payload else {
            panic!("{case}: payload is ReservationCancelled");
        };
        assert_eq!(
            (body.reservation_id.as_str(), body.reason.as_str()),
            (r.reservation_id.as_str(), "plans changed"),
            "{case}"
        );
    }

    // Delivered again, and announced a second time: nothing more happens.
    app.republish(&cancellation).await;
    app.cancel_order(&requested_payment.order_id, &requested_payment.payment_id)
        .await;
    app.barrier().await;
    assert!(app.reservation_events().await.is_empty());
    assert_eq!(app.rows().await.len(), 2);
    app.stop().await;
}

async fn order_cancelled_before_the_approval_ends_in_the_same_single_cancelled_reservation(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    // Cancellation first: it names no payment (order-svc never heard back from Pay).
    let late_order = uuid::Uuid::now_v7().to_string();
    app.cancel_order(&late_order, "").await;
    app.barrier().await;
    let tombstone = app.reservation_of(&late_order).await;
    assert_eq!(tombstone.status(), ReservationStatus::Cancelled);
    assert_eq!(tombstone.customer_id, "cust-1");
    assert_eq!(tombstone.reason, "plans changed");
    assert!(tombstone.talent_id.is_empty() && tombstone.payment_id.is_empty());
    let events = app.reservation_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].routing_key, "reservation.cancelled");
    assert_eq!(events[0].envelope().aggregate_version, 1);

    // The approval comes after all: it fills the booking in and nothing else.
    let payment = app.pay_for(&late_order, "talent-7").await;
    app.barrier().await;
    assert_eq!(app.rows_of(&late_order).await.len(), 1, "one reservation");
    let completed = app.get(&tombstone.reservation_id).await;
    assert_eq!(completed.status(), ReservationStatus::Cancelled);
    assert_eq!(completed.payment_id, payment.payment_id);
    assert_eq!(completed.update_time, tombstone.update_time);
    assert!(
        app.reservation_events().await.is_empty(),
        "nothing announced"
    );

    // The usual order, for comparison: approval, then cancellation.
    let (usual_payment, _) = app.book("talent-7").await;
    app.cancel_order(&usual_payment.order_id, &usual_payment.payment_id)
        .await;
    app.barrier().await;
    let usual = app.reservation_of(&usual_payment.order_id).await;
    assert_eq!(essence(&completed), essence(&usual));
    app.stop().await;
}

/// Everything about a reservation that must not depend on delivery order.
fn essence(r: &Reservation) -> impl PartialEq + std::fmt::Debug {
    (
        r.status(),
        r.customer_id.clone(),
        r.talent_id.clone(),
        r.session_start_time,
        r.session_minutes,
        r.manager_id.clone(),
        r.reason.clone(),
    )
}

async fn order_cancelled_leaves_a_rejected_reservation_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let (payment, requested) = app.book("talent-7").await;
    let rejected = reject(&app, &requested.reservation_id, "mgr-1", "fully booked")
        .await
        .expect("reject");
    app.reservation_events().await;

    app.cancel_order(&payment.order_id, &payment.payment_id)
        .await;
    app.barrier().await;

    assert_eq!(app.get(&requested.reservation_id).await, rejected);
    assert!(app.reservation_events().await.is_empty());
    app.stop().await;
}

async fn approvals_and_cancellations_in_any_order_and_repeated_leave_one_cancelled_reservation_each(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let orders: Vec<String> = (0..8).map(|_| uuid::Uuid::now_v7().to_string()).collect();

    for (i, order) in orders.iter().enumerate() {
        let payment_id = uuid::Uuid::now_v7().to_string();
        let approved = approval(&payment_id, "talent-7");
        // Even orders: cancellation first; every third: each event delivered twice.
        let cancelled_first = i % 2 == 0;
        let twice = i % 3 == 0;
        if cancelled_first {
            let c = app.cancel_order(order, &payment_id).await;
            if twice {
                app.republish(&c).await;
            }
        }
        let a = app.publish(order, approved).await;
        if twice {
            app.republish(&a).await;
            app.publish(order, a.payload.clone().expect("payload"))
                .await;
        }
        if !cancelled_first {
            let c = app.cancel_order(order, &payment_id).await;
            if twice {
                app.republish(&c).await;
            }
        }
    }
    app.barrier().await;

    let rows = app.rows().await;
    assert_eq!(rows.len(), orders.len(), "one reservation per order");
    for order in &orders {
        let r = app.reservation_of(order).await;
        assert_eq!(r.status(), ReservationStatus::Cancelled, "{order}");
        assert_eq!(r.talent_id, "talent-7", "{order}: booking known either way");
        assert_eq!(r.reason, "plans changed", "{order}");
    }
    let events = app.reservation_events().await;
    let cancelled = events
        .iter()
        .filter(|e| e.routing_key == "reservation.cancelled")
        .count();
    assert_eq!(
        cancelled,
        orders.len(),
        "one cancellation announced per order"
    );
    app.stop().await;
}
