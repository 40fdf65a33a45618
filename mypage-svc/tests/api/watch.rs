//! WatchMyPage: the current entries, then live changes of that customer only; the
//! stream ends with UNAVAILABLE on shutdown and ABORTED when it falls behind; the
//! watcher limit, and a closed stream giving its slot back.

use std::sync::Arc;
use std::time::Duration;

use mypage_svc::changes::{Changed, Changes};
use mypage_svc::store::{Migrator, MyPageStore};
use platform::values::ExternalId;
use sea_orm_migration::MigratorTrait;
use talentshare_proto::mypage::{MyPageEntry, WatchMyPageRequest, WatchMyPageResponse};
use talentshare_proto::payment::PaymentStatus;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, Streaming};

use crate::helpers::{Story, TestApp, spawn_app, spawn_app_with, wait_until};
use testkit::on_both_backends;
use testkit::{Backend, TestDatabase};

on_both_backends!(
    watch_sends_the_current_entries_then_each_change_of_that_customer,
    watch_ends_with_unavailable_when_the_service_shuts_down,
    watchers_beyond_the_limit_are_refused_until_a_stream_closes,
    a_watch_that_falls_behind_ends_with_aborted,
    markers_come_only_when_asked_for,
    a_resumed_watch_sends_only_what_changed_since_its_token,
);

const NEXT_TIMEOUT: Duration = Duration::from_secs(20);

