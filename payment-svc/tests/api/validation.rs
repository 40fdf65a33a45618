//! Every bad field of every RPC is INVALID_ARGUMENT with a `google.rpc.BadRequest`
//! naming the field, and changes nothing.

use talentshare_proto::payment::{
    GetPaymentRequest, ListPaymentsRequest, PayRequest, RefundRequest, get_payment_request::Lookup,
};
use testkit::violated_fields;
use tonic::Code;

use crate::helpers::{APPROVED_CARD, pay_request, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(bad_input_is_invalid_argument_naming_the_field_and_stores_nothing);

async fn bad_input_is_invalid_argument_naming_the_field_and_stores_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let with = |f: fn(&mut PayRequest)| {
        let mut r = pay_request(APPROVED_CARD, 1_000);
        f(&mut r);
        r
    };
    let pay_cases: Vec<(&str, PayRequest, &str)> = vec![
        ("empty order id", with(|r| r.order_id.clear()), "order_id"),
        (
            "malformed order id",
            with(|r| r.order_id = "order-1".into()),
            "order_id",
        ),
        (
            "oversized order id",
            with(|r| r.order_id = "9".repeat(10_000)),
            "order_id",
        ),
        (
            "empty customer",
            with(|r| r.customer_id.clear()),
            "customer_id",
        ),
        (
            "oversized customer",
            with(|r| r.customer_id = "c".repeat(65)),
            "customer_id",
        ),
        (
            "customer with spaces",
            with(|r| r.customer_id = "a b".into()),
            "customer_id",
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
            with(|r| r.currency = "usd".into()),
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
            "card with letters",
            with(|r| r.card_number = "4242x42424242424".into()),
            "card_number",
        ),
        ("no booking", with(|r| r.booking = None), "booking"),
        (
            "no talent",
            with(|r| r.booking.as_mut().unwrap().talent_id.clear()),
            "booking.talent_id",
        ),
        (
            "no session time",
            with(|r| r.booking.as_mut().unwrap().session_start_time = None),
            "booking.session_start_time",
        ),
        (
            "bad nanos",
            with(|r| {
                r.booking
                    .as_mut()
                    .unwrap()
                    .session_start_time
                    .as_mut()
                    .unwrap()
                    .nanos = -1
            }),
            "booking.session_start_time",
        ),
        (
            "short session",
            with(|r| r.booking.as_mut().unwrap().session_minutes = 5),
            "booking.session_minutes",
        ),
        (
            "long session",
            with(|r| r.booking.as_mut().unwrap().session_minutes = 10_000),
            "booking.session_minutes",
        ),
    ];
    for (case, req, field) in pay_cases {
        let err = app.client.pay(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        assert_eq!(violated_fields(&err), vec![field.to_owned()], "{case}");
    }

    let refund_cases = [
        (
            "empty payment id",
            RefundRequest {
                payment_id: String::new(),
                reason: String::new(),
            },
            "payment_id",
        ),
        (
            "malformed payment id",
            RefundRequest {
                payment_id: "p1".into(),
                reason: String::new(),
            },
            "payment_id",
        ),
        (
            "long reason",
            RefundRequest {
                payment_id: uuid::Uuid::now_v7().to_string(),
                reason: "r".repeat(201),
            },
            "reason",
        ),
    ];
    for (case, req, field) in refund_cases {
        let err = app.client.refund(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        assert_eq!(violated_fields(&err), vec![field.to_owned()], "{case}");
    }

    let get_cases = [
        ("no lookup", GetPaymentRequest { lookup: None }, "lookup"),
        (
            "bad payment id",
            GetPaymentRequest {
                lookup: Some(Lookup::PaymentId("x".into())),
            },
            "payment_id",
        ),
        (
            "bad order id",
            GetPaymentRequest {
                lookup: Some(Lookup::OrderId(String::new())),
            },
            "order_id",
        ),
    ];
    for (case, req, field) in get_cases {
        let err = app.client.get_payment(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        assert_eq!(violated_fields(&err), vec![field.to_owned()], "{case}");
    }

    let list = |f: fn(&mut ListPaymentsRequest)| {
        let mut r = ListPaymentsRequest::default();
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
        (
            "bad customer",
            list(|r| r.customer_id = "x y".into()),
            "customer_id",
        ),
        ("unknown status", list(|r| r.status = 99), "status"),
    ];
    // An oversized page is capped (AIP-158), not refused.
    app.client
        .list_payments(list(|r| r.page_size = 1000))
        .await
        .expect("page_size 1000 is served as 100");
    for (case, req, field) in list_cases {
        let err = app.client.list_payments(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        assert_eq!(violated_fields(&err), vec![field.to_owned()], "{case}");
    }

    // Several bad fields are reported together.
    let err = app.client.pay(PayRequest::default()).await.unwrap_err();
    let fields = violated_fields(&err);
    for f in [
        "order_id",
        "customer_id",
        "amount_minor",
        "currency",
        "card_number",
        "booking",
    ] {
        assert!(
            fields.contains(&f.to_owned()),
            "{f} missing from {fields:?}"
        );
    }

    assert!(
        app.payment_rows().await.is_empty(),
        "bad input stored nothing"
    );
    assert_eq!(app.outbox_len().await, 0, "bad input wrote no event");
    app.stop().await;
}

on_both_backends!(a_request_over_the_message_size_limit_is_refused_and_the_service_carries_on);

async fn a_request_over_the_message_size_limit_is_refused_and_the_service_carries_on(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let mut huge = pay_request(APPROVED_CARD, 1_000);
    huge.customer_id = "c".repeat(2 * 1024 * 1024);

    let err = app.client.pay(huge).await.unwrap_err();

    // tonic refuses an over-limit message while decoding, before any handler runs.
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    assert!(app.payment_rows().await.is_empty());
    app.client
        .pay(pay_request(APPROVED_CARD, 1_000))
        .await
        .expect("the next normal call succeeds");
    app.stop().await;
}
