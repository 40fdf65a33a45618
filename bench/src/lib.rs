//! `bench`: a load generator and measuring tool for the whole system, run as
//! `cargo run --release -p bench -- --spawn postgres --concurrency 64 --duration 30s`.
//!
//! - [`settings`]: the command line;
//! - `reference`: what the machine allows at best (bare gRPC round trips, single-row
//!   PostgreSQL commits), measured before the load;
//! - `target`: the system under load, spawned through [`e2e::System`] (on PostgreSQL
//!   or SQLite) or already running on loopback, and each customer's clients;
//! - `load`: the closed and open loops and the HDR recorder;
//! - `story`: what a worker does after PlaceOrder in the mixed story;
//! - `lag`: the event lag, seen through WatchMyPage streams;
//! - `sample`: queue depths, outbox backlogs, CPU and RSS once a second;
//! - `cost`: CPU and PostgreSQL commits per order, and the throughput they bound;
//! - `progress`: a progress bar on a terminal, plain lines otherwise;
//! - `report` and `chart`: the Markdown and JSON report, and its SVG chart.
//!
//! Every loop is bounded: the load by `--duration` and `--max-orders`, each call by
//! `--request-timeout`, the open loop's in-flight calls by `--max-in-flight`, the
//! final wait for the backlog and the lag samples by `--drain-timeout`, the
//! reference step by `--reference-duration`.

pub mod settings;

mod chart;
mod cost;
mod lag;
mod load;
mod progress;
mod reference;
mod report;
mod sample;
mod story;
mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

pub use report::Report;
pub use settings::BenchArgs;

use lag::{Lag, Watchers};
use load::{Bounds, Load, Recorder};
use progress::Progress;
use reference::Reference;
use sample::Sampler;
use target::{Clients, Target};

/// Runs the bench the arguments describe, writes its report, and returns it with
/// whether the run was steady (no growing queue, everything consumed).
///
/// # Errors
/// When the system cannot be reached or the report cannot be written; a failing
/// call is a figure in the report, not an error.
pub async fn run(args: &BenchArgs) -> anyhow::Result<(Report, PathBuf)> {
    // Before the system starts, so its idle processes take nothing from it.
    let reference = if args.reference() {
        eprintln!(
            "bench: reference step ({:?} per measurement)",
            args.reference_duration
        );
        let r = reference::measure(args.reference_duration).await?;
        eprintln!("bench: {}", report::reference_line(&r));
        Some(r)
    } else {
        None
    };
    let (target, clients) = target::Target::open(args).await?;
    let result = measure(args, &target, clients, reference).await;
    // Torn down whatever happened, so a failed run leaves no processes, databases
    // or queues behind.
    target.close().await;
    let report = result?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("target/bench").join(chrono::Local::now().format("%Y%m%d-%H%M%S").to_string())
    });
    report.write(&out)?;
    Ok((report, out))
}

