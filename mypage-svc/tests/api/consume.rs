//! Events on the bus become rows: one event alone creates its order's entry, a
//! whole story delivered shuffled and duplicated converges to the in-order row,
//! and an event that can never apply is dead-lettered without stopping the rest.

use std::time::Duration;

use mypage_svc::domain::{self, Entry};
use prost::Message;
use talentshare_proto::events::{EventEnvelope, event_envelope::Payload};
use talentshare_proto::order::OrderStatus;
use talentshare_proto::payment::PaymentStatus;
use talentshare_proto::reservation::ReservationStatus;

use crate::helpers::{STORY_START, Story, spawn_app};
use testkit::on_both_backends;
use testkit::{Backend, TestDatabase};

on_both_backends!(
    an_event_alone_creates_its_entry_and_later_events_fill_it,
    a_story_delivered_shuffled_and_duplicated_converges_to_the_in_order_row,
    a_poison_or_invalid_event_is_dead_lettered_and_later_events_still_apply,
    a_declined_order_shows_its_reason_and_no_reservation,
    a_batch_folds_to_the_rows_its_events_give_one_by_one,
);

async fn an_event_alone_creates_its_entry_and_later_events_fill_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let story = Story::new("cust-1").placed().approved();
    let (placed, approved) = (&story.events[0], &story.events[1]);

    // payment.approved overtook order.placed: the row exists, without an order status.
    app.publish(std::slice::from_ref(approved)).await;
    let entry = app
        .wait_entry(
            &story.customer_id,
            &story.order_id,
            "the row created by payment.approved",
            |_| true,
        )
        .await;
    assert_eq!(entry.customer_id, "cust-1");
    assert_eq!(entry.order_status(), OrderStatus::Unspecified);
    assert_eq!(entry.payment_status(), PaymentStatus::Approved);
    assert_eq!(entry.payment_id, story.payment_id);
    assert_eq!(
        (entry.talent_id.as_str(), entry.session_minutes),
        ("talent-7", 60),
        "the booking rides along with payment.approved"
    );
    assert_eq!(
        (entry.amount_minor, entry.currency.as_str()),
        (15_000, "KRW")
    );
    assert_eq!(entry.update_time.map(|t| t.seconds), Some(STORY_START + 1));

    app.publish(std::slice::from_ref(placed)).await;
    let entry = app
        .wait_entry(
            &story.customer_id,
            &story.order_id,
            "order.placed applied",
            |e| e.order_status() == OrderStatus::PendingPayment,
        )
        .await;
    assert_eq!(entry.payment_status(), PaymentStatus::Approved);
    assert_eq!(
        entry.update_time.map(|t| t.seconds),
        Some(STORY_START + 1),
        "update_time is the latest occurred_at, not the last delivered"
    );
    app.stop().await;
}

/// The row the story gives when its events are folded in the order they happened.
fn in_order_row(story: &Story) -> Entry {
    story
        .events
        .iter()
        .map(|e| mypage_svc::consumer::decode::parse(e).expect("story events are valid"))
        .fold(None, |row, e| Some(domain::apply(row, &e)))
        .expect("a story has events")
}

