//! The event lag: for sampled orders, the time from PlaceOrder's answer until the
//! customer's WatchMyPage stream shows the order's entry in its final state, that is
//! until the events of the whole placement (order placed, payment approved,
//! reservation requested) have travelled outbox → broker → consumers → my page →
//! change feed → stream. It is what a customer waits for after "order placed" before
//! their page shows the booking as requested.
//!
//! It is observed through the stream, not by polling, so the figure is the push
//! path's own and the bench adds no reads. Sampling is per customer, since a watcher
//! sees every change of its customer anyway: 1 in `--lag-sample` customers is
//! watched (one stream each, at most [`crate::target::CUSTOMERS`]), and every order
//! of a watched customer is a sample. With one shared `--token` there is one
//! customer, one watcher, and 1 in `--lag-sample` orders is sampled.
//!
//! The answer and the final entry may arrive in either order (the events can
//! overtake a slow answer), so each sampled order is tracked in one map until both
//! are seen; a final entry seen first counts as a lag of zero.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use talentshare_proto::mypage::{MyPageEntry, WatchMyPageRequest};
use talentshare_proto::order::OrderStatus;
use talentshare_proto::payment::PaymentStatus;
use talentshare_proto::reservation::ReservationStatus;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::load::histogram;
use crate::report::Percentiles;
use crate::settings::Story;
use crate::target::Customer;

/// Orders tracked at most: a bound on memory whatever the run's length. Past it new
/// entries seen first are not tracked (their answer then counts as never reached,
/// which a run this long would show anyway).
const MAX_TRACKED: usize = 1_000_000;

/// Entries last changed this long before the run are ignored: against running
/// services a watcher first receives every older entry of its customer.
const OLDER_THAN_RUN: Duration = Duration::from_secs(5);

/// Where one sampled order stands.
enum Seen {
    /// PlaceOrder answered then; the final entry not seen yet.
    Answered(Instant),
    /// The final entry seen; the answer not yet.
    Final,
    /// Both seen (measured), or no longer a sample.
    Done,
}

/// The lag tracker, shared by the workers (answers) and the watchers (entries).
pub struct Lag {
    /// 1 in this many customers (or orders, with one shared customer) is sampled.
    every: u64,
    /// The load's customer count; 1 when all share one token's subject.
    customers: u64,
    story: Story,
    /// Unix seconds at the run's start, minus [`OLDER_THAN_RUN`].
    since_unix: i64,
    inner: Mutex<Tracked>,
    /// Times a watcher's stream ended and was opened again.
    restarts: AtomicU64,
}

struct Tracked {
    orders: HashMap<String, Seen>,
    /// Lag of each measured order, microseconds.
    latency: Histogram<u64>,
    /// Sampled orders whose answer arrived.
    samples: u64,
}

/// The lag figures of one run.
#[derive(Debug, serde::Serialize)]
pub struct LagReport {
    /// 1 in this many customers (or orders) was sampled.
    pub sample_every: u64,
    pub watchers: usize,
    /// Sampled orders answered (paid).
    pub samples: u64,
    /// Of those, how many reached their final state on my page in time…
    pub reached: u64,
    /// …and how many did not before the drain timeout (an error figure).
    pub never_reached: u64,
    /// How often a watcher's stream ended and was reopened.
    pub watch_restarts: u64,
    /// The lag of the orders that reached it, milliseconds.
    pub latency_ms: Percentiles,
}

impl Lag {
    /// A tracker sampling 1 in `every` of `customers` for a `story` run.
    pub fn new(every: u32, customers: &[Customer], story: Story) -> Self {
        let shared = customers.iter().all(|c| c.id.is_empty());
        let since = chrono::Utc::now() - OLDER_THAN_RUN;
        Lag {
            every: u64::from(every.max(1)),
            customers: if shared { 1 } else { customers.len() as u64 },
            story,
            since_unix: since.timestamp(),
            inner: Mutex::new(Tracked {
                orders: HashMap::new(),
                latency: histogram(),
                samples: 0,
            }),
            restarts: AtomicU64::new(0),
        }
    }

    /// Whether order `n` (sent to customer `n % customers`) is a sample.
    pub fn sampled(&self, n: u64) -> bool {
        (n % self.customers).is_multiple_of(self.every)
            && (self.customers > 1 || n.is_multiple_of(self.every))
    }

