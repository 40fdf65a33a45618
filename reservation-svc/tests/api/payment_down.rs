//! payment-svc unreachable or silent: the service stays ready and readable,
//! Confirm and Reject fail with a retryable code, and nothing visible changes; the
//! rejection stays recorded, so the reservation can no longer be confirmed.

use talentshare_proto::reservation::ListReservationsRequest;
use tonic::Code;

use crate::confirm::confirm;
use crate::helpers::{TestApp, closed_port_url, spawn_app_without_payment};
use crate::reject::reject;
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    confirm_and_reject_return_unavailable_and_change_nothing_when_payment_is_down,
    confirm_and_reject_return_deadline_exceeded_and_change_nothing_when_payment_is_silent,
);

/// Books through a raw approval (no payment-svc to pay with), then checks that a
/// manager's actions fail with `code` and leave everything as it was.
async fn manager_actions_fail_with(app: &TestApp, code: Code) {
    let approval = app.publish_approval("talent-7").await;
    let before = app.reservation_of(&approval.order_id).await;
    app.reservation_events().await;

    let confirmed = confirm(app, &before.reservation_id, "mgr-1").await;
    let rejected = reject(app, &before.reservation_id, "mgr-1", "fully booked").await;

    assert_eq!(confirmed.map_err(|s| s.code()), Err(code), "confirm");
    let rejected = rejected.unwrap_err();
    assert_eq!(rejected.code(), code, "reject: {rejected:?}");
    assert!(
        rejected.message().contains("rejection is recorded"),
        "{rejected:?}"
    );
    assert_eq!(app.get(&before.reservation_id).await, before, "unchanged");
    let refused = confirm(app, &before.reservation_id, "mgr-1")
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::FailedPrecondition,
        "confirm after a pending reject: {refused:?}"
    );
    assert!(
        app.reservation_events().await.is_empty(),
        "nothing announced"
    );
    let listed = app
        .client
        .clone()
        .list_reservations(ListReservationsRequest {
            talent_id: "talent-7".into(),
            ..Default::default()
        })
        .await
        .expect("reads do not need payment-svc")
        .into_inner();
    assert_eq!(listed.reservations, vec![before]);
}

async fn confirm_and_reject_return_unavailable_and_change_nothing_when_payment_is_down(
    backend: Backend,
) {
    let app = spawn_app_without_payment(backend, &closed_port_url(), "2s").await;
    manager_actions_fail_with(&app, Code::Unavailable).await;
    app.stop().await;
}

async fn confirm_and_reject_return_deadline_exceeded_and_change_nothing_when_payment_is_silent(
    backend: Backend,
) {
    // Accepts connections and never answers: every call runs into its deadline.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("local addr"));
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let app = spawn_app_without_payment(backend, &url, "300ms").await;
    manager_actions_fail_with(&app, Code::DeadlineExceeded).await;
    app.stop().await;
    holder.abort();
}
