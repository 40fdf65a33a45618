//! Logging set-up: one `tracing` subscriber per process, human or JSON lines.
//!
//! Secrets stay out of logs by construction: URLs are [`crate::SecretUrl`]s whose
//! `Display` hides the password, and card numbers never leave the request handler.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::settings::{LogFormat, TelemetrySettings};

/// Installs the global subscriber. A second call (several services in one process,
/// or tests) keeps the first subscriber and returns `Ok`.
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(&settings.log_filter).map_err(|e| anyhow::anyhow!("RUST_LOG: {e}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.log_format {
        LogFormat::Human => registry.with(fmt::layer().with_target(true)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
    };
    // Already initialised is not an error: the first one wins.
    let _ = result;
    Ok(())
}

/// Test helper: logs to the test writer when `TEST_LOG` is set, stays silent otherwise.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_none() {
        return;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_test_writer())
        .try_init();
}
