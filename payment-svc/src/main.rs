//! The `payment-svc` binary: settings, telemetry, then the service until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = payment_svc::Settings::parse();
    let telemetry = match platform::telemetry::init(&settings.platform.telemetry, "payment-svc") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("payment-svc: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = platform::shutdown::on_signal();
    let result = match payment_svc::start(settings, shutdown).await {
        Ok(running) => running.wait().await,
        Err(e) => Err(e),
    };
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "payment-svc failed");
            ExitCode::FAILURE
        }
    }
}
