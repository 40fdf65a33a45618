//! `payment.approved` → a REQUESTED reservation and `reservation.requested`; one
//! reservation per order however often the approval arrives; a malformed approval
//! is dead-lettered.

use talentshare_proto::events::{PaymentApproved, event_envelope::Payload};
use talentshare_proto::reservation::ReservationStatus;

use crate::helpers::{SESSION_START_SECONDS, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    payment_approved_creates_a_requested_reservation_and_announces_it,
    a_redelivered_or_repeated_approval_leaves_one_reservation_and_one_event,
    a_malformed_approval_is_dead_lettered_and_stores_nothing,
);

async fn payment_approved_creates_a_requested_reservation_and_announces_it(backend: Backend) {
    let app = spawn_app(backend).await;

    let (payment, r) = app.book("talent-7").await;

    assert_eq!(r.status(), ReservationStatus::Requested);
    assert_eq!(r.order_id, payment.order_id);
    assert_eq!(r.customer_id, "cust-1");
    assert_eq!(r.talent_id, "talent-7");
    assert_eq!(
        r.session_start_time.map(|t| (t.seconds, t.nanos)),
        Some((SESSION_START_SECONDS, 0))
    );
    assert_eq!(r.session_minutes, 90);
    assert_eq!(r.payment_id, payment.payment_id);
    assert!(r.manager_id.is_empty() && r.reason.is_empty(), "{r:?}");
    assert_eq!(r.create_time, r.update_time);
    let id = uuid::Uuid::parse_str(&r.reservation_id).expect("reservation id is a UUID");
    assert_eq!(id.get_version_num(), 7);

    let events = app.reservation_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].routing_key, "reservation.requested");
    let env = events[0].envelope();
    assert_eq!(env.aggregate_id, r.reservation_id);
    assert_eq!(env.aggregate_version, 1);
    assert_eq!(
        (env.order_id.as_str(), env.customer_id.as_str()),
        (r.order_id.as_str(), "cust-1")
    );
    let Some(Payload::ReservationRequested(body)) = env.payload else {
        panic!("payload is ReservationRequested");
    };
    assert_eq!(body.reservation_id, r.reservation_id);
    assert_eq!(body.payment_id, payment.payment_id);
    assert_eq!(body.talent_id, "talent-7");
    assert_eq!(body.session_start_time, r.session_start_time);
    assert_eq!(body.session_minutes, 90);
    app.stop().await;
}

async fn a_redelivered_or_repeated_approval_leaves_one_reservation_and_one_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let (payment, r) = app.book("talent-7").await;
    let events = app.all_events().await;
    let approval = events
        .iter()
        .find(|e| e.routing_key == "payment.approved")
        .expect("payment-svc announced the approval")
        .envelope();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.routing_key == "reservation.requested")
            .count(),
        1
    );

    // A redelivery (same event id, twice) and a second approval event for the order.
    app.republish(&approval).await;
    app.republish(&approval).await;
    app.publish(
        &payment.order_id,
        approval.payload.clone().expect("payload"),
    )
    .await;
    app.barrier().await;

    assert_eq!(app.rows_of(&payment.order_id).await.len(), 1);
    assert_eq!(app.get(&r.reservation_id).await, r, "unchanged");
    assert!(app.reservation_events().await.is_empty(), "no second event");
    app.stop().await;
}

async fn a_malformed_approval_is_dead_lettered_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let order_id = uuid::Uuid::now_v7().to_string();

    let bad = app
        .publish(
            &order_id,
            Payload::PaymentApproved(PaymentApproved {
                payment_id: uuid::Uuid::now_v7().to_string(),
                talent_id: String::new(),
                session_minutes: 90,
                ..Default::default()
            }),
        )
        .await;

    let dead = app.dead_letters(1).await;
    assert_eq!(dead[0].envelope().event_id, bad.event_id);
    assert!(app.rows().await.is_empty(), "nothing stored");
    assert_eq!(app.outbox_len().await, 0, "nothing announced");
    app.stop().await;
}