async fn measure(
    args: &BenchArgs,
    target: &Target,
    clients: Clients,
    reference: Option<Reference>,
) -> anyhow::Result<Report> {
    let Clients { customers, manager } = clients;
    // The watchers are open before the first order, so they see its every change.
    let (lag, watchers) = if args.lag_sample > 0 {
        let lag = Arc::new(Lag::new(args.lag_sample, &customers, args.story));
        let watchers = Watchers::open(&lag, &customers, args.request_timeout).await?;
        (Some(lag), Some(watchers))
    } else {
        (None, None)
    };

    let meter = cost::Meter::new(target.system()).await;
    let before = meter.snapshot().await;
    let start = Instant::now();
    let recorder = Recorder::new(start);
    let mut sampler = Sampler::new(target.system(), start).await;
    // Before the first order: each process as it stands once started.
    let idle = sampler.sample().await;
    let backlog_sampled = target.system().is_some();
    let progress = Arc::new(Progress::new(args.duration));

    let (stop, stopped) = oneshot::channel();
    let sampling = tokio::spawn(sample_every_second(
        sampler,
        recorder.clone(),
        lag.clone(),
        progress.clone(),
        stopped,
    ));

    let bounds = Bounds {
        deadline: start + args.duration,
        max_orders: args.max_orders.unwrap_or(u64::MAX),
        max_in_flight: args.max_in_flight.clamp(1, u32::MAX as usize),
    };
    let load = Arc::new(Load {
        recorder: recorder.clone(),
        customers,
        story: args.story,
        lag: lag.clone(),
        manager,
        request_timeout: args.request_timeout,
    });
    tokio::select! {
        () = load::run(args.mode(), load, bounds) => {}
        _ = tokio::signal::ctrl_c() => progress.note("interrupted; reporting what was measured"),
    }
    let load_seconds = start.elapsed().as_secs_f64();
    let _ = stop.send(());
    let (mut sampler, mut samples) = sampling.await?;
    progress.finish();

    let drain_start = Instant::now();
    let (last, waited) = if backlog_sampled {
        eprintln!(
            "bench: load done; waiting up to {:?} for queues and outboxes to empty",
            args.drain_timeout
        );
        sample::wait_consumed(&mut sampler, args.drain_timeout).await
    } else {
        (sampler.sample().await, Duration::ZERO)
    };
    let sampler_queries = sampler.queries;
    sampler.close().await;
    samples.push(last.clone());
    // The last events may still be on their way from my page to the streams.
    let lag_report = match (&lag, watchers) {
        (Some(lag), Some(watchers)) => {
            lag.wait_settled(drain_start + args.drain_timeout).await;
            let report = lag.report(watchers.len());
            watchers.close().await;
            Some(report)
        }
        _ => None,
    };

    // The cost window closes once all was consumed; PostgreSQL backends report their
    // commit counts when idle, at most once a second.
    if backlog_sampled {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let after = meter.snapshot().await;
    let window = start.elapsed();
    let load_samples: Vec<_> = samples
        .iter()
        .filter(|s| s.t <= load_seconds + 0.5)
        .cloned()
        .collect();
    let report = recorder.with(|r| {
        let answered: u64 = r.outcomes.values().sum();
        let paid = r.outcomes.get("PAID").copied().unwrap_or(0);
        let latency_ms = report::Percentiles::of(&r.latency);
        let answered_per_second = answered as f64 / load_seconds;
        let rpcs = report::rpcs(r);
        Report {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            date: chrono::Local::now().to_rfc3339(),
            machine: report::Machine::this(),
            system: match args.spawn {
                Some(s) => format!("spawned ({s:?})").to_lowercase(),
                None => format!(
                    "running services (order {}, mypage {})",
                    args.target_order.map(|a| a.to_string()).unwrap_or_default(),
                    args.target_mypage
                        .map(|a| a.to_string())
                        .unwrap_or_default()
                ),
            },
            mode: args.mode(),
            story: args.story,
            load_seconds,
            answered,
            paid,
            answered_per_second,
            paid_per_second: paid as f64 / load_seconds,
            ratios: reference
                .as_ref()
                .map(|r| report::Ratios::of(r, &latency_ms, answered_per_second)),
            reference,
            latency_ms,
            outcomes: r.outcomes.clone(),
            errors_total: r.errors.values().sum(),
            errors: r.errors.clone(),
            story_errors_total: rpcs
                .iter()
                .filter(|(name, _)| name.as_str() != "PlaceOrder")
                .map(|(_, c)| c.errors.values().sum::<u64>())
                .sum(),
            rpcs,
            lag: lag_report,
            timeline: report::timeline(r, &samples),
            processes: report::processes(&idle, &samples),
            backlog_sampled,
            max_queue_depth: samples.iter().map(|s| s.queue_depth()).max().unwrap_or(0),
            max_outbox_backlog: samples
                .iter()
                .map(|s| s.outbox_backlog())
                .max()
                .unwrap_or(0),
            queue_depth_grows: sample::queue_depth_grows(&load_samples),
            drain: report::Drain {
                consumed: !backlog_sampled || last.all_consumed(),
                waited_seconds: waited.as_secs_f64(),
                queue_depth_left: last.queue_depth(),
                dead_letters: last.dead_letters(),
                outbox_left: last.outbox_backlog(),
            },
            audit: None,
            cost: backlog_sampled
                .then(|| meter.cost(&before, &after, paid, window, sampler_queries))
                .flatten(),
            samples,
        }
    });
    let mut report = report;
    if let Some(system) = target.system() {
        // After the drain, so a clean audit means every event arrived where it should.
        report.audit = match e2e::audit::audit(system).await {
            Ok(a) => Some(a.into()),
            Err(e) => {
                eprintln!("bench: the audit could not read the databases: {e:#}");
                None
            }
        };
    }
    Ok(report)
}

/// Samples once a second until told to stop, showing the progress each time;
/// returns the sampler and its samples.
async fn sample_every_second(
    mut sampler: Sampler,
    recorder: Arc<Recorder>,
    lag: Option<Arc<Lag>>,
    progress: Arc<Progress>,
    mut stop: oneshot::Receiver<()>,
) -> (Sampler, Vec<sample::Sample>) {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return (sampler, samples),
        }
        let s = sampler.sample().await;
        let mut figures = recorder.with(|r| {
            let answered = r.latency.len();
            let errors: u64 = r.errors.values().sum();
            // The second that just closed, not the one still filling.
            let last = r.seconds.len().checked_sub(2).and_then(|i| r.seconds.get(i));
            let (rate, p50, p99) = last.map_or((0, 0.0, 0.0), |sec| {
                let p = report::Percentiles::of(&sec.latency);
                (sec.latency.len(), p.p50, p.p99)
            });
            format!(
                "answered {answered} ({rate}/s) p50 {p50:.1} ms p99 {p99:.1} ms errors {errors} in-flight {} queue {} outbox {}",
                recorder.in_flight(),
                s.queue_depth(),
                s.outbox_backlog()
            )
        });
        if let Some(lag) = &lag {
            let (measured, p50) = lag.progress();
            figures.push_str(&format!(" lag {measured} p50 {p50:.1} ms"));
        }
        progress.update(s.t, &figures);
        samples.push(s);
    }
}
