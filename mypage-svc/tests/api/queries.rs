//! GetMyPage paging and customer isolation; GetMyPageEntry of an order no event named.

use talentshare_proto::mypage::{GetMyPageEntryRequest, GetMyPageRequest};
use tonic::Code;

use crate::helpers::{Story, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    get_my_page_pages_newest_first_and_shows_only_the_customers_entries,
    get_my_page_entry_returns_permission_denied_for_an_order_no_event_named,
);

async fn get_my_page_pages_newest_first_and_shows_only_the_customers_entries(backend: Backend) {
    let app = spawn_app(backend).await;
    // Order ids are UUID v7: created in this order, so the newest is the last.
    let mine: Vec<Story> = (0..5).map(|_| Story::new("cust-p").placed()).collect();
    let theirs: Vec<Story> = (0..2).map(|_| Story::new("cust-q").placed()).collect();
    for s in mine.iter().chain(&theirs) {
        app.publish(&s.events).await;
    }
    app.settle().await;

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = app
            .client_as("cust-p")
            .get_my_page(GetMyPageRequest {
                page_size: 2,
                page_token: token.clone(),
                customer_id: "cust-p".into(),
            })
            .await
            .expect("GetMyPage")
            .into_inner();
        pages += 1;
        assert!(page.entries.len() <= 2);
        seen.extend(page.entries.into_iter().map(|e| e.order_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<String> = mine.iter().rev().map(|s| s.order_id.clone()).collect();
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3, "5 entries in pages of 2");

    let theirs_page = app
        .client_as("cust-q")
        .get_my_page(GetMyPageRequest {
            customer_id: "cust-q".into(),
            ..Default::default()
        })
        .await
        .expect("GetMyPage")
        .into_inner();
    let got: Vec<&str> = theirs_page
        .entries
        .iter()
        .map(|e| e.order_id.as_str())
        .collect();
    assert_eq!(
        got,
        [theirs[1].order_id.as_str(), theirs[0].order_id.as_str()]
    );
    assert!(theirs_page.next_page_token.is_empty());
    assert!(
        theirs_page
            .entries
            .iter()
            .all(|e| e.customer_id == "cust-q"),
        "only the customer's own entries"
    );

    let nobody = app
        .client_as("cust-nobody")
        .get_my_page(GetMyPageRequest {
            customer_id: "cust-nobody".into(),
            ..Default::default()
        })
        .await
        .expect("a customer with no entries is not an error")
        .into_inner();
    assert!(nobody.entries.is_empty() && nobody.next_page_token.is_empty());
    app.stop().await;
}

async fn get_my_page_entry_returns_permission_denied_for_an_order_no_event_named(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let err = app
        .client
        .get_my_page_entry(GetMyPageEntryRequest {
            order_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    // The same answer as for another customer's order (AIP-211).
    assert_eq!(err.code(), Code::PermissionDenied);
    app.stop().await;
}
