//! The `bench` binary: parses the command line, runs the bench, prints the summary
//! and exits non-zero when `--require-steady` or `--require-clean` is not met.

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
            // A sampled order my page never showed final is an event that was not
            // consumed either, only further down the line than the queues.
            let never_reached = report.lag.as_ref().map_or(0, |l| l.never_reached);
            let steady = !report.queue_depth_grows && report.drain.consumed && never_reached == 0;
            if args.require_steady && !steady {
                eprintln!(
                    "bench: not steady (queue depth grows: {}, everything consumed: {}, lag samples never reached: {never_reached})",
                    report.queue_depth_grows, report.drain.consumed
                );
                return ExitCode::FAILURE;
            }
            let audit_clean = report.audit.as_ref().is_none_or(|a| a.clean);
            let clean = report.errors_total == 0
                && report.story_errors_total == 0
                && report.drain.consumed
                && report.drain.dead_letters == 0
                && never_reached == 0
                && audit_clean;
            if args.require_clean && !clean {
                eprintln!(
                    "bench: not clean (errors: {}, story errors: {}, everything consumed: {}, dead letters: {}, lag samples never reached: {never_reached}, audit clean: {audit_clean})",
                    report.errors_total,
                    report.story_errors_total,
                    report.drain.consumed,
                    report.drain.dead_letters
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
