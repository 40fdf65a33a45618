//! The settings of a payment-svc caller ([`PaymentCallerSettings`]): how to reach it and how patient to be
//! ([`PaymentClientSettings`]), when to settle work a failed call left unfinished
//! ([`ReconcileSettings`]), and how the anti-entropy pass compares with payment-svc
//! ([`AntiEntropySettings`]).

use std::time::Duration;

use clap::Args;
use platform::settings::parse_duration;

use crate::breaker::BreakerSettings;
use crate::channel::{CallPolicy, ResilientChannel, lazy_channel};
use crate::retry::RetrySettings;
use platform::metrics::Metrics;

/// Everything a service that calls payment-svc and settles with it is set by:
/// flattened into order-svc's and reservation-svc's settings.
#[derive(Args, Clone, Debug)]
pub struct PaymentCallerSettings {
    #[command(flatten)]
    pub payment: PaymentClientSettings,
    #[command(flatten)]
    pub reconcile: ReconcileSettings,
    #[command(flatten)]
    pub anti_entropy: AntiEntropySettings,
}

impl PaymentCallerSettings {
    /// Checks what clap cannot check one flag at a time.
    ///
    /// # Errors
    ///
    /// A message naming the settings that disagree.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.reconcile.validate(&self.payment)?;
        self.anti_entropy.validate()
    }
}

/// How to reach payment-svc.
#[derive(Args, Clone, Debug)]
pub struct PaymentClientSettings {
    /// payment-svc's gRPC URL.
    #[arg(long, env = "PAYMENT_URL", default_value = "http://127.0.0.1:50052", value_parser = parse_http_url)]
    pub payment_url: String,
    /// Deadline of one call to payment-svc, retries included (sent as `grpc-timeout`).
    #[arg(long, env = "PAYMENT_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub payment_timeout: Duration,
    /// Most calls to payment-svc in flight at once from this process.
    #[arg(long, env = "PAYMENT_MAX_CONCURRENCY", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub payment_max_concurrency: u32,
    /// Retries of an idempotent payment call that failed with UNAVAILABLE or found no connection.
    #[arg(long, env = "PAYMENT_RETRIES", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub payment_retries: u32,
    /// Consecutive failed calls that open the circuit breaker (fail fast).
    #[arg(long, env = "PAYMENT_BREAKER_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub payment_breaker_failures: u32,
    /// How long the open breaker fails calls fast before letting one probe through.
    #[arg(long, env = "PAYMENT_BREAKER_COOLDOWN", default_value = "5s", value_parser = parse_duration)]
    pub payment_breaker_cooldown: Duration,
}

impl PaymentClientSettings {
    /// The resilient channel to payment-svc (connects on first use), counting its
    /// attempts and reporting its breaker in `metrics`.
    pub fn channel(&self, metrics: Option<Metrics>) -> anyhow::Result<ResilientChannel> {
        let inner = lazy_channel(
            &self.payment_url,
            Duration::from_secs(1).min(self.payment_timeout),
        )
        .map_err(|e| anyhow::anyhow!("PAYMENT_URL {}: {e}", self.payment_url))?;
        Ok(ResilientChannel::new(
            "payment-svc",
            inner,
            CallPolicy {
                timeout: self.payment_timeout,
                retry: RetrySettings {
                    retries: self.payment_retries,
                    idempotent: payment_method_is_idempotent,
                },
                max_concurrency: self.payment_max_concurrency as usize,
                breaker: BreakerSettings {
                    failures: self.payment_breaker_failures,
                    cooldown: self.payment_breaker_cooldown,
                },
            },
            metrics,
        ))
    }
}

