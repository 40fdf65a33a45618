//! The load itself and what it records. A closed loop runs N workers that each place
//! their next order as soon as the last is answered; an open loop sends on a fixed
//! schedule and measures every latency from the request's *scheduled* send time, so a
//! slow system cannot hide its queueing by slowing the sender down (coordinated
//! omission). Both stop at the deadline or at `--max-orders`, whichever comes first.
//! What a worker does after its PlaceOrder is answered (hand the order to the event
//! lag tracker, play the rest of the mixed story) happens inside the same slot, so
//! the bounds cover it too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use talentshare_proto::order::{Order, OrderStatus, PlaceOrderRequest};
use talentshare_proto::reservation::reservation_service_client::ReservationServiceClient;
use testkit::AuthChannel;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::lag::Lag;
use crate::settings::{Mode, Story};
use crate::target::Customer;

/// Talents the orders spread over.
pub const TALENTS: u64 = 50;
/// Latencies are recorded in microseconds up to a minute (far above any request
/// timeout), three significant figures.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A histogram of latencies in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// What completed within one second of the run (by completion time).
#[derive(Clone)]
pub struct Second {
    pub latency: Histogram<u64>,
    pub errors: u64,
}

/// Everything the load saw; shared by all workers behind one lock (a few thousand
/// records a second contend far less than a lock per field would cost in clarity).
pub struct Recorder {
    start: Instant,
    inner: Mutex<Recorded>,
    in_flight: AtomicU64,
}

/// The recorded figures.
pub struct Recorded {
    /// Every answered call (success or gRPC error), microseconds.
    pub latency: Histogram<u64>,
    /// Outcomes: `PAID`, `PAYMENT_DECLINED` … for answers, the gRPC code's name
    /// (`Unavailable` …), `timeout` or `shed` for errors.
    pub outcomes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub seconds: Vec<Second>,
    /// Every RPC the story calls, PlaceOrder included, by its method name.
    pub rpcs: BTreeMap<&'static str, RpcCalls>,
}

/// What one RPC saw over the run.
pub struct RpcCalls {
    /// Every answered call (success or gRPC error), microseconds.
    pub latency: Histogram<u64>,
    /// Answers that are not errors, by what they meant (`ok`, `not yet on my page` …).
    pub outcomes: BTreeMap<String, u64>,
    /// Errors by gRPC code name, or `timeout`.
    pub errors: BTreeMap<String, u64>,
}