async fn a_story_delivered_shuffled_and_duplicated_converges_to_the_in_order_row(backend: Backend) {
    let app = spawn_app(backend).await;
    // Confirmed, then cancelled by the customer: all three aggregates move.
    let story = Story::new("cust-1")
        .placed()
        .approved()
        .paid()
        .requested()
        .confirmed()
        .cancelled(3)
        .reservation_cancelled(3);
    let e = &story.events;
    // Newest first with the middle scrambled, plus repeats: the same envelope again
    // (the inbox drops it) and the same change under a new event id (the fold
    // ignores it).
    let mut relabelled = e[3].clone();
    relabelled.event_id = uuid::Uuid::now_v7().to_string();
    let delivered: Vec<EventEnvelope> = vec![
        e[7].clone(),
        e[5].clone(),
        e[6].clone(),
        e[0].clone(),
        e[7].clone(),
        e[2].clone(),
        relabelled,
        e[1].clone(),
        e[4].clone(),
        e[0].clone(),
        e[3].clone(),
        e[5].clone(),
    ];
    app.publish(&delivered).await;
    app.settle().await;

    let got = app
        .entry(&story.customer_id, &story.order_id)
        .await
        .expect("the row exists");
    let expected = mypage_svc::grpc::to_proto(&in_order_row(&story));
    assert_eq!(got, expected);
    assert_eq!(got.order_status(), OrderStatus::Cancelled);
    assert_eq!(got.payment_status(), PaymentStatus::Refunded);
    assert_eq!(got.reservation_status(), ReservationStatus::Cancelled);
    assert_eq!(
        (got.payment_id.as_str(), got.reservation_id.as_str()),
        (story.payment_id.as_str(), story.reservation_id.as_str())
    );
    assert_eq!(
        got.update_time.map(|t| t.seconds),
        Some(STORY_START + 7),
        "update_time is the last event's occurred_at"
    );
    app.stop().await;
}

async fn a_poison_or_invalid_event_is_dead_lettered_and_later_events_still_apply(backend: Backend) {
    let app = spawn_app(backend).await;
    let dlq = app
        .broker
        .topology
        .dead_letter_queue(mypage_svc::consumer::QUEUE);

    // Not an envelope at all.
    app.broker
        .publish_raw("order.placed", b"\x08\xff\xff garbage", Default::default())
        .await;
    // A decodable envelope whose payload can never apply (currency not ISO 4217).
    let mut invalid = Story::new("cust-1").placed().events.remove(0);
    if let Some(Payload::OrderPlaced(p)) = &mut invalid.payload {
        p.currency = "dollars".into();
    }
    // A valid event for an order that already belongs to another customer.
    let owned = Story::new("cust-1").placed();
    let mut foreign = owned.clone().approved().events.remove(1);
    foreign.customer_id = "intruder".into();

    app.publish(&owned.events).await;
    app.publish(&[invalid.clone()]).await;
    app.wait_entry(
        &owned.customer_id,
        &owned.order_id,
        "the owned order",
        |_| true,
    )
    .await;
    app.publish(&[foreign.clone()]).await;

    let later = Story::new("cust-1").placed().approved();
    app.publish(&later.events).await;
    app.wait_entry(
        &later.customer_id,
        &later.order_id,
        "an event after the bad ones",
        |e| {
            e.payment_status() == PaymentStatus::Approved
                && e.order_status() == OrderStatus::PendingPayment
        },
    )
    .await;

    let dead = app.broker.collect(&dlq, 3, Duration::from_secs(10)).await;
    assert_eq!(
        dead.len(),
        3,
        "garbage, invalid and foreign are dead-lettered"
    );
    let ids: Vec<String> = dead
        .iter()
        .filter_map(|d| EventEnvelope::decode(d.body.as_slice()).ok())
        .map(|e| e.event_id)
        .collect();
    assert!(ids.contains(&invalid.event_id), "{ids:?}");
    assert!(ids.contains(&foreign.event_id), "{ids:?}");
    assert_eq!(
        app.entry(&invalid.customer_id, &invalid.order_id).await,
        None,
        "the invalid event created no row"
    );
    let owned_entry = app
        .entry(&owned.customer_id, &owned.order_id)
        .await
        .expect("owned row");
    assert_eq!(owned_entry.customer_id, "cust-1");
    assert_eq!(
        owned_entry.payment_status(),
        PaymentStatus::Unspecified,
        "the foreign event changed nothing"
    );
    app.stop().await;
}

