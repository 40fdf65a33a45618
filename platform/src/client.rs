//! The client side of unary calls to another service (order-svc and reservation-svc
//! calling payment-svc): one lazily connected channel per callee with a per-call
//! deadline, a connect timeout and a concurrency limit.
//!
//! The channel connects lazily so a caller starts (and stays ready) while the callee
//! is down; each call then fails fast with UNAVAILABLE instead of hanging.

use std::time::Duration;

use clap::Args;
use tonic::transport::{Channel, Endpoint};

use crate::settings::parse_duration;

/// How to reach payment-svc.
#[derive(Args, Clone, Debug)]
pub struct PaymentClientSettings {
    /// payment-svc's gRPC URL.
    #[arg(long, env = "PAYMENT_URL", default_value = "http://127.0.0.1:50052", value_parser = parse_http_url)]
    pub payment_url: String,
    /// Deadline of one call to payment-svc (sent as `grpc-timeout`).
    #[arg(long, env = "PAYMENT_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub payment_timeout: Duration,
    /// Most calls to payment-svc in flight at once from this process.
    #[arg(long, env = "PAYMENT_MAX_CONCURRENCY", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub payment_max_concurrency: u32,
}

fn parse_http_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(s.trim_end_matches('/').to_owned()),
        _ => Err("must be an http:// or https:// URL with a host".into()),
    }
}

impl PaymentClientSettings {
    /// A lazily connected channel to payment-svc.
    pub fn channel(&self) -> anyhow::Result<Channel> {
        lazy_channel(&self.payment_url, self.payment_timeout, self.payment_max_concurrency as usize)
            .map_err(|e| anyhow::anyhow!("PAYMENT_URL {}: {e}", self.payment_url))
    }
}

/// A channel to `url` that connects on first use, with a per-call `timeout` and at
/// most `max_concurrency` calls in flight.
pub fn lazy_channel(url: &str, timeout: Duration, max_concurrency: usize) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(1).min(timeout))
        .timeout(timeout)
        .concurrency_limit(max_concurrency)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}
