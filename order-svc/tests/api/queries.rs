//! GetOrder (an unknown id reads as not the caller's), and ListOrders paging (newest first) and its status filter.

use talentshare_proto::order::{GetOrderRequest, ListOrdersRequest, OrderStatus};
use tonic::Code;

use crate::helpers::{APPROVED_CARD, DECLINED_CARD, place_request, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    get_order_returns_permission_denied_for_an_unknown_order,
    list_orders_pages_newest_first_and_filters_by_status,
);

async fn get_order_returns_permission_denied_for_an_unknown_order(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let err = app
        .client
        .get_order(GetOrderRequest {
            order_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    // Not NOT_FOUND: that would tell a stranger which order ids exist (AIP-211).
    assert_eq!(err.code(), Code::PermissionDenied);
    app.stop().await;
}

async fn list_orders_pages_newest_first_and_filters_by_status(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut made = Vec::new();
    for i in 0..5 {
        let card = if i == 2 { DECLINED_CARD } else { APPROVED_CARD };
        made.push(app.place(place_request(card)).await.order_id);
    }
    let mut other = place_request(APPROVED_CARD);
    other.customer_id = "cust-2".into();
    let others = app
        .client_as("cust-2")
        .place_order(other)
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = app
            .client
            .list_orders(ListOrdersRequest {
                page_size: 2,
                page_token: token.clone(),
                customer_id: "cust-1".into(),
                status: 0,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.orders.len() <= 2);
        seen.extend(page.orders.into_iter().map(|o| o.order_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    made.reverse();
    assert_eq!(seen, made, "every order once, newest first");
    assert_eq!(pages, 3);

    let declined = app
        .client
        .list_orders(ListOrdersRequest {
            customer_id: "cust-1".into(),
            status: OrderStatus::PaymentDeclined as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(declined.orders.len(), 1);
    assert_eq!(declined.orders[0].order_id, made[2]);
    assert!(declined.next_page_token.is_empty());

    let theirs = app.orders_of("cust-2").await;
    assert_eq!(theirs, vec![others], "only the customer's own orders");
    assert!(app.orders_of("nobody").await.is_empty());
    app.stop().await;
}