async fn a_declined_order_shows_its_reason_and_no_reservation(backend: Backend) {
    let app = spawn_app(backend).await;
    let story = Story::new("cust-1").placed().declined();
    let reversed: Vec<EventEnvelope> = story.events.iter().rev().cloned().collect();
    app.publish(&reversed).await;
    app.settle().await;

    let got = app
        .entry(&story.customer_id, &story.order_id)
        .await
        .expect("the row exists");
    assert_eq!(got, mypage_svc::grpc::to_proto(&in_order_row(&story)));
    assert_eq!(got.order_status(), OrderStatus::PaymentDeclined);
    assert_eq!(got.payment_status(), PaymentStatus::Declined);
    assert_eq!(got.decline_reason, "DECLINE_REASON_INSUFFICIENT_FUNDS");
    assert_eq!(got.reservation_status(), ReservationStatus::Unspecified);
    assert!(got.reservation_id.is_empty());
    app.stop().await;
}

/// The consumer folds events that arrive together with `store::apply_events` (one
/// locked read, one write per order); whatever the mix of orders, order of events
/// and repeats, that leaves the rows `apply_event` leaves event by event, and
/// reports each changed entry once.
async fn a_batch_folds_to_the_rows_its_events_give_one_by_one(backend: Backend) {
    use sea_orm::TransactionTrait;
    use sea_orm_migration::MigratorTrait;

    let a = Story::new("cust-1")
        .placed()
        .approved()
        .paid()
        .requested()
        .confirmed()
        .cancelled(3)
        .reservation_cancelled(3);
    let b = Story::new("cust-2").placed().approved();
    let c = Story::new("cust-3").placed();
    let (ea, eb, ec) = (&a.events, &b.events, &c.events);
    let delivered: Vec<domain::DomainEvent> = [
        &ea[5], &eb[1], &ea[0], &ec[0], &ea[2], &ea[7], &eb[0], &ea[1], &ea[0], &ea[3], &ea[6],
        &ea[4],
    ]
    .into_iter()
    .map(|e| mypage_svc::consumer::decode::parse(e).expect("story events are valid"))
    .collect();

    let one_by_one = TestDatabase::create(backend).await;
    let batched = TestDatabase::create(backend).await;
    let (one, all) = (one_by_one.connect().await, batched.connect().await);
    for conn in [&one, &all] {
        mypage_svc::store::Migrator::up(conn, None).await.unwrap();
    }
    // A's and B's rows exist before the batch, C's does not: the batch both updates
    // and creates rows.
    for conn in [&one, &all] {
        let txn = conn.begin().await.unwrap();
        for event in &delivered[..2] {
            mypage_svc::store::apply_event(&txn, event, 1)
                .await
                .unwrap();
        }
        txn.commit().await.unwrap();
    }
    let txn = one.begin().await.unwrap();
    for event in &delivered[2..] {
        mypage_svc::store::apply_event(&txn, event, 1)
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    let txn = all.begin().await.unwrap();
    let numbers =
        mypage_svc::store::next_change_numbers(&txn, delivered[2..].iter().map(|e| &e.customer_id))
            .await
            .unwrap();
    let changed = mypage_svc::store::apply_events(&txn, &delivered[2..], &numbers)
        .await
        .unwrap();
    txn.commit().await.unwrap();

    let mut changed_ids: Vec<_> = changed.iter().map(|e| e.order_id()).collect();
    changed_ids.sort();
    let id = |s: &Story| uuid::Uuid::parse_str(&s.order_id).unwrap();
    let mut expected_ids = vec![id(&a), id(&b), id(&c)];
    expected_ids.sort();
    assert_eq!(
        changed_ids, expected_ids,
        "each changed entry reported once"
    );
    for order_id in expected_ids {
        let one = mypage_svc::store::MyPageStore::new(one.clone())
            .get(order_id)
            .await
            .unwrap();
        let all = mypage_svc::store::MyPageStore::new(all.clone())
            .get(order_id)
            .await
            .unwrap();
        assert!(one.is_some(), "{order_id} has a row");
        assert_eq!(one, all, "{order_id}: the batch leaves the one-by-one row");
    }
    let a_row = mypage_svc::store::MyPageStore::new(all.clone())
        .get(id(&a))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        mypage_svc::grpc::to_proto(&a_row),
        mypage_svc::grpc::to_proto(&in_order_row(&a)),
        "the batch leaves A's in-order row"
    );
}
