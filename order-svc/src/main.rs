//! The `order-svc` binary: settings, then the service until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = order_svc::Settings::parse();
    let telemetry = settings.platform.telemetry.clone();
    platform::service_main("order-svc", &telemetry, |shutdown| {
        order_svc::start(settings, shutdown)
    })
    .await
}
