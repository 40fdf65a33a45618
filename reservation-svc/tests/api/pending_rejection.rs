//! A rejection is recorded before its refund: while it is pending the reservation
//! cannot be confirmed, a repeated RejectReservation finishes it, the reconciler
//! finishes one whose caller stopped (crashed) after recording it, and an order
//! cancellation still ends the reservation CANCELLED. Always one refund and one
//! terminal event.

use std::time::Duration;

use talentshare_proto::events::event_envelope::Payload;
use talentshare_proto::payment::{PaymentStatus, RefundRequest};
use talentshare_proto::reservation::ReservationStatus;
use tonic::Code;

use crate::confirm::confirm;
use crate::helpers::{spawn_app, spawn_app_reconciling, wait_until};
use crate::reject::reject;
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    confirm_reservation_returns_failed_precondition_while_a_rejection_is_pending_and_a_repeated_reject_completes_it,
    confirm_and_reject_racing_end_with_one_winner_and_a_payment_that_matches,
    the_reconciler_finishes_a_rejection_whose_caller_stopped_after_recording_it,
    order_cancelled_while_a_rejection_is_pending_cancels_the_reservation_and_drops_the_rejection,
    reject_reservation_returns_failed_precondition_and_drops_the_claim_when_payment_svc_refuses_the_refund,
    the_reconciler_skips_an_unreadable_reservation_and_finishes_the_others,
);

async fn confirm_reservation_returns_failed_precondition_while_a_rejection_is_pending_and_a_repeated_reject_completes_it(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (payment, requested) = app.book("talent-7").await;
    app.reservation_events().await;
    let id = requested.reservation_id.as_str();
    app.claim_rejection(id, "mgr-1", "double booked").await;

    let err = confirm(&app, id, "mgr-2").await.unwrap_err();

    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("being rejected"), "{err:?}");
    assert_eq!(
        app.get(id).await,
        requested,
        "the claim is not a visible change"
    );
    assert_eq!(
        app.payment_status(&payment.payment_id).await.0,
        PaymentStatus::Approved,
        "recording the rejection refunds nothing yet"
    );

    let rejected = reject(&app, id, "mgr-2", "other reason")
        .await
        .expect("the repeated reject completes the pending one");

    assert_eq!(rejected.status(), ReservationStatus::Rejected);
    assert_eq!(
        (rejected.manager_id.as_str(), rejected.reason.as_str()),
        ("mgr-1", "double booked"),
        "the recorded rejection stands"
    );
    assert_eq!(
        app.payment_status(&payment.payment_id).await,
        (PaymentStatus::Refunded, "double booked".to_owned())
    );
    let err = confirm(&app, id, "mgr-2").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let events = app.reservation_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].routing_key, "reservation.rejected");
    let env = events[0].envelope();
    assert_eq!(env.aggregate_version, 2);
    let Some(Payload::ReservationRejected(body)) = env.payload else {
        panic!("payload is ReservationRejected");
    };
    assert_eq!(
        (body.manager_id.as_str(), body.reason.as_str()),
        ("mgr-1", "double booked")
    );
    assert_eq!(body.payment_id, payment.payment_id);
    app.stop().await;
}

/// The review finding itself: a confirmation landing between a rejection's refund
/// and its store step used to leave a CONFIRMED booking with a refunded payment.
async fn confirm_and_reject_racing_end_with_one_winner_and_a_payment_that_matches(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let mut booked = Vec::new();
    for _ in 0..4 {
        booked.push(app.book("talent-7").await);
    }
    app.reservation_events().await;

    for (payment, r) in &booked {
        let id = r.reservation_id.as_str();
        let (confirmed, rejected) = tokio::join!(
            confirm(&app, id, "mgr-1"),
            reject(&app, id, "mgr-2", "double booked")
        );

        let now = app.get(id).await;
        let paid = app.payment_status(&payment.payment_id).await.0;
        match (&confirmed, &rejected) {
            (Ok(_), Err(e)) => {
                assert_eq!(e.code(), Code::FailedPrecondition, "{id}: {e:?}");
                assert_eq!(now.status(), ReservationStatus::Confirmed, "{id}");
                assert_eq!(
                    paid,
                    PaymentStatus::Approved,
                    "{id}: a confirmed booking stays paid"
                );
            }
            (Err(e), Ok(_)) => {
                assert_eq!(e.code(), Code::FailedPrecondition, "{id}: {e:?}");
                assert_eq!(now.status(), ReservationStatus::Rejected, "{id}");
                assert_eq!(paid, PaymentStatus::Refunded, "{id}");
            }
            other => panic!("{id}: exactly one of confirm and reject wins: {other:?}"),
        }
    }
    let events = app.reservation_events().await;
    assert_eq!(
        events.len(),
        booked.len(),
        "one terminal event each: {events:?}"
    );
    for (_, r) in &booked {
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e.envelope().aggregate_id == r.reservation_id)
            .collect();
        assert_eq!(mine.len(), 1, "{}: {mine:?}", r.reservation_id);
        let want = match app.get(&r.reservation_id).await.status() {
            ReservationStatus::Confirmed => "reservation.confirmed",
            _ => "reservation.rejected",
        };
        assert_eq!(mine[0].routing_key, want, "{}", r.reservation_id);
    }
    app.stop().await;
}

