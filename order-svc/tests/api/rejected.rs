//! The "order" consumer: `reservation.rejected` ends the order REJECTED, once,
//! whatever the duplicates; a rejection for an unknown order is dead-lettered.

use std::time::Duration;

use prost::Message;
use talentshare_proto::events::{EventEnvelope, ReservationRejected, event_envelope::Payload};
use talentshare_proto::order::{CancelOrderRequest, OrderStatus};
use tonic::Code;

use crate::helpers::{APPROVED_CARD, TestApp, log, place_request, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    a_reservation_rejection_ends_a_paid_order_rejected_and_is_applied_once,
    a_rejection_for_an_unknown_order_is_dead_lettered,
);

/// A `reservation.rejected` event as reservation-svc publishes it.
pub(crate) fn rejection(order_id: &str, customer_id: &str, payment_id: &str) -> EventEnvelope {
    let reservation_id = uuid::Uuid::now_v7().to_string();
    EventEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: "reservation.rejected".into(),
        aggregate_id: reservation_id.clone(),
        aggregate_version: 2,
        occurred_at: Some(std::time::SystemTime::now().into()),
        order_id: order_id.to_owned(),
        customer_id: customer_id.to_owned(),
        payload: Some(Payload::ReservationRejected(ReservationRejected {
            reservation_id,
            manager_id: "manager-3".into(),
            reason: "talent unavailable".into(),
            payment_id: payment_id.to_owned(),
        })),
    }
}

pub(crate) async fn publish(app: &TestApp, event: &EventEnvelope) {
    app.broker
        .publish_raw(
            &event.event_type,
            &event.encode_to_vec(),
            Default::default(),
        )
        .await;
}

async fn a_reservation_rejection_ends_a_paid_order_rejected_and_is_applied_once(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let paid = app.place(place_request(APPROVED_CARD)).await;
    let event = rejection(&paid.order_id, "cust-1", &paid.payment_id);

    publish(&app, &event).await;
    let rejected = app
        .wait_for_status(&paid.order_id, OrderStatus::Rejected)
        .await;

    assert!(rejected.refunded);
    assert_eq!(rejected.reason, "talent unavailable");
    assert_eq!(rejected.payment_id, paid.payment_id);

    // A redelivery, and a second rejection of the same order, change nothing. The
    // consumer handles one delivery at a time, so once the later marker order is
    // rejected, both have been handled.
    publish(&app, &event).await;
    publish(&app, &rejection(&paid.order_id, "cust-1", &paid.payment_id)).await;
    let marker = app.place(place_request(APPROVED_CARD)).await;
    publish(
        &app,
        &rejection(&marker.order_id, "cust-1", &marker.payment_id),
    )
    .await;
    app.wait_for_status(&marker.order_id, OrderStatus::Rejected)
        .await;

    assert_eq!(app.get(&paid.order_id).await, rejected, "applied once");
    let events = app.order_events().await;
    let log_of_paid: Vec<_> = events
        .iter()
        .filter(|e| e.order_id == paid.order_id)
        .collect();
    assert_eq!(
        log_of_paid
            .iter()
            .map(|e| (e.event_type.clone(), e.aggregate_version))
            .collect::<Vec<_>>(),
        log(&[
            ("order.placed", 1),
            ("order.paid", 2),
            ("order.rejected", 3)
        ])
    );
    let Some(Payload::OrderRejected(body)) = &log_of_paid[2].payload else {
        panic!("order.rejected carries OrderRejected")
    };
    let Some(Payload::ReservationRejected(source)) = &event.payload else {
        unreachable!()
    };
    assert_eq!(body.reservation_id, source.reservation_id);
    assert_eq!(body.reason, "talent unavailable");

    let err = app
        .client
        .cancel_order(CancelOrderRequest {
            order_id: paid.order_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "a rejected order has ended"
    );
    app.stop().await;
}

async fn a_rejection_for_an_unknown_order_is_dead_lettered(backend: Backend) {
    let app = spawn_app(backend).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let event = rejection(&unknown, "cust-1", &uuid::Uuid::now_v7().to_string());

    publish(&app, &event).await;

    let dlq = app.broker.topology.dead_letter_queue("order");
    let dead = app.broker.collect(&dlq, 1, Duration::from_secs(20)).await;
    assert_eq!(dead.len(), 1, "dead-lettered");
    assert_eq!(dead[0].envelope().event_id, event.event_id);
    assert!(app.order_rows().await.is_empty(), "nothing stored");
    app.stop().await;
}