/// Every payment RPC is safe to repeat: Pay and Void are idempotent per order id,
/// Refund per payment id, and the rest only read.
fn payment_method_is_idempotent(path: &str) -> bool {
    matches!(
        path,
        "/talentshare.payment.v1.PaymentService/Pay"
            | "/talentshare.payment.v1.PaymentService/Refund"
            | "/talentshare.payment.v1.PaymentService/Void"
            | "/talentshare.payment.v1.PaymentService/GetPayment"
            | "/talentshare.payment.v1.PaymentService/ListPayments"
    )
}

/// When a service settles work a failed payment call left unfinished (an order left
/// pending, a cancellation or rejection whose refund was not confirmed).
#[derive(Args, Clone, Debug)]
pub struct ReconcileSettings {
    /// How often the reconciler looks for work left unfinished.
    #[arg(long, env = "RECONCILE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub reconcile_interval: Duration,
    /// How old unfinished work must be before the reconciler settles it. Must exceed
    /// PAYMENT_TIMEOUT, so that no payment call for it can still be in flight.
    #[arg(long, env = "RECONCILE_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub reconcile_after: Duration,
}

impl ReconcileSettings {
    /// Checks what clap cannot check one flag at a time.
    ///
    /// # Errors
    ///
    /// A message naming the settings that disagree.
    pub fn validate(&self, payment: &PaymentClientSettings) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.reconcile_interval.is_zero(),
            "RECONCILE_INTERVAL must be greater than zero"
        );
        // Work is settled once it is RECONCILE_AFTER old; that proves no call for it
        // is still in flight only if every call ends (by its deadline) sooner.
        anyhow::ensure!(
            self.reconcile_after > payment.payment_timeout,
            "RECONCILE_AFTER ({:?}) must be longer than PAYMENT_TIMEOUT ({:?})",
            self.reconcile_after,
            payment.payment_timeout
        );
        Ok(())
    }
}

/// The anti-entropy pass: how a service periodically compares what it believes with
/// payment-svc, the owner of the money's truth, and repairs what an event lost or
/// dead-lettered left wrong.
#[derive(Args, Clone, Debug)]
pub struct AntiEntropySettings {
    /// How often the anti-entropy pass checks its next batch.
    #[arg(long, env = "ANTI_ENTROPY_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub anti_entropy_interval: Duration,
    /// Records checked per batch (one payment-svc lookup each).
    #[arg(long, env = "ANTI_ENTROPY_BATCH", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub anti_entropy_batch: u64,
    /// How long a record must have been quiet (no change, and its payment's last
    /// change too) before the pass judges it: longer than any event takes to arrive,
    /// so a repair never races the event it stands in for.
    #[arg(long, env = "ANTI_ENTROPY_QUIET", default_value = "2m", value_parser = parse_duration)]
    pub anti_entropy_quiet: Duration,
    /// How far back the pass looks: records whose last change is older are not
    /// checked again. One full pass covers the window in
    /// ceil(records changed in the window / batch) × interval.
    #[arg(long, env = "ANTI_ENTROPY_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub anti_entropy_window: Duration,
}

impl AntiEntropySettings {
    /// Checks what clap cannot check one flag at a time.
    ///
    /// # Errors
    ///
    /// A message naming the settings that disagree.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.anti_entropy_interval.is_zero(),
            "ANTI_ENTROPY_INTERVAL must be greater than zero"
        );
        anyhow::ensure!(
            self.anti_entropy_window > self.anti_entropy_quiet,
            "ANTI_ENTROPY_WINDOW ({:?}) must be longer than ANTI_ENTROPY_QUIET ({:?})",
            self.anti_entropy_window,
            self.anti_entropy_quiet
        );
        Ok(())
    }
}

fn parse_http_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(s.trim_end_matches('/').to_owned()),
        _ => Err("must be an http:// or https:// URL with a host".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_payment_methods_are_marked_idempotent() {
        assert!(payment_method_is_idempotent(
            "/talentshare.payment.v1.PaymentService/Pay"
        ));
        assert!(!payment_method_is_idempotent(
            "/talentshare.order.v1.OrderService/PlaceOrder"
        ));
    }
}
