//! The `bench` binary: parses the command line, runs the bench, prints the summary
//! and exits non-zero when `--require-steady` is not met.

use std::process::ExitCode;

use bench::BenchArgs;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = BenchArgs::parse();
    match bench::run(&args).await {
        Ok((report, out)) => {
            println!("{}", report.summary());
            println!("report: {}", out.display());
            let steady = !report.queue_depth_grows && report.drain.consumed;
            if args.require_steady && !steady {
                eprintln!(
                    "bench: not steady (queue depth grows: {}, everything consumed: {})",
                    report.queue_depth_grows, report.drain.consumed
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
