//! A bounded load of customers placing (and sometimes cancelling) orders, and a
//! manager confirming or rejecting bookings, behaving as real clients do: a call that
//! fails with a retryable code is retried with the same `request_id`, so a fault
//! costs time, never a second order or a second charge. Every client sends a token
//! of the system's identity provider: each customer its own (minted once per customer
//! id and reused), the manager one whose talents cover every talent the load books.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use talentshare_proto::order::{CancelOrderRequest, OrderStatus, PlaceOrderRequest};
use talentshare_proto::reservation::{
    ConfirmReservationRequest, ListReservationsRequest, RejectReservationRequest, ReservationStatus,
};
use tonic::Code;

use talentshare_proto::order::order_service_client::OrderServiceClient;
use talentshare_proto::reservation::reservation_service_client::ReservationServiceClient;
use testkit::{AuthChannel, Bearer, TestIdentity};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// How many talents the load books (`talent-0` … `talent-6`).
pub const TALENTS: usize = 7;
/// The manager's id: the token subject, repeated as `manager_id` in its requests.
pub const MANAGER_ID: &str = "manager-1";

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
    /// PlaceOrder calls an impatient customer walked away from after one retryable
    /// error (see [`Patience::Impatient`]): the order is the system's to settle.
    pub walked_away: AtomicUsize,
}

/// How long a customer keeps retrying a PlaceOrder that fails with a retryable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// Retries for up to two minutes, with the same request id.
    Patient,
    /// Gives up after the first retryable error, as a closed app or a dropped phone
    /// does: whatever became of the order is left to the services.
    Impatient,
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

/// The id of talent `i`.
pub fn talent(i: usize) -> String {
    format!("talent-{i}")
}

/// One order-svc client per customer, each sending that customer's token. Tokens are
/// minted on first use and cached, as a real client keeps its token for its session.
struct CustomerClients {
    channel: Channel,
    identity: Arc<TestIdentity>,
    clients: Mutex<HashMap<String, OrderServiceClient<AuthChannel>>>,
}

impl CustomerClients {
    fn get(&self, customer: &str) -> OrderServiceClient<AuthChannel> {
        let mut clients = self.clients.lock().expect("clients lock");
        clients
            .entry(customer.to_owned())
            .or_insert_with(|| {
                let token = self.identity.customer(customer);
                OrderServiceClient::new(InterceptedService::new(
                    self.channel.clone(),
                    Bearer::new(&token),
                ))
            })
            .clone()
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
        talent_id: talent(n % TALENTS),
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

/// Places `total` orders from `concurrency` clients over `channel` (to order-svc), each
/// order with its customer's token from `identity`; every tenth paid order is then
/// cancelled by its customer.
pub async fn customers(
    channel: Channel,
    identity: Arc<TestIdentity>,
    run: &str,
    total: usize,
    concurrency: usize,
    patience: Patience,
    stats: Arc<LoadStats>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let clients = Arc::new(CustomerClients {
        channel,
        identity,
        clients: Mutex::new(HashMap::new()),
    });
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let clients = clients.clone();
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
                let client = clients.get(&request.customer_id);
                let place = || {
                    let mut c = client.clone();
                    let r = request.clone();
                    async move { c.place_order(r).await.map(|r| r.into_inner().order) }
                };
                let placed = match patience {
                    Patience::Patient => with_retries(&stats, place).await,
                    Patience::Impatient => match place().await {
                        Err(s) if retryable(s.code()) => {
                            stats.walked_away.fetch_add(1, Ordering::Relaxed);
                            stats.progress.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        other => other,
                    },
                };
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

/// Counts a manager call the services refused for its token as a failure. Other errors
/// are part of the faults (a service down, a booking cancelled meanwhile) and the
/// manager simply tries again on its next round; a refused token never heals, and
/// would otherwise go unnoticed as a manager that confirms nothing.
fn refused(stats: &LoadStats, status: &tonic::Status) {
    if matches!(
        status.code(),
        Code::Unauthenticated | Code::PermissionDenied
    ) {
        stats.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// A talent manager of every talent the load books: confirms requested bookings over
/// `channel` (to reservation-svc), rejecting about one in sixteen, until `stop` is set.
pub async fn manager(
    channel: Channel,
    identity: Arc<TestIdentity>,
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
) {
    let talents: Vec<String> = (0..TALENTS).map(talent).collect();
    let talent_refs: Vec<&str> = talents.iter().map(String::as_str).collect();
    let client = ReservationServiceClient::new(InterceptedService::new(
        channel,
        Bearer::new(&identity.manager(MANAGER_ID, &talent_refs)),
    ));
    while !stop.load(Ordering::Relaxed) {
        for talent in &talents {
            let mut c = client.clone();
            let page = match c
                .list_reservations(ListReservationsRequest {
                    talent_id: talent.clone(),
                    status: ReservationStatus::Requested as i32,
                    page_size: 50,
                    ..Default::default()
                })
                .await
            {
                Ok(page) => page,
                Err(s) => {
                    refused(&stats, &s);
                    continue;
                }
            };
            for r in page.into_inner().reservations {
                let reject = r.reservation_id.ends_with('0');
                let done = if reject {
                    c.reject_reservation(RejectReservationRequest {
                        reservation_id: r.reservation_id.clone(),
                        manager_id: MANAGER_ID.into(),
                        reason: "talent unavailable".into(),
                    })
                    .await
                    .map(|_| ())
                } else {
                    c.confirm_reservation(ConfirmReservationRequest {
                        reservation_id: r.reservation_id.clone(),
                        manager_id: MANAGER_ID.into(),
                    })
                    .await
                    .map(|_| ())
                };
                match done {
                    Ok(()) => {
                        let counter = if reject {
                            &stats.rejected
                        } else {
                            &stats.confirmed
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(s) => refused(&stats, &s),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
