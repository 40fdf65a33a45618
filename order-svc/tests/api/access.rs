//! Who may do what: a customer sees and changes only their own orders; anyone else
//! (another customer, a manager, a missing or bad token) is refused, and a refusal
//! reads the same whether the order exists or not.

use talentshare_proto::order::{
    CancelOrderRequest, GetOrderRequest, ListOrdersRequest, OrderStatus,
    order_service_client::OrderServiceClient,
};
use tonic::Code;

use crate::helpers::{APPROVED_CARD, CUSTOMER, place_request, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    another_customer_can_neither_see_nor_cancel_an_order,
    a_customer_acts_only_for_themselves
);

async fn another_customer_can_neither_see_nor_cancel_an_order(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let order = app.place(place_request(APPROVED_CARD)).await;
    let mut mallory = app.client_as("mallory");
    let missing = uuid::Uuid::now_v7().to_string();

    // Someone else's order and an order that does not exist get the same answer.
    let mut messages = Vec::new();
    for order_id in [&order.order_id, &missing] {
        let get = mallory
            .get_order(GetOrderRequest {
                order_id: order_id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(get.code(), Code::PermissionDenied, "GetOrder {order_id}");
        let cancel = mallory
            .cancel_order(CancelOrderRequest {
                order_id: order_id.clone(),
                reason: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            cancel.code(),
            Code::PermissionDenied,
            "CancelOrder {order_id}"
        );
        messages.push(get.message().replace(order_id.as_str(), "<id>"));
    }
    assert_eq!(messages[0], messages[1], "existence is not revealed");

    // A manager token is no customer either.
    let mut manager = OrderServiceClient::new(app.identity.as_manager(
        app.channel.clone(),
        "lee",
        &["talent-7"],
    ));
    let err = manager
        .get_order(GetOrderRequest {
            order_id: order.order_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Nothing changed: still PAID, not refunded.
    let mine = app.get(&order.order_id).await;
    assert_eq!(mine.status, OrderStatus::Paid as i32);
    assert!(!mine.refunded);
    app.stop().await;
}

async fn a_customer_acts_only_for_themselves(backend: Backend) {
    let mut app = spawn_app(backend).await;

    // An empty customer_id means the caller.
    let mut req = place_request(APPROVED_CARD);
    req.customer_id.clear();
    let order = app.place(req).await;
    assert_eq!(order.customer_id, CUSTOMER);

    // Placing for, or listing, someone else is refused and stores nothing.
    let mut for_other = place_request(APPROVED_CARD);
    for_other.customer_id = "bob".into();
    let err = app.client.place_order(for_other).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(app.payments_of("bob").await.is_empty(), "nothing charged");
    let err = app
        .client
        .list_orders(ListOrdersRequest {
            customer_id: "bob".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let mine = app
        .client
        .list_orders(ListOrdersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(mine.len(), 1);
    assert_eq!(
        app.order_rows().await.len(),
        1,
        "only the caller's order stored"
    );
    app.stop().await;
}
