//! The `payment-svc` binary: settings, then the service until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = payment_svc::Settings::parse();
    let telemetry = settings.platform.telemetry.clone();
    platform::service_main("payment-svc", &telemetry, |shutdown| {
        payment_svc::start(settings, shutdown)
    })
    .await
}
