//! GetPayment by either id, and ListPayments paging and filters.

use talentshare_proto::payment::{
    GetPaymentRequest, ListPaymentsRequest, PaymentStatus, get_payment_request::Lookup,
};
use tonic::Code;

use crate::helpers::{APPROVED_CARD, pay_request, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    get_payment_finds_by_payment_id_and_by_order_id,
    list_payments_pages_newest_first_and_filters,
);

async fn get_payment_finds_by_payment_id_and_by_order_id(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let paid = app
        .client
        .pay(pay_request(APPROVED_CARD, 300))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();

    for lookup in [
        Lookup::PaymentId(paid.payment_id.clone()),
        Lookup::OrderId(paid.order_id.clone()),
    ] {
        let got = app
            .client
            .get_payment(GetPaymentRequest {
                lookup: Some(lookup.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(got, paid, "{lookup:?}");
    }
    let err = app
        .client
        .get_payment(GetPaymentRequest {
            lookup: Some(Lookup::OrderId(uuid::Uuid::now_v7().to_string())),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

async fn list_payments_pages_newest_first_and_filters(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut made = Vec::new();
    for i in 0..5 {
        let card = if i == 2 {
            "4000000000000002"
        } else {
            APPROVED_CARD
        };
        let p = app
            .client
            .pay(pay_request(card, 100 + i))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        made.push(p.payment_id);
    }
    let mut other = pay_request(APPROVED_CARD, 1);
    other.customer_id = "cust-2".into();
    app.client.pay(other).await.unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = app
            .client
            .list_payments(ListPaymentsRequest {
                page_size: 2,
                page_token: token.clone(),
                customer_id: "cust-1".into(),
                status: 0,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.payments.len() <= 2);
        seen.extend(page.payments.into_iter().map(|p| p.payment_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    made.reverse();
    assert_eq!(seen, made, "every payment once, newest first");
    assert_eq!(pages, 3);

    let declined = app
        .client
        .list_payments(ListPaymentsRequest {
            status: PaymentStatus::Declined as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(declined.payments.len(), 1);
    assert_eq!(declined.payments[0].payment_id, made[2]);
    let everyone = app
        .client
        .list_payments(ListPaymentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(everyone.payments.len(), 6);
    app.stop().await;
}