async fn the_reconciler_finishes_a_rejection_whose_caller_stopped_after_recording_it(
    backend: Backend,
) {
    let app = spawn_app_reconciling(backend, "200ms", "100ms", "150ms").await;
    let (payment, requested) = app.book("talent-7").await;
    app.reservation_events().await;
    let id = requested.reservation_id.as_str();

    // What a RejectReservation that crashed right after recording leaves behind.
    app.claim_rejection(id, "mgr-1", "talent is ill").await;

    let rejected = wait_until(
        "the reconciler rejects it",
        Duration::from_secs(20),
        || async {
            let r = app.get(id).await;
            (r.status() == ReservationStatus::Rejected).then_some(r)
        },
    )
    .await;
    assert_eq!(
        (rejected.manager_id.as_str(), rejected.reason.as_str()),
        ("mgr-1", "talent is ill")
    );
    assert_eq!(
        app.payment_status(&payment.payment_id).await,
        (PaymentStatus::Refunded, "talent is ill".to_owned())
    );
    let row = app.rows_of(&requested.order_id).await.remove(0);
    assert_eq!(
        (
            row.reject_requested_at,
            row.reject_manager_id,
            row.reject_reason
        ),
        (None, None, None),
        "the claim is gone"
    );
    let events = app.reservation_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].routing_key, "reservation.rejected");
    let env = events[0].envelope();
    assert_eq!((env.aggregate_id.as_str(), env.aggregate_version), (id, 2));
    let Some(Payload::ReservationRejected(body)) = env.payload else {
        panic!("payload is ReservationRejected");
    };
    assert_eq!(
        (
            body.manager_id.as_str(),
            body.reason.as_str(),
            body.payment_id.as_str()
        ),
        ("mgr-1", "talent is ill", payment.payment_id.as_str())
    );
    app.stop().await;
}

/// The chosen rule: the cancellation wins. order-svc refunded before announcing it,
/// so the one refund has happened (a rejection's refund of the same payment is the
/// same idempotent refund), and the one terminal event is `reservation.cancelled`.
async fn order_cancelled_while_a_rejection_is_pending_cancels_the_reservation_and_drops_the_rejection(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (payment, requested) = app.book("talent-7").await;
    app.reservation_events().await;
    let id = requested.reservation_id.as_str();
    app.claim_rejection(id, "mgr-1", "double booked").await;

    // CancelOrder as order-svc runs it: refund, then announce.
    app.payments()
        .refund(RefundRequest {
            payment_id: payment.payment_id.clone(),
            reason: "plans changed".into(),
        })
        .await
        .expect("refund");
    app.cancel_order(&payment.order_id, &payment.payment_id)
        .await;
    app.barrier().await;

    let cancelled = app.get(id).await;
    assert_eq!(cancelled.status(), ReservationStatus::Cancelled);
    assert_eq!(cancelled.reason, "plans changed");
    let err = reject(&app, id, "mgr-1", "double booked")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(app.get(id).await, cancelled, "unchanged");
    assert_eq!(
        app.payment_status(&payment.payment_id).await,
        (PaymentStatus::Refunded, "plans changed".to_owned()),
        "refunded once"
    );
    let row = app.rows_of(&requested.order_id).await.remove(0);
    assert_eq!(row.reject_requested_at, None, "the claim is gone");
    let events = app.reservation_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].routing_key, "reservation.cancelled");
    app.stop().await;
}

/// A refund payment-svc refuses for good (here: a payment it does not know) moved no
/// money, so the claim is dropped again rather than left to block the booking.
async fn reject_reservation_returns_failed_precondition_and_drops_the_claim_when_payment_svc_refuses_the_refund(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let approval = app.publish_approval("talent-7").await;
    let before = app.reservation_of(&approval.order_id).await;
    app.reservation_events().await;

    let err = reject(&app, &before.reservation_id, "mgr-1", "double booked")
        .await
        .unwrap_err();

    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(app.get(&before.reservation_id).await, before, "unchanged");
    let row = app.rows_of(&approval.order_id).await.remove(0);
    assert_eq!(
        (
            row.reject_requested_at,
            row.reject_manager_id,
            row.reject_reason
        ),
        (None, None, None),
        "no claim is left"
    );
    assert!(app.reservation_events().await.is_empty());
    app.stop().await;
}

async fn the_reconciler_skips_an_unreadable_reservation_and_finishes_the_others(backend: Backend) {
    // Claims are left alone for 3 s: time to corrupt the first one's row before the
    // reconciler may touch it, however loaded the machine (at 200 ms it sometimes
    // finished the claim first).
    let app = spawn_app_reconciling(backend, "3s", "100ms", "150ms").await;
    let (_, bad) = app.book("talent-7").await;
    let (_, good) = app.book("talent-7").await;
    app.reservation_events().await;
    // The older claim is read first; its row then becomes unreadable.
    app.claim_rejection(&bad.reservation_id, "mgr-1", "double booked")
        .await;
    app.claim_rejection(&good.reservation_id, "mgr-1", "double booked")
        .await;
    let conn = app.db.connect().await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &conn,
        &format!(
            "UPDATE reservations SET session_minutes = 0 WHERE reservation_id = '{}'",
            bad.reservation_id
        ),
    )
    .await
    .expect("corrupt one row");
    let _ = conn.close().await;

    wait_until(
        "the reconciler rejects the readable one",
        Duration::from_secs(20),
        || async {
            (app.get(&good.reservation_id).await.status() == ReservationStatus::Rejected)
                .then_some(())
        },
    )
    .await;
    let left = app.rows_of(&bad.order_id).await.remove(0);
    assert_eq!(left.status, "REQUESTED", "the unreadable row is left alone");
    assert!(
        left.reject_requested_at.is_some(),
        "its claim stays for an operator"
    );
    app.stop().await;
}
