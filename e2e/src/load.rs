//! A bounded load of customers placing (and sometimes cancelling) orders, and a
//! manager confirming or rejecting bookings, behaving as real clients do: a call that
//! fails with a retryable code is retried with the same `request_id`, so a fault
//! costs time, never a second order or a second charge.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use talentshare_proto::order::{CancelOrderRequest, OrderStatus, PlaceOrderRequest};
use talentshare_proto::reservation::{
    ConfirmReservationRequest, ListReservationsRequest, RejectReservationRequest, ReservationStatus,
};
use tonic::Code;

use talentshare_proto::order::order_service_client::OrderServiceClient;
use talentshare_proto::reservation::reservation_service_client::ReservationServiceClient;
use tonic::transport::Channel;

/// Counts of what the clients saw.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Orders whose PlaceOrder finally succeeded.
    pub placed: AtomicUsize,
    /// Calls retried after a retryable error.
    pub retries: AtomicUsize,
    /// Calls that failed with a code a client cannot retry (a bug, or bad input).
    pub failures: AtomicUsize,
    /// Cancellations that went through.
    pub cancelled: AtomicUsize,
    /// Bookings the manager confirmed or rejected.
    pub confirmed: AtomicUsize,
    pub rejected: AtomicUsize,
    /// Orders finished so far (the fault is injected part-way).
    pub progress: AtomicUsize,
}

fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

/// Retries `call` while it fails with a retryable code, for up to two minutes.
async fn with_retries<T, F, Fut>(stats: &LoadStats, mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut pause = Duration::from_millis(50);
    loop {
        match call().await {
            Err(s) if retryable(s.code()) && tokio::time::Instant::now() < deadline => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(pause + Duration::from_millis(rand::random::<u64>() % 50)).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// A PlaceOrder for customer `n`: every tenth card declines.
pub fn order_request(run: &str, n: usize) -> PlaceOrderRequest {
    let start = std::time::SystemTime::now() + Duration::from_secs(30 * 24 * 3600);
    let seconds = start
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs() as i64;
    PlaceOrderRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        customer_id: format!("{run}-c{}", n % 200),
        talent_id: format!("talent-{}", n % 7),
        session_start_time: Some(prost_types::Timestamp { seconds, nanos: 0 }),
        session_minutes: 60,
        amount_minor: 10_000 + n as i64,
        currency: "KRW".into(),
        card_number: if n % 10 == 1 {
            "4000000000000002".into()
        } else {
            "4242 4242 4242 4242".into()
        },
    }
}

/// Places `total` orders from `concurrency` clients; every tenth paid order is then
/// cancelled by its customer.
pub async fn customers(
    client: OrderServiceClient<Channel>,
    run: &str,
    total: usize,
    concurrency: usize,
    stats: Arc<LoadStats>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let next = next.clone();
        let stats = stats.clone();
        let run = run.to_owned();
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return;
                }
                let request = order_request(&run, n);
                let placed = with_retries(&stats, || {
                    let mut c = client.clone();
                    let r = request.clone();
                    async move { c.place_order(r).await.map(|r| r.into_inner().order) }
                })
                .await;
                match placed {
                    Ok(Some(order)) => {
                        stats.placed.fetch_add(1, Ordering::Relaxed);
                        if n.is_multiple_of(10) && order.status() == OrderStatus::Paid {
                            let cancelled = with_retries(&stats, || {
                                let mut c = client.clone();
                                let r = CancelOrderRequest {
                                    order_id: order.order_id.clone(),
                                    reason: "load test".into(),
                                };
                                async move { c.cancel_order(r).await }
                            })
                            .await;
                            match cancelled {
                                Ok(_) => {
                                    stats.cancelled.fetch_add(1, Ordering::Relaxed);
                                }
                                // The manager rejected it first: a legitimate outcome.
                                Err(s) if s.code() == Code::FailedPrecondition => {}
                                Err(_) => {
                                    stats.failures.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    _ => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                stats.progress.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

/// A talent manager: confirms requested bookings, rejecting about one in sixteen,
/// until `stop` is set.
pub async fn manager(
    client: ReservationServiceClient<Channel>,
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
) {
    while !stop.load(Ordering::Relaxed) {
        for talent in 0..7 {
            let mut c = client.clone();
            let Ok(page) = c
                .list_reservations(ListReservationsRequest {
                    talent_id: format!("talent-{talent}"),
                    status: ReservationStatus::Requested as i32,
                    page_size: 50,
                    ..Default::default()
                })
                .await
            else {
                continue;
            };
            for r in page.into_inner().reservations {
                let reject = r.reservation_id.ends_with('0');
                let done = if reject {
                    c.reject_reservation(RejectReservationRequest {
                        reservation_id: r.reservation_id.clone(),
                        manager_id: "manager-1".into(),
                        reason: "talent unavailable".into(),
                    })
                    .await
                    .map(|_| ())
                } else {
                    c.confirm_reservation(ConfirmReservationRequest {
                        reservation_id: r.reservation_id.clone(),
                        manager_id: "manager-1".into(),
                    })
                    .await
                    .map(|_| ())
                };
                if done.is_ok() {
                    let counter = if reject {
                        &stats.rejected
                    } else {
                        &stats.confirmed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
