//! The `reservation-svc` binary: settings, telemetry, then the service until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = reservation_svc::Settings::parse();
    let telemetry = match platform::telemetry::init(&settings.platform.telemetry, "reservation-svc")
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("reservation-svc: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = platform::shutdown::on_signal();
    let result = match reservation_svc::start(settings, shutdown).await {
        Ok(running) => running.wait().await,
        Err(e) => Err(e),
    };
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reservation-svc failed");
            ExitCode::FAILURE
        }
    }
}
