//! The `mypage-svc` binary: settings, then the service until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = mypage_svc::Settings::parse();
    let telemetry = settings.platform.telemetry.clone();
    platform::service_main("mypage-svc", &telemetry, |shutdown| {
        mypage_svc::start(settings, shutdown)
    })
    .await
}
