//! RejectReservation: the payment refunded through the real payment-svc, then
//! REJECTED and `reservation.rejected`; idempotent; refused once confirmed or
//! cancelled.

use talentshare_proto::events::event_envelope::Payload;
use talentshare_proto::payment::{PaymentStatus, RefundRequest};
use talentshare_proto::reservation::{RejectReservationRequest, Reservation, ReservationStatus};
use tonic::Code;

use crate::confirm::confirm;
use crate::helpers::MANAGED;
use crate::helpers::{TestApp, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    reject_reservation_refunds_the_payment_and_announces_the_rejection_once,
    reject_reservation_returns_failed_precondition_for_a_confirmed_or_cancelled_reservation,
    reject_reservation_succeeds_when_the_payment_is_already_refunded,
);

pub async fn reject(
    app: &TestApp,
    reservation_id: &str,
    manager_id: &str,
    reason: &str,
) -> Result<Reservation, tonic::Status> {
    app.as_manager(manager_id, MANAGED)
        .reject_reservation(RejectReservationRequest {
            reservation_id: reservation_id.to_owned(),
            manager_id: manager_id.to_owned(),
            reason: reason.to_owned(),
        })
        .await
        .map(|r| r.into_inner().reservation.expect("a reservation"))
}

async fn payment_status(app: &TestApp, payment_id: &str) -> (PaymentStatus, String) {
    app.payment_status(payment_id).await
}

async fn reject_reservation_refunds_the_payment_and_announces_the_rejection_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (payment, requested) = app.book("talent-7").await;
    app.reservation_events().await;

    let rejected = reject(&app, &requested.reservation_id, "mgr-1", "double booked")
        .await
        .expect("reject");
    let again = reject(&app, &requested.reservation_id, "mgr-2", "other reason")
        .await
        .expect("reject again");

    assert_eq!(rejected.status(), ReservationStatus::Rejected);
    assert_eq!(
        (rejected.manager_id.as_str(), rejected.reason.as_str()),
        ("mgr-1", "double booked")
    );
    assert_eq!(again, rejected, "the first rejection stands");
    assert_eq!(
        payment_status(&app, &payment.payment_id).await,
        (PaymentStatus::Refunded, "double booked".to_owned())
    );
    let events = app.reservation_events().await;
    assert_eq!(events.len(), 1, "one event for two calls: {events:?}");
    assert_eq!(events[0].routing_key, "reservation.rejected");
    let env = events[0].envelope();
    assert_eq!(env.aggregate_id, requested.reservation_id);
    assert_eq!(env.aggregate_version, 2);
    assert_eq!(
        (env.order_id.as_str(), env.customer_id.as_str()),
        (requested.order_id.as_str(), "cust-1")
    );
    let Some(Payload::ReservationRejected(body)) = env.payload else {
        panic!("payload is ReservationRejected");
    };
    assert_eq!(body.reservation_id, requested.reservation_id);
    assert_eq!(body.manager_id, "mgr-1");
    assert_eq!(body.reason, "double booked");
    assert_eq!(body.payment_id, payment.payment_id);
    app.stop().await;
}

async fn reject_reservation_returns_failed_precondition_for_a_confirmed_or_cancelled_reservation(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (confirmed_payment, to_confirm) = app.book("talent-7").await;
    confirm(&app, &to_confirm.reservation_id, "mgr-1")
        .await
        .expect("confirm");
    let (payment, to_cancel) = app.book("talent-7").await;
    app.cancel_order(&payment.order_id, &payment.payment_id)
        .await;
    app.barrier().await;
    app.reservation_events().await;

    for (case, r) in [("confirmed", to_confirm), ("cancelled", to_cancel)] {
        let before = app.get(&r.reservation_id).await;
        let err = reject(&app, &r.reservation_id, "mgr-2", "no")
            .await
            .unwrap_err();
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
            app.get(&r.reservation_id).await,
            before,
            "{case}: unchanged"
        );
    }
    assert_eq!(
        payment_status(&app, &confirmed_payment.payment_id).await.0,
        PaymentStatus::Approved,
        "a refused rejection refunds nothing"
    );
    assert!(app.reservation_events().await.is_empty());
    app.stop().await;
}

async fn reject_reservation_succeeds_when_the_payment_is_already_refunded(backend: Backend) {
    let app = spawn_app(backend).await;
    let (payment, requested) = app.book("talent-7").await;
    app.payments()
        .refund(RefundRequest {
            payment_id: payment.payment_id.clone(),
            reason: "customer cancelled".into(),
        })
        .await
        .expect("refund");

    let rejected = reject(&app, &requested.reservation_id, "mgr-1", "talent is ill")
        .await
        .expect("reject");

    assert_eq!(rejected.status(), ReservationStatus::Rejected);
    assert_eq!(
        payment_status(&app, &payment.payment_id).await,
        (PaymentStatus::Refunded, "customer cancelled".to_owned()),
        "the first refund stands"
    );
    app.stop().await;
}
