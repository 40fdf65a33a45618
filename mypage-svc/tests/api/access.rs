//! Who may read what: a customer reads and watches only their own my page. Another
//! customer's id, another customer's order, an order nobody has, or a manager token
//! all get PERMISSION_DENIED, the same answer whether the order exists or not.

use talentshare_proto::mypage::{
    GetMyPageEntryRequest, GetMyPageRequest, WatchMyPageRequest,
    my_page_service_client::MyPageServiceClient,
};
use tonic::Code;

use crate::helpers::{CUSTOMER, Story, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    another_customer_can_neither_read_nor_watch_a_my_page,
    an_empty_customer_id_means_the_caller,
    a_watch_ends_unauthenticated_when_its_token_expires,
);

async fn another_customer_can_neither_read_nor_watch_a_my_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = Story::new(CUSTOMER).placed();
    app.publish(&alice.events).await;
    app.wait_entry(&alice.customer_id, &alice.order_id, "alice's entry", |_| {
        true
    })
    .await;
    let mut mallory = app.client_as("mallory");

    let page = mallory
        .get_my_page(GetMyPageRequest {
            customer_id: CUSTOMER.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(page.code(), Code::PermissionDenied, "GetMyPage: {page:?}");
    let watch = mallory
        .watch_my_page(WatchMyPageRequest {
            customer_id: CUSTOMER.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        watch.code(),
        Code::PermissionDenied,
        "WatchMyPage: {watch:?}"
    );

    let missing = uuid::Uuid::now_v7().to_string();
    let mut messages = Vec::new();
    for order_id in [&alice.order_id, &missing] {
        let entry = mallory
            .get_my_page_entry(GetMyPageEntryRequest {
                order_id: order_id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            entry.code(),
            Code::PermissionDenied,
            "GetMyPageEntry {order_id}"
        );
        messages.push(entry.message().replace(order_id.as_str(), "<id>"));
    }
    assert_eq!(messages[0], messages[1], "existence is not revealed");

    // Mallory's own page is empty: nothing of alice's leaks into it.
    let own = mallory
        .get_my_page(GetMyPageRequest::default())
        .await
        .expect("own page")
        .into_inner();
    assert!(own.entries.is_empty());

    // A manager token reads no customer's page.
    let mut manager = MyPageServiceClient::new(app.identity.as_manager(
        app.channel.clone(),
        "lee",
        &["talent-7"],
    ));
    let err = manager
        .get_my_page(GetMyPageRequest {
            customer_id: CUSTOMER.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    app.stop().await;
}

async fn an_empty_customer_id_means_the_caller(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = Story::new(CUSTOMER).placed();
    app.publish(&alice.events).await;
    app.wait_entry(&alice.customer_id, &alice.order_id, "alice's entry", |_| {
        true
    })
    .await;
    let page = app
        .client
        .clone()
        .get_my_page(GetMyPageRequest::default())
        .await
        .expect("GetMyPage")
        .into_inner();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].order_id, alice.order_id);

    let mut stream = app
        .client
        .clone()
        .watch_my_page(WatchMyPageRequest::default())
        .await
        .expect("WatchMyPage")
        .into_inner();
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
        .await
        .expect("a message in time")
        .expect("no error")
        .expect("the stream goes on")
        .entry
        .expect("an entry");
    assert_eq!(first.order_id, alice.order_id);
    assert_eq!(first.customer_id, CUSTOMER);
    app.stop().await;
}

async fn a_watch_ends_unauthenticated_when_its_token_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = Story::new(CUSTOMER).placed();
    app.publish(&alice.events).await;
    app.wait_entry(&alice.customer_id, &alice.order_id, "alice's entry", |_| {
        true
    })
    .await;
    // A token good for two more seconds: accepted when the stream opens, and the
    // stream may not outlive it.
    let token = app
        .identity
        .issuer()
        .mint(
            &platform::auth::dev::TokenSpec::customer(CUSTOMER),
            std::time::Duration::from_secs(2),
        )
        .expect("mint");
    let mut client =
        MyPageServiceClient::new(tonic::service::interceptor::InterceptedService::new(
            app.channel.clone(),
            testkit::Bearer::new(&token),
        ));
    let opened = std::time::Instant::now();
    let mut stream = client
        .watch_my_page(WatchMyPageRequest::default())
        .await
        .expect("WatchMyPage")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("the current entry")
        .expect("an entry");
    assert_eq!(first.entry.expect("entry").order_id, alice.order_id);
    let end = tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
        .await
        .expect("the stream ends in time")
        .expect_err("the stream ends with a status");
    assert_eq!(end.code(), Code::Unauthenticated, "{end:?}");
    assert!(
        opened.elapsed() >= std::time::Duration::from_secs(1),
        "not before expiry"
    );
    app.stop().await;
}
