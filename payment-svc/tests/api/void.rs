//! Void: closing an order's payment before any charge. First come first served with
//! Pay under the one `order_id` key: a Pay after the void charges nothing and answers
//! with it; a void after a Pay changes nothing and answers with the payment.

use talentshare_proto::payment::{
    PayRequest, PaymentStatus, RefundRequest, VoidRequest,
    payment_service_client::PaymentServiceClient,
};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::helpers::{APPROVED_CARD, pay_request, spawn_app};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(
    a_void_closes_the_order_so_a_later_pay_charges_nothing,
    a_void_after_a_pay_returns_the_payment_unchanged,
    a_void_with_bad_fields_names_each_and_stores_nothing,
);

fn void_of(pay: &PayRequest, reason: &str) -> VoidRequest {
    VoidRequest {
        order_id: pay.order_id.clone(),
        customer_id: pay.customer_id.clone(),
        amount_minor: pay.amount_minor,
        currency: pay.currency.clone(),
        reason: reason.into(),
    }
}

async fn void(
    client: &mut PaymentServiceClient<Channel>,
    req: VoidRequest,
) -> Result<talentshare_proto::payment::Payment, tonic::Status> {
    Ok(client
        .void(req)
        .await?
        .into_inner()
        .payment
        .expect("payment"))
}

async fn a_void_closes_the_order_so_a_later_pay_charges_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let pay = pay_request(APPROVED_CARD, 5_000);

    let voided = void(&mut app.client, void_of(&pay, "payment not completed"))
        .await
        .unwrap();
    assert_eq!(voided.status(), PaymentStatus::Voided);
    assert_eq!(voided.order_id, pay.order_id);
    assert_eq!(voided.booking, None, "a void books nothing");
    assert_eq!(
        (voided.card_last4.as_str(), voided.void_reason.as_str()),
        ("", "payment not completed")
    );
    let again = void(&mut app.client, void_of(&pay, "another reason"))
        .await
        .unwrap();
    assert_eq!(again, voided, "idempotent; the first reason stands");

    let late = app
        .client
        .pay(pay.clone())
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(late, voided, "the late Pay answers with the void");
    let mut other_card = pay.clone();
    other_card.card_number = "5555 5555 5555 4444".into();
    let late = app
        .client
        .pay(other_card)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(late, voided, "whatever the card: a void never saw one");
    let mut other_amount = pay.clone();
    other_amount.amount_minor += 1;
    let err = app.client.pay(other_amount).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = void(&mut app.client, {
        let mut v = void_of(&pay, "");
        v.customer_id = "someone-else".into();
        v
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    let err = app
        .client
        .refund(RefundRequest {
            payment_id: voided.payment_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "nothing to refund");

    let rows = app.payment_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].status.as_str(), rows[0].card_last4.as_str()),
        ("VOIDED", "")
    );
    assert_eq!(
        app.outbox_len().await,
        0,
        "a void moves no money and announces nothing"
    );
    assert!(
        app.broker.drain(&app.all_events_queue()).await.is_empty(),
        "no event was published"
    );
    app.stop().await;
}

async fn a_void_after_a_pay_returns_the_payment_unchanged(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let pay = pay_request(APPROVED_CARD, 5_000);
    let paid = app
        .client
        .pay(pay.clone())
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(paid.status(), PaymentStatus::Approved);

    let answer = void(&mut app.client, void_of(&pay, "too late"))
        .await
        .unwrap();
    assert_eq!(answer, paid, "the Pay came first: nothing voided");
    assert_eq!(app.payment_rows().await[0].status, "APPROVED");
    app.stop().await;
}

async fn a_void_with_bad_fields_names_each_and_stores_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let err = void(
        &mut app.client,
        VoidRequest {
            order_id: "not-a-uuid".into(),
            customer_id: String::new(),
            amount_minor: 0,
            currency: "XYZ".into(),
            reason: "x".repeat(201),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> = err
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        [
            "order_id",
            "customer_id",
            "amount_minor",
            "currency",
            "reason"
        ]
    );
    assert!(app.payment_rows().await.is_empty());
    app.stop().await;
}