    /// The customers to watch (indices into the load's customers).
    fn watched(&self) -> impl Iterator<Item = usize> {
        (0..self.customers)
            .step_by(self.every as usize)
            .map(|i| i as usize)
    }

    /// Sampled order `order_id` was answered at `at`.
    pub fn answered(&self, order_id: &str, at: Instant) {
        let mut t = self.inner.lock().expect("lag lock");
        t.samples += 1;
        match t.orders.get(order_id) {
            Some(Seen::Final) => {
                // The events overtook the answer: no wait at all for the customer.
                t.latency.saturating_record(1);
                t.orders.insert(order_id.to_owned(), Seen::Done);
            }
            Some(_) => {}
            None => {
                t.orders.insert(order_id.to_owned(), Seen::Answered(at));
            }
        }
    }

    /// `order_id` is no longer a sample (the mixed story cancels it at once, so its
    /// entry never shows a standing booking).
    pub fn forget(&self, order_id: &str) {
        let mut t = self.inner.lock().expect("lag lock");
        if let Some(Seen::Answered(_)) = t.orders.get(order_id) {
            t.samples -= 1;
            t.orders.insert(order_id.to_owned(), Seen::Done);
        }
    }

    /// A watcher received `entry` now.
    fn seen(&self, entry: &MyPageEntry) {
        if !self.is_final(entry)
            || entry
                .update_time
                .as_ref()
                .is_some_and(|t| t.seconds < self.since_unix)
        {
            return;
        }
        let now = Instant::now();
        let mut t = self.inner.lock().expect("lag lock");
        match t.orders.get(&entry.order_id) {
            Some(Seen::Answered(at)) => {
                let us = now.duration_since(*at).as_micros() as u64;
                t.latency.saturating_record(us.max(1));
                t.orders.insert(entry.order_id.clone(), Seen::Done);
            }
            Some(_) => {}
            None if t.orders.len() < MAX_TRACKED => {
                t.orders.insert(entry.order_id.clone(), Seen::Final);
            }
            None => {}
        }
    }

    /// Whether `entry` shows the end of the placement. For the place story that is
    /// exactly what reservation-svc leaves after requesting the booking: order paid,
    /// payment approved, reservation requested. In the mixed story the manager may
    /// already have confirmed or rejected it (statuses only move forward), so any
    /// reservation status after a known order and payment counts.
    fn is_final(&self, e: &MyPageEntry) -> bool {
        match self.story {
            Story::Place => {
                e.order_status() == OrderStatus::Paid
                    && e.payment_status() == PaymentStatus::Approved
                    && e.reservation_status() == ReservationStatus::Requested
            }
            Story::Mixed => {
                e.order_status() != OrderStatus::Unspecified
                    && e.payment_status() != PaymentStatus::Unspecified
                    && e.reservation_status() != ReservationStatus::Unspecified
            }
        }
    }

    /// Sampled orders answered whose final entry has not been seen yet.
    pub fn pending(&self) -> u64 {
        let t = self.inner.lock().expect("lag lock");
        t.orders
            .values()
            .filter(|s| matches!(s, Seen::Answered(_)))
            .count() as u64
    }

    /// The lag measured so far: (measured, p50 ms).
    pub fn progress(&self) -> (u64, f64) {
        let t = self.inner.lock().expect("lag lock");
        let p50 = if t.latency.is_empty() {
            0.0
        } else {
            t.latency.value_at_quantile(0.5) as f64 / 1000.0
        };
        (t.latency.len(), p50)
    }

