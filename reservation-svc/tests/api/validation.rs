//! Every bad field of every RPC is INVALID_ARGUMENT with a `google.rpc.BadRequest`
//! naming the field, and changes nothing (neither here nor at payment-svc).

use talentshare_proto::payment::{GetPaymentRequest, PaymentStatus, get_payment_request::Lookup};
use talentshare_proto::reservation::{
    ConfirmReservationRequest, GetReservationRequest, ListReservationsRequest,
    RejectReservationRequest,
};
use testkit::violated_fields;
use tonic::Code;

use crate::helpers::spawn_app;
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(bad_input_is_invalid_argument_naming_the_field_and_changes_nothing);

fn assert_invalid(case: &str, result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let err = result.expect_err(case);
    assert_eq!(err.code(), Code::InvalidArgument, "{case}: {err:?}");
    assert_eq!(violated_fields(&err), vec![field.to_owned()], "{case}");
}

async fn bad_input_is_invalid_argument_naming_the_field_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (payment, existing) = app.book("talent-7").await;
    app.reservation_events().await;
    let mut client = app.client.clone();
    let id = existing.reservation_id.clone();

    // Fields shared by Confirm and Reject: (case, reservation_id, manager_id, field).
    let long_id = "9".repeat(10_000);
    // manager_id comes from the token: empty means the caller, anything else that is
    // not the caller is PERMISSION_DENIED (access.rs), so no manager_id is "invalid".
    let shared: [(&str, &str, &str, &str); 3] = [
        ("empty reservation id", "", "mgr-1", "reservation_id"),
        (
            "malformed reservation id",
            "res-1",
            "mgr-1",
            "reservation_id",
        ),
        (
            "oversized reservation id",
            &long_id,
            "mgr-1",
            "reservation_id",
        ),
    ];
    for (case, reservation_id, manager_id, field) in shared {
        let confirmed = client
            .confirm_reservation(ConfirmReservationRequest {
                reservation_id: reservation_id.into(),
                manager_id: manager_id.into(),
            })
            .await;
        assert_invalid(&format!("confirm: {case}"), confirmed, field);
        let rejected = client
            .reject_reservation(RejectReservationRequest {
                reservation_id: reservation_id.into(),
                manager_id: manager_id.into(),
                reason: "fully booked".into(),
            })
            .await;
        assert_invalid(&format!("reject: {case}"), rejected, field);
    }

    for (case, reason) in [
        ("empty reason", String::new()),
        ("blank reason", " \t ".to_owned()),
        ("reason over 200 characters", "é".repeat(201)),
    ] {
        let rejected = client
            .reject_reservation(RejectReservationRequest {
                reservation_id: id.clone(),
                manager_id: "mgr-1".into(),
                reason,
            })
            .await;
        assert_invalid(case, rejected, "reason");
    }

    for (case, reservation_id) in [("empty id", ""), ("malformed id", "r-1")] {
        let got = client
            .get_reservation(GetReservationRequest {
                reservation_id: reservation_id.into(),
            })
            .await;
        assert_invalid(case, got, "reservation_id");
    }

    let list = |f: fn(&mut ListReservationsRequest)| {
        let mut r = ListReservationsRequest {
            talent_id: "talent-7".into(),
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let list_cases = [
        (
            "negative page size",
            list(|r| r.page_size = -1),
            "page_size",
        ),
        (
            "forged page token",
            list(|r| r.page_token = "not-a-token".into()),
            "page_token",
        ),
        ("unknown status", list(|r| r.status = 99), "status"),
    ];
    for (case, req, field) in list_cases {
        assert_invalid(case, client.list_reservations(req).await, field);
    }
    // An oversized page is capped (AIP-158), not refused.
    client
        .list_reservations(list(|r| r.page_size = 1000))
        .await
        .expect("page_size 1000 is served as 100");

    // Several bad fields are reported together.
    let err = client
        .reject_reservation(RejectReservationRequest::default())
        .await
        .unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(fields, ["reason", "reservation_id"]);

    assert_eq!(app.get(&id).await, existing, "bad input changed nothing");
    assert_eq!(app.rows().await.len(), 1);
    assert!(app.reservation_events().await.is_empty(), "no event");
    let p = app
        .payments()
        .get_payment(GetPaymentRequest {
            lookup: Some(Lookup::PaymentId(payment.payment_id)),
        })
        .await
        .expect("get payment")
        .into_inner()
        .payment
        .expect("a payment");
    assert_eq!(p.status(), PaymentStatus::Approved, "nothing refunded");
    app.stop().await;
}
