//! Who may do what: a manager lists, confirms and rejects only the bookings of the
//! talents their token names, as themselves; a customer sees only their own booking
//! and changes nothing. Every refusal is PERMISSION_DENIED, and changes nothing.

use talentshare_proto::reservation::{
    ConfirmReservationRequest, GetReservationRequest, ListReservationsRequest,
    RejectReservationRequest, ReservationStatus,
};
use tonic::Code;

use crate::helpers::spawn_app;
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    a_manager_of_another_talent_cannot_list_confirm_or_reject,
    a_customer_sees_only_their_own_booking_and_cannot_manage_it,
    the_manager_recorded_is_the_token_subject,
);

async fn a_manager_of_another_talent_cannot_list_confirm_or_reject(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, booked) = app.book("talent-7").await;
    app.reservation_events().await;
    let mut other = app.as_manager("mgr-x", &["talent-other"]);

    let list = other
        .list_reservations(ListReservationsRequest {
            talent_id: "talent-7".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(list.code(), Code::PermissionDenied, "list: {list:?}");
    let confirm = other
        .confirm_reservation(ConfirmReservationRequest {
            reservation_id: booked.reservation_id.clone(),
            manager_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        confirm.code(),
        Code::PermissionDenied,
        "confirm: {confirm:?}"
    );
    let reject = other
        .reject_reservation(RejectReservationRequest {
            reservation_id: booked.reservation_id.clone(),
            manager_id: String::new(),
            reason: "not mine".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reject.code(), Code::PermissionDenied, "reject: {reject:?}");
    let get = other
        .get_reservation(GetReservationRequest {
            reservation_id: booked.reservation_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::PermissionDenied, "get: {get:?}");

    let after = app.get(&booked.reservation_id).await;
    assert_eq!(after, booked, "unchanged");
    assert_eq!(after.status, ReservationStatus::Requested as i32);
    assert!(
        app.reservation_events().await.is_empty(),
        "nothing announced"
    );
    app.stop().await;
}

async fn a_customer_sees_only_their_own_booking_and_cannot_manage_it(backend: Backend) {
    let app = spawn_app(backend).await;
    // The test bookings belong to cust-1.
    let (_, booked) = app.book("talent-7").await;
    let mut owner = app.as_customer("cust-1");
    let seen = owner
        .get_reservation(GetReservationRequest {
            reservation_id: booked.reservation_id.clone(),
        })
        .await
        .expect("the customer reads their own booking")
        .into_inner()
        .reservation
        .expect("a reservation");
    assert_eq!(seen, booked);

    let stranger = app
        .as_customer("cust-2")
        .get_reservation(GetReservationRequest {
            reservation_id: booked.reservation_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::PermissionDenied);

    let confirm = owner
        .confirm_reservation(ConfirmReservationRequest {
            reservation_id: booked.reservation_id.clone(),
            manager_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(confirm.code(), Code::PermissionDenied);
    let list = owner
        .list_reservations(ListReservationsRequest {
            talent_id: "talent-7".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(list.code(), Code::PermissionDenied);
    assert_eq!(app.get(&booked.reservation_id).await, booked, "unchanged");
    app.stop().await;
}

async fn the_manager_recorded_is_the_token_subject(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, booked) = app.book("talent-7").await;
    let mut lee = app.as_manager("lee", &["talent-7"]);

    // Naming another manager in the request is refused...
    let err = lee
        .confirm_reservation(ConfirmReservationRequest {
            reservation_id: booked.reservation_id.clone(),
            manager_id: "someone-else".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // ...and an empty one means the caller.
    let confirmed = lee
        .confirm_reservation(ConfirmReservationRequest {
            reservation_id: booked.reservation_id.clone(),
            manager_id: String::new(),
        })
        .await
        .expect("confirm")
        .into_inner()
        .reservation
        .expect("a reservation");
    assert_eq!(confirmed.status, ReservationStatus::Confirmed as i32);
    assert_eq!(confirmed.manager_id, "lee");
    app.stop().await;
}
