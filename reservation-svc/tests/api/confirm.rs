//! ConfirmReservation: confirmed only while the payment is approved (checked with the
//! real payment-svc), idempotent, refused for final reservations.

use talentshare_proto::events::event_envelope::Payload;
use talentshare_proto::payment::RefundRequest;
use talentshare_proto::reservation::{
    ConfirmReservationRequest, RejectReservationRequest, Reservation, ReservationStatus,
};
use tonic::Code;

use crate::helpers::MANAGED;
use crate::helpers::{TestApp, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    confirm_reservation_confirms_once_and_repeats_return_it_unchanged,
    confirm_reservation_returns_failed_precondition_when_the_payment_was_refunded,
    confirm_reservation_returns_failed_precondition_for_a_rejected_or_cancelled_reservation,
    confirm_reservation_returns_permission_denied_for_an_unknown_reservation,
);

pub async fn confirm(
    app: &TestApp,
    reservation_id: &str,
    manager_id: &str,
) -> Result<Reservation, tonic::Status> {
    // The manager is whoever the token names; the request may repeat it.
    app.as_manager(manager_id, MANAGED)
        .confirm_reservation(ConfirmReservationRequest {
            reservation_id: reservation_id.to_owned(),
            manager_id: manager_id.to_owned(),
        })
        .await
        .map(|r| r.into_inner().reservation.expect("a reservation"))
}

async fn confirm_reservation_confirms_once_and_repeats_return_it_unchanged(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, requested) = app.book("talent-7").await;
    app.reservation_events().await;

    let confirmed = confirm(&app, &requested.reservation_id, "mgr-1")
        .await
        .expect("confirm");
    let again = confirm(&app, &requested.reservation_id, "mgr-2")
        .await
        .expect("confirm again");

    assert_eq!(confirmed.status(), ReservationStatus::Confirmed);
    assert_eq!(confirmed.manager_id, "mgr-1");
    assert_eq!(confirmed.create_time, requested.create_time);
    assert_eq!(again, confirmed, "the first confirmation stands");
    assert_eq!(app.get(&requested.reservation_id).await, confirmed);
    let events = app.reservation_events().await;
    assert_eq!(events.len(), 1, "one event for two calls: {events:?}");
    assert_eq!(events[0].routing_key, "reservation.confirmed");
    let env = events[0].envelope();
    assert_eq!(env.aggregate_id, requested.reservation_id);
    assert_eq!(env.aggregate_version, 2);
    assert_eq!(env.order_id, requested.order_id);
    let Some(Payload::ReservationConfirmed(body)) = env.payload else {
        panic!("payload is ReservationConfirmed");
    };
    assert_eq!(
        (body.reservation_id.as_str(), body.manager_id.as_str()),
        (requested.reservation_id.as_str(), "mgr-1")
    );
    app.stop().await;
}

async fn confirm_reservation_returns_failed_precondition_when_the_payment_was_refunded(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (payment, requested) = app.book("talent-7").await;
    app.reservation_events().await;
    // The customer cancelled: order-svc refunded; its order.cancelled is not here yet.
    app.payments()
        .refund(RefundRequest {
            payment_id: payment.payment_id,
            reason: "customer cancelled".into(),
        })
        .await
        .expect("refund");

    let err = confirm(&app, &requested.reservation_id, "mgr-1")
        .await
        .unwrap_err();

    let d = testkit::expect_reason(&err, Code::FailedPrecondition, "PAYMENT_NOT_APPROVED");
    assert_eq!(d.metadata["reservation_id"], requested.reservation_id);
    assert_eq!(d.metadata["payment_status"], "PAYMENT_STATUS_REFUNDED");
    assert_eq!(
        d.preconditions[0].1,
        format!("reservations/{}", requested.reservation_id)
    );
    assert_eq!(
        app.get(&requested.reservation_id).await,
        requested,
        "unchanged"
    );
    assert!(app.reservation_events().await.is_empty());
    app.stop().await;
}

async fn confirm_reservation_returns_failed_precondition_for_a_rejected_or_cancelled_reservation(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (_, to_reject) = app.book("talent-7").await;
    app.client
        .clone()
        .reject_reservation(RejectReservationRequest {
            reservation_id: to_reject.reservation_id.clone(),
            manager_id: "mgr-1".into(),
            reason: "fully booked".into(),
        })
        .await
        .expect("reject");
    let (payment, to_cancel) = app.book("talent-7").await;
    app.cancel_order(&payment.order_id, &payment.payment_id)
        .await;
    app.barrier().await;
    app.reservation_events().await;

    for (case, r) in [("rejected", to_reject), ("cancelled", to_cancel)] {
        let before = app.get(&r.reservation_id).await;
        let err = confirm(&app, &r.reservation_id, "mgr-2").await.unwrap_err();
        let d = testkit::expect_reason(
            &err,
            Code::FailedPrecondition,
            "RESERVATION_ALREADY_DECIDED",
        );
        assert_eq!(d.metadata["reservation_id"], r.reservation_id, "{case}");
        assert_eq!(
            d.metadata["reservation_status"],
            before.status().as_str_name(),
            "{case}: the state that blocked it"
        );
        assert_eq!(
            d.preconditions[0].1,
            format!("reservations/{}", r.reservation_id),
            "{case}"
        );
        assert_eq!(
            app.get(&r.reservation_id).await,
            before,
            "{case}: unchanged"
        );
    }
    assert!(app.reservation_events().await.is_empty());
    app.stop().await;
}

async fn confirm_reservation_returns_permission_denied_for_an_unknown_reservation(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let err = confirm(&app, &uuid::Uuid::now_v7().to_string(), "mgr-1")
        .await
        .unwrap_err();
    // The same answer as for another talent's booking (AIP-211).
    testkit::expect_reason(&err, Code::PermissionDenied, "ACCESS_DENIED");
    app.stop().await;
}
