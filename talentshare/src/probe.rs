//! `talentshare probe`: one gRPC health check. Exit 0 when SERVING, 1 when the service
//! answers anything else, 2 when it cannot be reached in time.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Flags of `talentshare probe`.
#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// `host:port` of the gRPC server.
    #[arg(long)]
    addr: String,
    /// Service name to check; empty means the server as a whole (liveness).
    #[arg(long, default_value = "")]
    service: String,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = platform::settings::parse_duration)]
    timeout: Duration,
}

/// Runs the check and prints the status.
pub async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let target = if args.addr.contains("://") {
        args.addr.clone()
    } else {
        format!("http://{}", args.addr)
    };
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(target.clone())?
            .connect_timeout(args.timeout)
            .timeout(args.timeout)
            .connect()
            .await?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await?;
        anyhow::Ok(response.into_inner().status())
    };
    let name = if args.service.is_empty() {
        "(server)"
    } else {
        args.service.as_str()
    };
    match tokio::time::timeout(args.timeout, check).await {
        Ok(Ok(ServingStatus::Serving)) => {
            println!("{} {name}: SERVING", args.addr);
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(status)) => {
            println!("{} {name}: {}", args.addr, status.as_str_name());
            Ok(ExitCode::from(1))
        }
        Ok(Err(e)) => {
            println!("{} {name}: unreachable: {e:#}", args.addr);
            Ok(ExitCode::from(2))
        }
        Err(_) => {
            println!("{} {name}: no answer within {:?}", args.addr, args.timeout);
            Ok(ExitCode::from(2))
        }
    }
}
