//! The `talentshare` command.
//!
//! - `talentshare up`: runs order, payment, reservation and mypage in one process on
//!   50051–50054, with SQLite files under `./data` and one RabbitMQ, and drains them all
//!   on Ctrl-C. The local way to run the whole system.
//! - `talentshare probe`: a gRPC health check that exits 0 only when the service says
//!   SERVING (for `helm test` and operators).
//! - `talentshare token`: a development token (customer or manager) signed with the
//!   key `up` keeps in its data directory, for grpcurl.
//! - `talentshare topology`: declares the RabbitMQ topology with an admin user, once
//!   per deployment.
//! - `talentshare dlq`: lists the dead-lettered events of each consumer and replays
//!   chosen ones to that consumer once the cause is fixed.

mod dlq;
mod probe;
mod token;
mod topology;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "talentshare",
    version,
    about = "talentshare: book, pay, confirm and follow talent sessions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run all four services in this process.
    Up(up::UpArgs),
    /// Check a service's gRPC health; exit 0 only when SERVING.
    Probe(probe::ProbeArgs),
    /// Print a development token for `talentshare up` (customer or manager).
    Token(token::TokenArgs),
    // Help text on `TopologyArgs`, so `topology --help` shows the long version.
    Topology(topology::TopologyArgs),
    // Help text on `DlqArgs`, as for `topology`.
    Dlq(dlq::DlqArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args).await,
        Command::Probe(args) => probe::run(args).await,
        Command::Token(args) => token::run(args),
        Command::Topology(args) => topology::run(args).await,
        Command::Dlq(args) => dlq::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("talentshare: {e:#}");
            ExitCode::FAILURE
        }
    }
}
