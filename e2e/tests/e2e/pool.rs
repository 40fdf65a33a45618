//! A real service's PostgreSQL pool gives back what a burst made it open while the
//! service keeps running: its own periodic queries (outbox poll, readiness check) use
//! the pool all the time, so no connection ever idles out, and `DATABASE_MAX_LIFETIME`
//! is what retires the burst's connections (see `platform::db`). Measured the way an
//! operator would: sessions on the service's database in `pg_stat_activity`.

use std::time::{Duration, Instant};

use e2e::{Svc, System};
use talentshare_proto::payment::ListPaymentsRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_pool_grown_by_a_burst_shrinks_back_while_the_service_runs() {
    // Arrange: the idle timeout is longer than the gap between the service's own
    // queries, so only the lifetime can shrink the pool.
    let system = System::start_with_env(&[
        ("DATABASE_MAX_CONNECTIONS", "10"),
        ("DATABASE_IDLE_TIMEOUT", "10s"),
        ("DATABASE_MAX_LIFETIME", "3s"),
    ])
    .await;
    let database = system.database_name(Svc::Payment);
    let admin = testkit::PgSessions::connect().await;
    let before = admin.on(&database).await;

    // Act: bursts of concurrent calls until the pool has grown.
    let client = system.payment();
    let mut grown = 0;
    for _ in 0..20 {
        let calls = (0..64).map(|_| {
            let mut client = client.clone();
            async move {
                client
                    .list_payments(ListPaymentsRequest {
                        page_size: 100,
                        ..Default::default()
                    })
                    .await
            }
        });
        for answer in futures::future::join_all(calls).await {
            answer.expect("ListPayments");
        }
        grown = admin.on(&database).await;
        if grown >= 6 {
            break;
        }
    }
    let start = Instant::now();
    let mut left = grown;
    while left > 2 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = admin.on(&database).await;
    }

    // Assert
    eprintln!(
        "payment-svc sessions: {before} before the burst, {grown} after it, {left} after {:?}",
        start.elapsed()
    );
    assert!(grown >= 4, "the burst grew the pool (to {grown})");
    assert!(
        left <= 2,
        "the pool shrank back to what the service's own queries need ({left} left)"
    );
    system.shutdown().await;
}
