//! Every bad field of every RPC is INVALID_ARGUMENT with a `google.rpc.BadRequest`
//! naming the field, and changes nothing (no order, no event, no payment).

use chrono::{TimeDelta, Utc};
use talentshare_proto::order::{
    CancelOrderRequest, GetOrderRequest, ListOrdersRequest, PlaceOrderRequest,
};
use testkit::violated_fields;
use tonic::Code;

use crate::helpers::{APPROVED_CARD, place_request, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(bad_input_is_invalid_argument_naming_the_field_and_stores_nothing);

fn at(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

async fn bad_input_is_invalid_argument_naming_the_field_and_stores_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let with = |f: fn(&mut PlaceOrderRequest)| {
        let mut r = place_request(APPROVED_CARD);
        f(&mut r);
        r
    };
    let past = (Utc::now() - TimeDelta::minutes(1)).timestamp();
    let now = Utc::now().timestamp();
    let place_cases: Vec<(&str, PlaceOrderRequest, &str)> = vec![
        (
            "empty request id",
            with(|r| r.request_id.clear()),
            "request_id",
        ),
        (
            "malformed request id",
            with(|r| r.request_id = "req-1".into()),
            "request_id",
        ),
        (
            "oversized request id",
            with(|r| r.request_id = "9".repeat(10_000)),
            "request_id",
        ),
        ("empty talent", with(|r| r.talent_id.clear()), "talent_id"),
        (
            "talent with a slash",
            with(|r| r.talent_id = "t/1".into()),
            "talent_id",
        ),
        (
            "no session time",
            with(|r| r.session_start_time = None),
            "session_start_time",
        ),
        (
            "bad nanos",
            with(|r| r.session_start_time.as_mut().unwrap().nanos = -1),
            "session_start_time",
        ),
        (
            "session after year 9999",
            with(|r| r.session_start_time = at(253_402_300_800, 0)),
            "session_start_time",
        ),
        (
            "session at the epoch",
            with(|r| r.session_start_time = at(0, 0)),
            "session_start_time",
        ),
        (
            "short session",
            with(|r| r.session_minutes = 14),
            "session_minutes",
        ),
        (
            "long session",
            with(|r| r.session_minutes = 481),
            "session_minutes",
        ),
        ("zero amount", with(|r| r.amount_minor = 0), "amount_minor"),
        (
            "negative amount",
            with(|r| r.amount_minor = -100),
            "amount_minor",
        ),
        (
            "overflowing amount",
            with(|r| r.amount_minor = i64::MAX),
            "amount_minor",
        ),
        (
            "unknown currency",
            with(|r| r.currency = "XYZ".into()),
            "currency",
        ),
        (
            "lower-case currency",
            with(|r| r.currency = "krw".into()),
            "currency",
        ),
        ("empty card", with(|r| r.card_number.clear()), "card_number"),
        (
            "short card",
            with(|r| r.card_number = "4242".into()),
            "card_number",
        ),
        (
            "luhn-invalid card",
            with(|r| r.card_number = "4242424242424241".into()),
            "card_number",
        ),
        (
            "card with dashes",
            with(|r| r.card_number = "4242-4242-4242-4242".into()),
            "card_number",
        ),
    ];
    for (case, req, field) in place_cases {
        let err = app.client.place_order(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        assert_eq!(violated_fields(&err), vec![field.to_owned()], "{case}");
    }
    for (case, seconds) in [("past session", past), ("session starting now", now)] {
        let mut req = place_request(APPROVED_CARD);
        req.session_start_time = at(seconds, 0);
        let err = app.client.place_order(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        assert_eq!(violated_fields(&err), vec!["session_start_time"], "{case}");
    }
    // A past session is reported along with the other bad fields.
    let mut req = place_request(APPROVED_CARD);
    req.session_start_time = at(past, 0);
    req.currency = "XYZ".into();
    let err = app.client.place_order(req).await.unwrap_err();
    assert_eq!(
        violated_fields(&err),
        vec!["currency".to_owned(), "session_start_time".to_owned()]
    );

    // Several bad fields are reported together (an empty customer_id means the
    // caller; any other customer's id is PERMISSION_DENIED, see access.rs).
    let err = app
        .client
        .place_order(PlaceOrderRequest::default())
        .await
        .unwrap_err();
    let fields = violated_fields(&err);
    for f in [
        "request_id",
        "talent_id",
        "session_start_time",
        "session_minutes",
        "amount_minor",
        "currency",
        "card_number",
    ] {
        assert!(
            fields.contains(&f.to_owned()),
            "{f} missing from {fields:?}"
        );
    }

    for (case, order_id) in [("empty order id", ""), ("malformed order id", "o-1")] {
        let err = app
            .client
            .get_order(GetOrderRequest {
                order_id: order_id.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        assert_eq!(violated_fields(&err), vec!["order_id"], "{case}");
    }

    let list = |f: fn(&mut ListOrdersRequest)| {
        let mut r = ListOrdersRequest {
            customer_id: "cust-1".into(),
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
        let err = app.client.list_orders(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        assert_eq!(violated_fields(&err), vec![field.to_owned()], "{case}");
    }
    // An oversized page is capped (AIP-158), not refused.
    app.client
        .list_orders(list(|r| r.page_size = 1000))
        .await
        .expect("page_size 1000 is served as 100");

    let cancel_cases = [
        (
            "empty order id",
            CancelOrderRequest {
                order_id: String::new(),
                reason: String::new(),
            },
            "order_id",
        ),
        (
            "malformed order id",
            CancelOrderRequest {
                order_id: "o-1".into(),
                reason: String::new(),
            },
            "order_id",
        ),
        (
            "long reason",
            CancelOrderRequest {
                order_id: uuid::Uuid::now_v7().to_string(),
                reason: "r".repeat(201),
            },
            "reason",
        ),
    ];
    for (case, req, field) in cancel_cases {
        let err = app.client.cancel_order(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        assert_eq!(violated_fields(&err), vec![field.to_owned()], "{case}");
    }

    assert!(
        app.order_rows().await.is_empty(),
        "bad input stored nothing"
    );
    assert_eq!(app.outbox_len().await, 0, "bad input wrote no event");
    assert!(
        app.payments_of("cust-1").await.is_empty(),
        "bad input charged nothing"
    );
    app.stop().await;
}
