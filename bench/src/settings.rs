//! The bench's command line: where the system comes from (`--spawn` or `--target-*`),
//! the shape of the load (closed loop at `--concurrency`, or open loop at `--rate`),
//! its bounds, and where the report goes. Parsed once, into typed values, before
//! anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser, ValueEnum};

/// Which storage a spawned system runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Spawn {
    /// The four release binaries, each on its own fresh PostgreSQL database, on a
    /// topology of their own on the local RabbitMQ.
    Postgres,
    /// The four release binaries on SQLite files in a temporary `DATA_DIR`, as
    /// `talentshare up` runs them by default, on a topology of their own.
    Sqlite,
}

/// What each worker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Story {
    /// PlaceOrder only.
    Place,
    /// PlaceOrder, then sometimes the customer cancels or the manager confirms or
    /// rejects the booking, and sometimes the customer reads their page.
    Mixed,
}

/// `bench`: load the system with PlaceOrder and measure it.
#[derive(Debug, Parser)]
#[command(name = "bench", version, about)]
#[command(group(ArgGroup::new("system").required(true).args(["spawn", "target_order"])))]
pub struct BenchArgs {
    /// Start the system itself (the release binaries next to this one) and tear it
    /// down at the end.
    #[arg(long, value_enum)]
    pub spawn: Option<Spawn>,
    /// A running order-svc to load instead (loopback addresses only).
    #[arg(long, value_parser = loopback, requires = "target_mypage")]
    pub target_order: Option<SocketAddr>,
    /// The running mypage-svc that goes with `--target-order` (loopback only).
    #[arg(long, value_parser = loopback, requires = "target_order")]
    pub target_mypage: Option<SocketAddr>,
    /// The running reservation-svc that goes with `--target-order` (loopback only);
    /// needed by `--story mixed`, whose manager confirms and rejects bookings there.
    #[arg(long, value_parser = loopback, requires = "target_order")]
    pub target_reservation: Option<SocketAddr>,
    /// A customer token for `--target-*`: every order is placed as that customer.
    /// Without it, tokens are minted per customer with the development key of
    /// `--data-dir` (as `talentshare up` and `talentshare token` do).
    #[arg(long, env = "BENCH_TOKEN", conflicts_with = "spawn")]
    pub token: Option<String>,
    /// The data directory of `talentshare up` (its development signing key).
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Closed loop: this many workers, each placing its next order as soon as the
    /// previous one is answered.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Open loop instead: this many orders per second, sent on a fixed schedule
    /// whatever the answers take.
    #[arg(long, conflicts_with = "concurrency", value_parser = rate)]
    pub rate: Option<f64>,
    /// What each worker does: `place` (PlaceOrder only) or `mixed` (PlaceOrder,
    /// then cancellations, the manager's confirmations and rejections, my page reads).
    #[arg(long, value_enum, default_value_t = Story::Place)]
    pub story: Story,
    /// Measure the event lag on 1 in this many orders: the time from PlaceOrder's
    /// answer until WatchMyPage shows the order's entry in its final state. Each
    /// sampled customer gets one watcher (at most 200); 0 turns it off.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub lag_sample: u32,
    /// Before the load, measure what the machine itself allows: bare gRPC round
    /// trips and single-row PostgreSQL commits. On by default; the flag only
    /// undoes an earlier `--no-reference`.
    #[arg(long, overrides_with = "no_reference")]
    pub reference: bool,
    /// Skip the reference step.
    #[arg(long, overrides_with = "reference")]
    pub no_reference: bool,
    /// How long each of the reference step's four measurements runs.
    #[arg(long, default_value = "1s", value_parser = reference_duration)]
    pub reference_duration: Duration,
    /// Open loop: at most this many requests in flight; a request due while the
    /// limit is reached is not sent and counts as the error `shed`.
    #[arg(long, default_value_t = 2_000)]
    pub max_in_flight: usize,
    /// How long to load.
    #[arg(long, default_value = "30s", value_parser = platform::settings::parse_duration)]
    pub duration: Duration,
    /// Stop after this many orders even if time is left.
    #[arg(long)]
    pub max_orders: Option<u64>,
    /// A call not answered within this counts as the error `timeout`.
    #[arg(long, default_value = "10s", value_parser = platform::settings::parse_duration)]
    pub request_timeout: Duration,
    /// After the load, how long to wait for every queue and outbox to empty.
    #[arg(long, default_value = "60s", value_parser = platform::settings::parse_duration)]
    pub drain_timeout: Duration,
    /// Exit non-zero when the queue depth grows through the run or anything is
    /// left unconsumed at the end.
    #[arg(long)]
    pub require_steady: bool,
    /// Exit non-zero on anything but a clean run, whatever the timings: a failed
    /// call, an event not consumed by the end of the drain, a dead letter, a sampled
    /// order my page never showed final, or (spawned systems) an audit finding. For
    /// CI: it never fails on a figure.
    #[arg(long)]
    pub require_clean: bool,
    /// Where the report goes (default `target/bench/<timestamp>/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl BenchArgs {
    /// Whether the reference step runs.
    pub fn reference(&self) -> bool {
        !self.no_reference
    }

    /// The load's shape.
    pub fn mode(&self) -> Mode {
        match self.rate {
            Some(rate) => Mode::Open { rate },
            None => Mode::Closed {
                concurrency: self.concurrency,
            },
        }
    }
}

/// Closed or open loop.
#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(tag = "loop", rename_all = "lowercase")]
pub enum Mode {
    Closed { concurrency: u32 },
    Open { rate: f64 },
}

/// Accepts loopback socket addresses only: the bench is a load generator, and
/// pointing it at someone else's machine by mistake must be impossible.
fn loopback(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|e| format!("`{s}` is not an address like 127.0.0.1:50051 ({e})"))?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(format!(
            "`{s}` is not a loopback address: the bench only loads services on this machine (127.0.0.0/8 or [::1])"
        ))
    }
}

/// The reference step runs before the load and delays it, so each of its
/// measurements is bounded to a few seconds.
fn reference_duration(s: &str) -> Result<Duration, String> {
    let d = platform::settings::parse_duration(s)?;
    if d >= Duration::from_millis(100) && d <= Duration::from_secs(10) {
        Ok(d)
    } else {
        Err(format!("`{s}` is not between 100ms and 10s"))
    }
}

fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 100_000.0 => Ok(r),
        _ => Err(format!("`{s}` is not a rate between 0 and 100000 orders/s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_accepts_ipv4_and_ipv6_loopback() {
        assert!(loopback("127.0.0.1:1").is_ok());
        assert!(loopback("[::1]:1").is_ok());
    }

    #[test]
    fn loopback_refuses_other_addresses_naming_the_rule() {
        let e = loopback("10.0.0.1:50051").unwrap_err();
        assert!(e.contains("not a loopback address"), "{e}");
        assert!(loopback("example.com:1").is_err());
    }

    #[test]
    fn the_reference_step_is_on_unless_turned_off_last() {
        let parse = |extra: &[&str]| {
            let base = ["bench", "--spawn", "postgres"];
            BenchArgs::try_parse_from(base.iter().chain(extra)).unwrap()
        };
        assert!(parse(&[]).reference());
        assert!(!parse(&["--no-reference"]).reference());
        assert!(parse(&["--no-reference", "--reference"]).reference());
    }

    #[test]
    fn rate_must_be_positive() {
        assert!(rate("0").is_err());
        assert!(rate("-1").is_err());
        assert_eq!(rate("200").unwrap(), 200.0);
    }
}
