//! Several replicas on one database and one queue (PostgreSQL only: SQLite is one
//! process): a watcher hears every change, whichever replica consumed its event,
//! and a watcher whose replica lost the change feed gets what changed meanwhile.

use std::collections::HashSet;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use talentshare_proto::mypage::{
    MyPageEntry, WatchMyPageRequest, WatchMyPageResponse,
    my_page_service_client::MyPageServiceClient,
};
use testkit::AuthChannel;
use testkit::Backend;
use tokio::time::Instant;
use tonic::Streaming;

use crate::helpers::{Story, spawn_app, wait_until};

/// How long a test waits for all the entries it expects on a stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

async fn open(
    mut client: MyPageServiceClient<AuthChannel>,
    customer: &str,
) -> Streaming<WatchMyPageResponse> {
    client
        .watch_my_page(WatchMyPageRequest {
            customer_id: customer.to_owned(),
            ..Default::default()
        })
        .await
        .expect("WatchMyPage")
        .into_inner()
}

/// The next entry on the stream, before `deadline`; fails the test on an error,
/// the end of the stream, or the deadline.
async fn next_entry(
    stream: &mut Streaming<WatchMyPageResponse>,
    deadline: Instant,
    waiting_for: &HashSet<String>,
) -> MyPageEntry {
    tokio::time::timeout_at(deadline, stream.message())
        .await
        .unwrap_or_else(|_| {
            panic!("no message before the deadline; still waiting for {waiting_for:?}")
        })
        .expect("no error on the stream")
        .expect("the stream goes on")
        .entry
        .expect("every message holds an entry")
}

/// Reads the stream until every order in `expected` has been sent.
async fn receive_all(stream: &mut Streaming<WatchMyPageResponse>, expected: &[String]) {
    let mut missing: HashSet<String> = expected.iter().cloned().collect();
    let deadline = Instant::now() + STREAM_TIMEOUT;
    while !missing.is_empty() {
        let entry = next_entry(stream, deadline, &missing).await;
        assert_eq!(
            entry.customer_id, "cust-r",
            "only the watched customer's entries"
        );
        missing.remove(&entry.order_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_hears_every_change_whichever_replica_consumed_it() {
    let app = spawn_app(Backend::Postgres).await;
    let replica = app.spawn_replica().await;
    // Both consume the queue before anything is published, so RabbitMQ shares the
    // events out between them.
    app.wait_consumers(2).await;
    let mut on_app = open(app.client_as("cust-r"), "cust-r").await;
    let mut on_replica = open(app.client_on(&replica.channel, "cust-r"), "cust-r").await;

    let stories: Vec<Story> = (0..20).map(|_| Story::new("cust-r").placed()).collect();
    for s in &stories {
        app.publish(&s.events).await;
    }

    // Each replica consumed only some of the events, yet each watcher hears of all.
    let orders: Vec<String> = stories.iter().map(|s| s.order_id.clone()).collect();
    receive_all(&mut on_app, &orders).await;
    receive_all(&mut on_replica, &orders).await;
    replica.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_gets_what_changed_meanwhile_when_the_change_listener_reconnects() {
    let app = spawn_app(Backend::Postgres).await;
    let first = Story::new("cust-r").placed();
    app.publish(&first.events).await;
    app.settle().await;
    let mut stream = app
        .client_as("cust-r")
        .watch_my_page(WatchMyPageRequest {
            send_snapshot_end: true,
            ..Default::default()
        })
        .await
        .expect("WatchMyPage")
        .into_inner();
    let mut message = async || {
        tokio::time::timeout(STREAM_TIMEOUT, stream.message())
            .await
            .expect("a message before the deadline")
            .expect("no error on the stream")
            .expect("the stream goes on")
    };
    let initial = message().await;
    assert_eq!(initial.entry.expect("an entry").order_id, first.order_id);
    assert!(message().await.snapshot_end, "then the marker");

    // Cut the listener's connection (the stream is live, so it is connected):
    // changes committed until it reconnects are never announced.
    let admin = app.db.connect().await;
    let killed = wait_until(
        "the change listener's connection",
        Duration::from_secs(10),
        || async {
            let rows = admin
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND query LIKE 'LISTEN %'",
                ))
                .await
                .expect("terminate the listener");
            (!rows.is_empty()).then_some(rows.len())
        },
    )
    .await;
    assert_eq!(killed, 1, "one listener per replica");
    let second = Story::new("cust-r").placed();
    app.publish(&second.events).await;

    // The reconnected listener starts a new epoch: the stream sends what changed
    // since its position (the second order, whether or not its notification was
    // heard) and marks the end of that; the first order, unchanged, is not sent again.
    let (mut resynced, mut got_second) = (false, false);
    while !(resynced && got_second) {
        let m = message().await;
        resynced |= m.snapshot_end;
        if let Some(entry) = m.entry {
            assert_ne!(entry.order_id, first.order_id, "unchanged, not sent again");
            got_second |= entry.order_id == second.order_id;
        }
    }

    // And changes flow again.
    let third = Story::new("cust-r").placed();
    app.publish(&third.events).await;
    receive_all(&mut stream, std::slice::from_ref(&third.order_id)).await;
    let _ = admin.close().await;
    app.stop().await;
}
