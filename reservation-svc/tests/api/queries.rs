//! GetReservation, and ListReservations paging and filters (one managed talent at a time).

use talentshare_proto::reservation::{
    GetReservationRequest, ListReservationsRequest, ReservationStatus,
};
use tonic::Code;

use crate::helpers::spawn_app;
use crate::reject::reject;
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    get_reservation_returns_permission_denied_for_an_unknown_reservation,
    list_reservations_pages_newest_first_and_filters_by_talent_and_status,
);

async fn get_reservation_returns_permission_denied_for_an_unknown_reservation(backend: Backend) {
    let app = spawn_app(backend).await;
    let err = app
        .client
        .clone()
        .get_reservation(GetReservationRequest {
            reservation_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    // Not NOT_FOUND: a stranger must not learn which ids exist (AIP-211).
    assert_eq!(err.code(), Code::PermissionDenied);
    app.stop().await;
}

async fn list_reservations_pages_newest_first_and_filters_by_talent_and_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut made = Vec::new();
    for _ in 0..5 {
        // One at a time: reservation ids are minted as approvals are consumed.
        let (_, r) = app.book("talent-a").await;
        made.push(r.reservation_id);
    }
    reject(&app, &made[2], "mgr-1", "fully booked")
        .await
        .expect("reject");
    app.book("talent-b").await;
    let mut client = app.client.clone();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_reservations(ListReservationsRequest {
                page_size: 2,
                page_token: token.clone(),
                talent_id: "talent-a".into(),
                status: 0,
            })
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        assert!(page.reservations.len() <= 2);
        seen.extend(page.reservations.into_iter().map(|r| r.reservation_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    made.reverse();
    assert_eq!(
        seen, made,
        "every reservation of the talent once, newest first"
    );
    assert_eq!(pages, 3);

    let list = |talent_id: &str, status: ReservationStatus| ListReservationsRequest {
        talent_id: talent_id.into(),
        status: status as i32,
        ..Default::default()
    };
    let ids = |rs: Vec<talentshare_proto::reservation::Reservation>| -> Vec<String> {
        rs.into_iter().map(|r| r.reservation_id).collect()
    };
    let rejected = client
        .list_reservations(list("talent-a", ReservationStatus::Rejected))
        .await
        .expect("list rejected")
        .into_inner();
    assert_eq!(ids(rejected.reservations), vec![made[2].clone()]);
    let work_queue = client
        .list_reservations(list("talent-a", ReservationStatus::Requested))
        .await
        .expect("list a manager's work queue")
        .into_inner();
    let mut expected = made.clone();
    expected.remove(2);
    assert_eq!(ids(work_queue.reservations), expected);
    let other_talent = client
        .list_reservations(list("talent-b", ReservationStatus::Unspecified))
        .await
        .expect("list talent-b")
        .into_inner();
    assert_eq!(other_talent.reservations.len(), 1);
    // Every talent's bookings at once is nobody's view.
    let everyone = client
        .list_reservations(ListReservationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(everyone.code(), Code::PermissionDenied);
    app.stop().await;
}