    /// Waits until every sampled order reached its final state, or `deadline`.
    pub async fn wait_settled(&self, deadline: Instant) {
        while self.pending() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The figures, with `watchers` streams.
    pub fn report(&self, watchers: usize) -> LagReport {
        let never_reached = self.pending();
        let t = self.inner.lock().expect("lag lock");
        LagReport {
            sample_every: self.every,
            watchers,
            samples: t.samples,
            reached: t.latency.len(),
            never_reached,
            watch_restarts: self.restarts.load(Ordering::Relaxed),
            latency_ms: Percentiles::of(&t.latency),
        }
    }
}

/// The watchers' streams; dropping it stops them.
pub struct Watchers {
    tasks: JoinSet<()>,
}

impl Watchers {
    /// Opens one WatchMyPage stream per watched customer; returns once every stream
    /// is open (the service subscribes to changes before it answers, so no change
    /// made after this is missed).
    ///
    /// # Errors
    /// When a stream cannot be opened within `timeout`.
    pub async fn open(
        lag: &std::sync::Arc<Lag>,
        customers: &[Customer],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut tasks = JoinSet::new();
        for i in lag.watched() {
            let customer = customers[i].clone();
            let stream = open_stream(&customer, timeout)
                .await
                .with_context(|| format!("opening WatchMyPage for customer `{}`", customer.id))?;
            let lag = lag.clone();
            tasks.spawn(watch(lag, customer, stream, timeout));
        }
        Ok(Watchers { tasks })
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Stops every watcher.
    pub async fn close(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

type Stream = tonic::Streaming<talentshare_proto::mypage::WatchMyPageResponse>;

async fn open_stream(customer: &Customer, timeout: Duration) -> anyhow::Result<Stream> {
    let mut client = customer.mypage.clone();
    let request = WatchMyPageRequest {
        customer_id: customer.id.clone(),
        ..Default::default()
    };
    let response = tokio::time::timeout(timeout, client.watch_my_page(request))
        .await
        .context("timed out")??;
    Ok(response.into_inner())
}

/// Reads one customer's stream until aborted, reopening it when it ends (the
/// service restarts it with every current entry, so nothing is lost).
async fn watch(
    lag: std::sync::Arc<Lag>,
    customer: Customer,
    mut stream: Stream,
    timeout: Duration,
) {
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                if let Some(entry) = message.entry {
                    lag.seen(&entry);
                }
            }
            Ok(None) | Err(_) => loop {
                lag.restarts.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(fresh) = open_stream(&customer, timeout).await {
                    stream = fresh;
                    break;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(customers: u64, every: u64) -> Lag {
        Lag {
            every,
            customers,
            story: Story::Place,
            since_unix: 0,
            inner: Mutex::new(Tracked {
                orders: HashMap::new(),
                latency: histogram(),
                samples: 0,
            }),
            restarts: AtomicU64::new(0),
        }
    }

    fn final_entry(order_id: &str) -> MyPageEntry {
        MyPageEntry {
            order_id: order_id.to_owned(),
            order_status: OrderStatus::Paid as i32,
            payment_status: PaymentStatus::Approved as i32,
            reservation_status: ReservationStatus::Requested as i32,
            ..Default::default()
        }
    }

    #[test]
    fn one_in_every_customer_is_watched_and_all_its_orders_sampled() {
        let lag = tracker(200, 10);
        assert_eq!(lag.watched().count(), 20);
        let sampled = (0..2000).filter(|n| lag.sampled(*n)).count();
        assert_eq!(sampled, 200);
        assert!(lag.sampled(210) && !lag.sampled(211));
    }

    #[test]
    fn one_shared_customer_samples_one_in_every_order() {
        let lag = tracker(1, 10);
        assert_eq!(lag.watched().count(), 1);
        assert_eq!((0..100).filter(|n| lag.sampled(*n)).count(), 10);
    }

    #[test]
    fn an_entry_short_of_the_final_state_is_not_the_end() {
        let lag = tracker(1, 1);
        lag.answered("o1", Instant::now());
        let mut entry = final_entry("o1");
        entry.reservation_status = ReservationStatus::Unspecified as i32;
        lag.seen(&entry);
        assert_eq!(lag.pending(), 1);
        lag.seen(&final_entry("o1"));
        assert_eq!(lag.pending(), 0);
        assert_eq!(lag.report(1).reached, 1);
    }

    #[test]
    fn a_final_entry_before_the_answer_counts_as_no_lag() {
        let lag = tracker(1, 1);
        lag.seen(&final_entry("o1"));
        lag.answered("o1", Instant::now());
        let report = lag.report(1);
        assert_eq!(
            (report.samples, report.reached, report.never_reached),
            (1, 1, 0)
        );
    }

    #[test]
    fn an_order_never_shown_final_is_never_reached() {
        let lag = tracker(1, 1);
        lag.answered("o1", Instant::now());
        lag.answered("o2", Instant::now());
        lag.seen(&final_entry("o2"));
        let report = lag.report(1);
        assert_eq!((report.reached, report.never_reached), (1, 1));
    }
}