/// How one RPC call ended, for [`Recorder::record_rpc`].
pub enum Call {
    /// Answered without an error; the string says what the answer meant.
    Answered(&'static str),
    /// A gRPC error or a timeout that the story expects (see its docs), counted
    /// as an outcome rather than an error.
    Expected(&'static str),
    Failed(String),
}

impl Call {
    /// The result of a call made under `timeout`.
    pub fn of<T>(answer: &Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>) -> Self {
        match answer {
            Ok(Ok(_)) => Call::Answered("ok"),
            Ok(Err(status)) => Call::Failed(format!("{:?}", status.code())),
            Err(_) => Call::Failed("timeout".to_owned()),
        }
    }
}

impl Recorder {
    pub fn new(start: Instant) -> Arc<Self> {
        Arc::new(Self {
            start,
            inner: Mutex::new(Recorded {
                latency: histogram(),
                outcomes: BTreeMap::new(),
                errors: BTreeMap::new(),
                seconds: Vec::new(),
                rpcs: BTreeMap::new(),
            }),
            in_flight: AtomicU64::new(0),
        })
    }

    /// Records one call that ended now, after `latency`.
    fn record(&self, latency: Option<Duration>, outcome: Result<String, String>) {
        let second = self.start.elapsed().as_secs() as usize;
        let mut r = self.inner.lock().expect("recorder lock");
        while r.seconds.len() <= second {
            r.seconds.push(Second {
                latency: histogram(),
                errors: 0,
            });
        }
        if let Some(latency) = latency {
            let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
            r.latency.saturating_record(us);
            r.seconds[second].latency.saturating_record(us);
        }
        match outcome {
            Ok(status) => *r.outcomes.entry(status).or_default() += 1,
            Err(code) => {
                r.seconds[second].errors += 1;
                *r.errors.entry(code).or_default() += 1;
            }
        }
    }

    /// Records one call of `rpc` (not PlaceOrder's headline figures: see `place`).
    pub fn record_rpc(&self, rpc: &'static str, latency: Duration, call: Call) {
        let mut r = self.inner.lock().expect("recorder lock");
        let calls = r.rpcs.entry(rpc).or_insert_with(|| RpcCalls {
            latency: histogram(),
            outcomes: BTreeMap::new(),
            errors: BTreeMap::new(),
        });
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        calls.latency.saturating_record(us);
        match call {
            Call::Answered(what) | Call::Expected(what) => {
                *calls.outcomes.entry(what.to_owned()).or_default() += 1;
            }
            Call::Failed(code) => *calls.errors.entry(code).or_default() += 1,
        }
    }

    /// Calls sent and not answered yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Reads the figures under the lock.
    pub fn with<T>(&self, f: impl FnOnce(&Recorded) -> T) -> T {
        f(&self.inner.lock().expect("recorder lock"))
    }
}

/// A valid PlaceOrder for order number `n`: the approved test card, a fresh request
/// id, customers and talents spread round-robin, sessions spread over the coming
/// months so no two orders of one talent need the same slot.
pub fn order_request(customer: &Customer, n: u64) -> PlaceOrderRequest {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after epoch")
        .as_secs() as i64;
    let start = now + 7 * 24 * 3600 + (n as i64 % 100_000) * 3600;
    PlaceOrderRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        customer_id: customer.id.clone(),
        talent_id: format!("talent-{}", n % TALENTS),
        session_start_time: Some(prost_types::Timestamp {
            seconds: start - start % 60,
            nanos: 0,
        }),
        session_minutes: 60,
        amount_minor: 10_000 + (n % 1000) as i64,
        currency: "KRW".into(),
        card_number: "4242 4242 4242 4242".into(),
    }
}

/// Sends one order and records it, its latency counted from `since`; returns the
/// order and when its answer arrived, if it was answered with one.
async fn place(
    recorder: &Recorder,
    customer: &Customer,
    n: u64,
    since: Instant,
    timeout: Duration,
) -> Option<(Order, Instant)> {
    let mut client = customer.client.clone();
    let request = order_request(customer, n);
    let sent = Instant::now();
    recorder.in_flight.fetch_add(1, Ordering::Relaxed);
    let answer = tokio::time::timeout(timeout, client.place_order(request)).await;
    recorder.in_flight.fetch_sub(1, Ordering::Relaxed);
    let answered_at = Instant::now();
    let latency = since.elapsed();
    recorder.record_rpc("PlaceOrder", answered_at - sent, Call::of(&answer));
    let (outcome, order) = match answer {
        Ok(Ok(r)) => match r.into_inner().order {
            Some(order) => (Ok(status_name(order.status())), Some(order)),
            None => (Ok("no order in answer".to_owned()), None),
        },
        Ok(Err(status)) => (Err(format!("{:?}", status.code())), None),
        Err(_) => (Err("timeout".to_owned()), None),
    };
    recorder.record(Some(latency), outcome);
    order.map(|o| (o, answered_at))
}

/// What every worker shares.
pub struct Load {
    pub recorder: Arc<Recorder>,
    pub customers: Vec<Customer>,
    pub story: Story,
    /// The event lag tracker, when `--lag-sample` is not 0.
    pub lag: Option<Arc<Lag>>,
    /// The manager of the mixed story.
    pub manager: Option<ReservationServiceClient<AuthChannel>>,
    pub request_timeout: Duration,
}

impl Load {
    /// Order `n`'s whole story, its PlaceOrder latency counted from `since`.
    async fn one(&self, n: u64, since: Instant) {
        let customer = &self.customers[n as usize % self.customers.len()];
        let Some((order, answered_at)) =
            place(&self.recorder, customer, n, since, self.request_timeout).await
        else {
            return;
        };
        if let Some(lag) = &self.lag
            && lag.sampled(n)
            && order.status() == OrderStatus::Paid
        {
            lag.answered(&order.order_id, answered_at);
        }
        if self.story == Story::Mixed {
            crate::story::follow_up(self, customer, &order).await;
        }
    }
}

fn status_name(status: OrderStatus) -> String {
    status
        .as_str_name()
        .trim_start_matches("ORDER_STATUS_")
        .to_owned()
}

/// Bounds of one load.
pub struct Bounds {
    pub deadline: Instant,
    pub max_orders: u64,
    pub max_in_flight: usize,
}

/// Runs the load to its bounds; returns when every call sent has been answered or
/// has timed out.
pub async fn run(mode: Mode, load: Arc<Load>, b: Bounds) {
    match mode {
        Mode::Closed { concurrency } => closed(concurrency, load, b).await,
        Mode::Open { rate } => open(rate, load, b).await,
    }
}

async fn closed(concurrency: u32, load: Arc<Load>, b: Bounds) {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (next, load) = (next.clone(), load.clone());
        let (deadline, max) = (b.deadline, b.max_orders);
        workers.spawn(async move {
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= max {
                    break;
                }
                load.one(n, Instant::now()).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

async fn open(rate: f64, load: Arc<Load>, b: Bounds) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let slots = Arc::new(Semaphore::new(b.max_in_flight));
    let start = Instant::now();
    let mut n: u64 = 0;
    while n < b.max_orders {
        // The schedule is fixed from the start: a late tick does not push the
        // following ones back, it only makes their measured latency longer.
        let scheduled = start + interval.mul_f64(n as f64);
        if scheduled >= b.deadline {
            break;
        }
        tokio::time::sleep_until(scheduled).await;
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let load = load.clone();
                tokio::spawn(async move {
                    load.one(n, scheduled).await;
                    drop(permit);
                });
            }
            // Over the in-flight bound: counted, never queued, so memory stays
            // bounded however far the system falls behind.
            Err(_) => load.recorder.record(None, Err("shed".to_owned())),
        }
        n += 1;
    }
    // Every call ends within its timeout (a mixed story within a bounded number of
    // them), so taking all the slots back is bounded.
    let all = u32::try_from(b.max_in_flight).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        crate::story::longest(load.story, load.request_timeout) + Duration::from_secs(5),
        slots.acquire_many(all),
    )
    .await;
}
