//! The `reservation-svc` binary: settings, then the service until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = reservation_svc::Settings::parse();
    let telemetry = settings.platform.telemetry.clone();
    platform::service_main("reservation-svc", &telemetry, |shutdown| {
        reservation_svc::start(settings, shutdown)
    })
    .await
}