/// WatchMyPage as `customer`, for `customer`.
async fn open(app: &TestApp, customer: &str) -> Result<Streaming<WatchMyPageResponse>, Status> {
    app.client_as(customer)
        .watch_my_page(WatchMyPageRequest {
            customer_id: customer.to_owned(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// The next entry on the stream; fails the test on an error, the end, or a timeout.
async fn next_entry(stream: &mut Streaming<WatchMyPageResponse>) -> MyPageEntry {
    tokio::time::timeout(NEXT_TIMEOUT, stream.message())
        .await
        .expect("a message before the timeout")
        .expect("no error on the stream")
        .expect("the stream goes on")
        .entry
        .expect("every message holds an entry")
}

async fn watch_sends_the_current_entries_then_each_change_of_that_customer(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = Story::new("cust-w").placed();
    let second = Story::new("cust-w").placed();
    let other = Story::new("cust-other").placed();
    for s in [&first, &second, &other] {
        app.publish(&s.events).await;
    }
    app.settle().await;

    let mut stream = open(&app, "cust-w").await.expect("WatchMyPage");
    let initial = [next_entry(&mut stream).await, next_entry(&mut stream).await];
    assert_eq!(
        [initial[0].order_id.as_str(), initial[1].order_id.as_str()],
        [second.order_id.as_str(), first.order_id.as_str()],
        "current entries first, newest order first"
    );

    // Another customer's change is not sent; the next message is our own change.
    let other_paid = other.clone().approved();
    app.publish(&other_paid.events[1..]).await;
    let first_paid = first.clone().approved();
    app.publish(&first_paid.events[1..]).await;
    let changed = next_entry(&mut stream).await;
    assert_eq!(changed.order_id, first.order_id);
    assert_eq!(changed.payment_status(), PaymentStatus::Approved);

    let third = Story::new("cust-w").placed();
    app.publish(&third.events).await;
    let new_order = next_entry(&mut stream).await;
    assert_eq!(
        new_order.order_id, third.order_id,
        "a new order is sent too"
    );
    app.stop().await;
}

async fn watch_ends_with_unavailable_when_the_service_shuts_down(backend: Backend) {
    let app = spawn_app(backend).await;
    let story = Story::new("cust-w").placed();
    app.publish(&story.events).await;
    app.settle().await;
    let mut stream = open(&app, "cust-w").await.expect("WatchMyPage");
    assert_eq!(next_entry(&mut stream).await.order_id, story.order_id);

    app.begin_shutdown();
    let end = tokio::time::timeout(NEXT_TIMEOUT, stream.message())
        .await
        .expect("the stream ends before the timeout");
    let status = end.expect_err("the stream ends with a status");
    testkit::expect_reason(&status, Code::Unavailable, "SHUTTING_DOWN");
    // The drain did not wait for the watcher: the service stops well within its grace.
    tokio::time::timeout(Duration::from_secs(4), app.stop())
        .await
        .expect("shutdown is not held up by the stream");
}

async fn watchers_beyond_the_limit_are_refused_until_a_stream_closes(backend: Backend) {
    let app = spawn_app_with(backend, &["--max-watchers", "1"]).await;
    let story = Story::new("cust-w").placed();
    app.publish(&story.events).await;
    app.settle().await;

    let mut held = open(&app, "cust-w").await.expect("the first watcher");
    next_entry(&mut held).await;
    let refused = open(&app, "cust-other").await.expect_err("over the limit");
    let d = testkit::expect_reason(&refused, Code::ResourceExhausted, "TOO_MANY_WATCHERS");
    assert!(d.retry.is_some(), "{d:?}");

    // The client goes away: its stream stops on the server and frees the slot.
    drop(held);
    let mut again = wait_until("a watcher slot freed", Duration::from_secs(10), || async {
        open(&app, "cust-w").await.ok()
    })
    .await;
    assert_eq!(next_entry(&mut again).await.order_id, story.order_id);
    app.stop().await;
}

/// Drives the stream directly, so the fan-out's backlog can be tiny and the lag
/// certain, without flooding a real server.
async fn a_watch_that_falls_behind_ends_with_aborted(backend: Backend) {
    platform::telemetry::init_for_tests();
    let db = TestDatabase::create(backend).await;
    let conn = db.connect().await;
    Migrator::up(&conn, None).await.expect("migrations");
    let changes = Changes::in_process(2);
    let customer = ExternalId::try_from("cust-w".to_owned()).expect("valid id");
    let subscribed = changes.subscribe();
    for _ in 0..5 {
        changes.notify(Changed {
            customer_id: Arc::from("cust-w"),
            order_id: uuid::Uuid::now_v7(),
            change_seq: None,
        });
    }
    let limit = Arc::new(Semaphore::new(1));
    let permit = limit.clone().try_acquire_owned().expect("a free slot");
    let mut stream = mypage_svc::watch::watch(
        MyPageStore::new(conn.clone()),
        customer,
        mypage_svc::watch::Markers::default(),
        mypage_svc::watch::Resume::default(),
        subscribed,
        CancellationToken::new(),
        permit,
    );

    let end = tokio::time::timeout(NEXT_TIMEOUT, stream.next())
        .await
        .expect("the stream ends before the timeout")
        .expect("an item");
    let status = end.expect_err("a lagging stream ends with a status");
    testkit::expect_reason(&status, Code::Aborted, "WATCH_FELL_BEHIND");
    assert!(stream.next().await.is_none(), "nothing after the status");
    wait_until("the watcher slot freed", Duration::from_secs(5), || async {
        (limit.available_permits() == 1).then_some(())
    })
    .await;
    let _ = conn.close().await;
    db.drop_database().await;
}

/// The opt-in markers: a client that asks gets `snapshot_end` right after the current
/// entries and heartbeats while nothing changes; a client that does not ask (every
/// test above) sees entries only.
async fn markers_come_only_when_asked_for(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = Story::new("cust-m").placed();
    let second = Story::new("cust-m").placed();
    for s in [&first, &second] {
        app.publish(&s.events).await;
    }
    app.settle().await;

    let mut stream = app
        .client_as("cust-m")
        .watch_my_page(WatchMyPageRequest {
            send_snapshot_end: true,
            heartbeat_interval: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("WatchMyPage")
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(NEXT_TIMEOUT, stream.message())
            .await
            .expect("a message before the timeout")
            .expect("no error on the stream")
            .expect("the stream goes on")
    };
    let snapshot = [next().await, next().await];
    assert!(
        snapshot
            .iter()
            .all(|m| m.entry.is_some() && !m.snapshot_end && !m.heartbeat),
        "{snapshot:?}"
    );
    let end = next().await;
    assert!(
        end.snapshot_end && end.entry.is_none() && !end.heartbeat,
        "{end:?}"
    );

    // Nothing changes: a heartbeat comes, about a second later.
    let started = std::time::Instant::now();
    let beat = next().await;
    assert!(
        beat.heartbeat && beat.entry.is_none() && !beat.snapshot_end,
        "{beat:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "a heartbeat waits for quiet: {:?}",
        started.elapsed()
    );

    // A change comes as an entry, heartbeats or not.
    app.publish(&first.clone().approved().events[1..]).await;
    let changed = loop {
        let m = next().await;
        if let Some(entry) = m.entry {
            break entry;
        }
        assert!(m.heartbeat, "only heartbeats between changes: {m:?}");
    };
    assert_eq!(changed.order_id, first.order_id);
    app.stop().await;
}

/// Opens a stream for `customer` resuming from `token`, with the end-of-snapshot
/// marker.
async fn resume(
    app: &TestApp,
    customer: &str,
    token: &str,
) -> Result<Streaming<WatchMyPageResponse>, Status> {
    app.client_as(customer)
        .watch_my_page(WatchMyPageRequest {
            send_snapshot_end: true,
            resume_token: token.to_owned(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// The messages up to and including the end-of-snapshot marker.
async fn until_snapshot_end(
    stream: &mut Streaming<WatchMyPageResponse>,
) -> Vec<WatchMyPageResponse> {
    let mut got = Vec::new();
    loop {
        let m = tokio::time::timeout(NEXT_TIMEOUT, stream.message())
            .await
            .expect("a message before the timeout")
            .expect("no error on the stream")
            .expect("the stream goes on");
        let end = m.snapshot_end;
        got.push(m);
        if end {
            return got;
        }
    }
}

fn order_ids(messages: &[WatchMyPageResponse]) -> Vec<String> {
    let mut ids: Vec<String> = messages
        .iter()
        .filter_map(|m| m.entry.as_ref().map(|e| e.order_id.clone()))
        .collect();
    ids.sort();
    ids
}

/// Resume tokens: a stream that reconnects with the last token it received gets only
/// the entries that changed since (whoever changed them, while it was away), not the
/// whole page; an older token gets more, never less; and a token that is not the
/// caller's, or that this store never issued, is INVALID_ARGUMENT.
async fn a_resumed_watch_sends_only_what_changed_since_its_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let (a, b, c) = (
        Story::new("cust-r").placed(),
        Story::new("cust-r").placed(),
        Story::new("cust-r").placed(),
    );
    for s in [&a, &b, &c] {
        app.publish(&s.events).await;
    }
    app.settle().await;

    let mut first = resume(&app, "cust-r", "").await.expect("WatchMyPage");
    let snapshot = until_snapshot_end(&mut first).await;
    let mut all = vec![a.order_id.clone(), b.order_id.clone(), c.order_id.clone()];
    all.sort();
    assert_eq!(order_ids(&snapshot), all);
    let after_snapshot = snapshot.last().unwrap().resume_token.clone();
    assert!(
        !after_snapshot.is_empty(),
        "the marker carries the position"
    );
    assert_eq!(
        snapshot[snapshot.len() - 2].resume_token,
        after_snapshot,
        "so does the snapshot's last entry"
    );
    assert!(
        snapshot[0].resume_token.is_empty(),
        "an entry before the snapshot's last moves no position"
    );

    // A, then C, change while the stream is open; their messages carry later
    // positions.
    let mut live_change = async |story: &Story| {
        app.publish(&story.clone().approved().events[1..]).await;
        let m = tokio::time::timeout(NEXT_TIMEOUT, first.message())
            .await
            .expect("a message before the timeout")
            .expect("no error on the stream")
            .expect("the stream goes on");
        assert_eq!(m.entry.as_ref().unwrap().order_id, story.order_id);
        m.resume_token
    };
    let after_a = live_change(&a).await;
    let after_c = live_change(&c).await;
    // A's change is the first numbered after the snapshot: its token is the
    // snapshot's. C's is later.
    assert_eq!(after_a, after_snapshot);
    assert_ne!(after_c, after_snapshot);
    drop(first);

    // Away: B changes and D is placed.
    app.publish(&b.clone().approved().events[1..]).await;
    let d = Story::new("cust-r").placed();
    app.publish(&d.events).await;
    app.settle().await;

    let sorted = |ids: &[&Story]| {
        let mut v: Vec<String> = ids.iter().map(|s| s.order_id.clone()).collect();
        v.sort();
        v
    };
    // From the last token received: what changed while away, plus C again (the
    // change the token was issued with is sent again whole, never half); not A.
    let mut again = resume(&app, "cust-r", &after_c).await.expect("resume");
    let resumed = until_snapshot_end(&mut again).await;
    assert_eq!(order_ids(&resumed), sorted(&[&b, &c, &d]));
    let latest = resumed.last().unwrap().resume_token.clone();
    drop(again);
    // An older token gets more, never less.
    let mut older = resume(&app, "cust-r", &after_snapshot)
        .await
        .expect("resume");
    assert_eq!(
        order_ids(&until_snapshot_end(&mut older).await),
        sorted(&[&a, &b, &c, &d])
    );
    drop(older);

    // From the latest token nothing changed: the marker alone, then live changes.
    let mut quiet = resume(&app, "cust-r", &latest).await.expect("resume");
    let nothing = until_snapshot_end(&mut quiet).await;
    assert_eq!(order_ids(&nothing), Vec::<String>::new(), "{nothing:?}");
    app.publish(&d.clone().approved().events[1..]).await;
    assert_eq!(next_entry(&mut quiet).await.order_id, d.order_id);
    drop(quiet);

    // Tokens the caller may not use.
    let store = MyPageStore::new(app.db.connect().await);
    let customer = |id: &str| ExternalId::try_from(id.to_owned()).expect("valid id");
    let scope = store
        .resume_scope(&customer("cust-r"))
        .await
        .expect("scope");
    let theirs = store
        .resume_scope(&customer("cust-other"))
        .await
        .expect("scope");
    let position = store
        .change_number(&customer("cust-r"))
        .await
        .expect("number");
    for (case, token) in [
        (
            "another customer's",
            platform::paging::encode_resume_token(&theirs, 1),
        ),
        (
            "ahead of this store",
            platform::paging::encode_resume_token(&scope, position + 2),
        ),
        (
            "another store's (a database replaced since)",
            platform::paging::encode_resume_token(
                &scope.replacen(|c: char| c.is_ascii_hexdigit(), "x", 1),
                1,
            ),
        ),
        ("garbage", "not-a-token".to_owned()),
    ] {
        let err = resume(&app, "cust-r", &token).await.expect_err(case);
        assert_eq!(
            testkit::violated_fields(&err),
            vec!["resume_token".to_owned()],
            "{case}"
        );
    }
    app.stop().await;
}

/// A rolling upgrade on PostgreSQL: replicas of the previous version write rows
/// without change numbers (an update that leaves the number alone, an insert that
/// leaves it 0). The database numbers those writes itself, so a stream resumed from a
/// token issued before them still gets both rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_a_previous_version_are_numbered_so_resumed_streams_see_them() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app(Backend::Postgres).await;
    let a = Story::new("cust-u").placed();
    app.publish(&a.events).await;
    app.settle().await;
    let mut first = resume(&app, "cust-u", "").await.expect("WatchMyPage");
    let token = until_snapshot_end(&mut first)
        .await
        .last()
        .unwrap()
        .resume_token
        .clone();
    drop(first);

    let conn = app.db.connect().await;
    let copied = uuid::Uuid::now_v7().to_string();
    let columns = "customer_id, talent_id, session_start_time, session_minutes, \
        amount_minor, currency, order_status, order_version, payment_status, \
        payment_version, reservation_status, reservation_version, payment_id, \
        reservation_id, decline_reason, update_time";
    for sql in [
        format!(
            "UPDATE my_page_entries SET update_time = update_time + interval '1 second' \
             WHERE order_id = '{}'",
            a.order_id
        ),
        format!(
            "INSERT INTO my_page_entries (order_id, {columns}) \
             SELECT '{copied}', {columns} FROM my_page_entries WHERE order_id = '{}'",
            a.order_id
        ),
    ] {
        conn.execute_unprepared(&sql)
            .await
            .expect("a previous version's write");
    }

    let mut resumed = resume(&app, "cust-u", &token).await.expect("resume");
    let mut expected = vec![a.order_id.clone(), copied];
    expected.sort();
    assert_eq!(order_ids(&until_snapshot_end(&mut resumed).await), expected);
    drop(resumed);
    let _ = conn.close().await;
    app.stop().await;
}
