//! Every bad field of every RPC is INVALID_ARGUMENT with a `google.rpc.BadRequest`
//! naming the field, and changes nothing.

use talentshare_proto::mypage::{GetMyPageEntryRequest, GetMyPageRequest, WatchMyPageRequest};
use testkit::violated_fields;
use tonic::Code;

use crate::helpers::{Story, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(bad_input_is_invalid_argument_naming_the_field_and_changes_nothing);

async fn bad_input_is_invalid_argument_naming_the_field_and_changes_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    // Two entries of cust-b, so a real page token of cust-b exists.
    for _ in 0..2 {
        app.publish(&Story::new("cust-b").placed().events).await;
    }
    app.settle().await;
    let foreign_token = app
        .client_as("cust-b")
        .get_my_page(GetMyPageRequest {
            page_size: 1,
            customer_id: "cust-b".into(),
            ..Default::default()
        })
        .await
        .expect("GetMyPage")
        .into_inner()
        .next_page_token;
    assert!(!foreign_token.is_empty());
    let rows_before = app.row_count().await;

    let page = |f: &dyn Fn(&mut GetMyPageRequest)| {
        let mut r = GetMyPageRequest {
            customer_id: "cust-a".into(),
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let page_cases: Vec<(&str, GetMyPageRequest, &str)> = vec![
        (
            "negative page size",
            page(&|r| r.page_size = -1),
            "page_size",
        ),
        (
            "forged page token",
            page(&|r| r.page_token = "not-a-token".into()),
            "page_token",
        ),
        (
            "another customer's page token",
            page(&|r| r.page_token = foreign_token.clone()),
            "page_token",
        ),
    ];
    // customer_id is not validated as input: empty means the caller and any other
    // value is PERMISSION_DENIED (access.rs).
    let mut cust_a = app.client_as("cust-a");
    for (case, req, field) in page_cases {
        let err = cust_a.get_my_page(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        assert_eq!(violated_fields(&err), vec![field.to_owned()], "{case}");
    }
    // An oversized page is capped (AIP-158), not refused.
    cust_a
        .get_my_page(page(&|r| r.page_size = 1000))
        .await
        .expect("page_size 1000 is served as 100");

    let entry_cases = [
        ("empty order id", String::new()),
        ("malformed order id", "order-1".to_owned()),
        ("oversized order id", "9".repeat(10_000)),
    ];
    for (case, order_id) in entry_cases {
        let err = app
            .client
            .get_my_page_entry(GetMyPageEntryRequest { order_id })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        assert_eq!(violated_fields(&err), vec!["order_id".to_owned()], "{case}");
    }

    // WatchMyPage's heartbeat: unset or zero for none, else 1 to 300 seconds.
    let heartbeat = |seconds: i64, nanos: i32| WatchMyPageRequest {
        heartbeat_interval: Some(prost_types::Duration { seconds, nanos }),
        ..Default::default()
    };
    let watch_cases = [
        ("negative heartbeat", heartbeat(-1, 0)),
        ("sub-second heartbeat", heartbeat(0, 500_000_000)),
        ("heartbeat over five minutes", heartbeat(301, 0)),
        ("malformed duration", heartbeat(1, -1)),
    ];
    for (case, req) in watch_cases {
        let err = cust_a.watch_my_page(req).await.unwrap_err();
        assert_eq!(
            violated_fields(&err),
            vec!["heartbeat_interval".to_owned()],
            "{case}"
        );
    }

    // Several bad fields are reported together.
    let err = app
        .client
        .get_my_page(GetMyPageRequest {
            page_size: -5,
            page_token: "x".into(),
            customer_id: String::new(),
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(fields, ["page_size", "page_token"]);

    assert_eq!(
        app.row_count().await,
        rows_before,
        "bad input changed nothing"
    );
    app.stop().await;
}
