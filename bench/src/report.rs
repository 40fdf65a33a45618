//! The report of one run, built from the recorder and the samples, written as JSON
//! (everything, for tools), Markdown (the tables a person reads) and an SVG chart
//! of the timeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::lag::LagReport;
use crate::load::Recorded;
use crate::reference::Reference;
use crate::sample::Sample;
use crate::settings::{Mode, Story};

/// The whole report.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub command: String,
    pub date: String,
    pub machine: Machine,
    pub system: String,
    pub mode: Mode,
    pub story: Story,
    /// Seconds the load ran (first send to last answer).
    pub load_seconds: f64,
    /// Calls answered with an order, whatever its status.
    pub answered: u64,
    pub paid: u64,
    pub answered_per_second: f64,
    pub paid_per_second: f64,
    pub latency_ms: Percentiles,
    pub outcomes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// PlaceOrder errors.
    pub errors_total: u64,
    /// Errors of the story's other RPCs (the mixed story's).
    pub story_errors_total: u64,
    /// Every RPC the story called, PlaceOrder included.
    pub rpcs: BTreeMap<String, RpcSummary>,
    /// The event lag through WatchMyPage, unless `--lag-sample 0`.
    pub lag: Option<LagReport>,
    /// The reference step's figures, unless `--no-reference`.
    pub reference: Option<Reference>,
    /// The run's figures over the reference's.
    pub ratios: Option<Ratios>,
    pub timeline: Vec<TimelineRow>,
    pub processes: BTreeMap<String, ProcessSummary>,
    /// Whether queue depths and outboxes were sampled (a spawned system only).
    pub backlog_sampled: bool,
    pub max_queue_depth: u64,
    pub max_outbox_backlog: u64,
    pub queue_depth_grows: bool,
    pub drain: Drain,
    /// The audit of the four databases against each other after the drain (spawned
    /// systems only): lost events, double charges, money kept without a booking.
    pub audit: Option<AuditSummary>,
    /// CPU and commits per PAID order, and the throughput they bound (spawned
    /// systems only).
    pub cost: Option<crate::cost::Cost>,
    pub samples: Vec<Sample>,
}

/// The machine the run was on.
#[derive(Debug, serde::Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_mib: u64,
    pub cpu: String,
}

impl Machine {
    pub fn this() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_mib: memory_kib / 1024,
            cpu,
        }
    }
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Default, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One RPC over the run.
#[derive(Debug, serde::Serialize)]
pub struct RpcSummary {
    pub latency_ms: Percentiles,
    /// Answers by what they meant (`ok`, or an expected answer such as `not yet on
    /// my page`).
    pub outcomes: BTreeMap<String, u64>,
    /// Errors by gRPC code (or `timeout`).
    pub errors: BTreeMap<String, u64>,
}

/// The run's figures over what the machine allows at best.
#[derive(Debug, serde::Serialize)]
pub struct Ratios {
    /// PlaceOrder p50 over a bare gRPC round trip's p50: how many "empty calls" one
    /// order costs in latency.
    pub placeorder_p50_over_echo_p50: Option<f64>,
    /// Orders answered per second over single-row PostgreSQL commits per second on
    /// the reference's connection count: the share of the machine's commit rate the
    /// system turns into orders.
    pub orders_per_pg_commit: Option<f64>,
}

impl Ratios {
    pub fn of(reference: &Reference, latency: &Percentiles, orders_per_second: f64) -> Self {
        let ratio = |a: f64, b: f64| (a > 0.0 && b > 0.0).then(|| a / b);
        Ratios {
            placeorder_p50_over_echo_p50: ratio(latency.p50, reference.echo_latency_ms.p50),
            orders_per_pg_commit: reference
                .pg
                .as_ref()
                .and_then(|pg| ratio(orders_per_second, pg.commits_per_second_n)),
        }
    }
}

/// Each RPC's figures.
pub fn rpcs(recorded: &Recorded) -> BTreeMap<String, RpcSummary> {
    recorded
        .rpcs
        .iter()
        .map(|(name, calls)| {
            let summary = RpcSummary {
                latency_ms: Percentiles::of(&calls.latency),
                outcomes: calls.outcomes.clone(),
                errors: calls.errors.clone(),
            };
            ((*name).to_owned(), summary)
        })
        .collect()
}

/// The cost per order and the bounds it sets, in one line.
pub fn cost_line(c: &crate::cost::Cost) -> String {
    let parts: Vec<String> = c
        .cpu_ms_by_part
        .iter()
        .filter(|(_, ms)| **ms >= 0.005)
        .map(|(name, ms)| format!("{name} {ms:.2}"))
        .collect();
    let mut line = format!(
        "CPU {:.2} ms ({}) over {:.1} s",
        c.cpu_ms_per_order,
        parts.join(", "),
        c.window_seconds
    );
    if let Some(bound) = c.orders_per_second_cpu_bound {
        let _ = write!(
            line,
            "; {:.0} cores at this cost carry at most {bound:.0} orders/s",
            c.cores
        );
    }
    if let Some(commits) = c.pg_commits_per_order {
        let _ = write!(line, "; PostgreSQL commits {commits:.1}");
    }
    line
}

/// The reference step in one line.
pub fn reference_line(r: &Reference) -> String {
    let pg = match (&r.pg, &r.pg_missing) {
        (Some(pg), _) => format!(
            "PostgreSQL commits p50 {:.2} ms, {:.0}/s on 1 connection, {:.0}/s on {}",
            pg.commit_latency_ms.p50,
            pg.commits_per_second_1,
            pg.commits_per_second_n,
            pg.connections
        ),
        (None, why) => format!(
            "PostgreSQL commits not measured ({})",
            why.as_deref().unwrap_or("?")
        ),
    };
    format!(
        "reference: gRPC echo p50 {:.3} ms, {:.0}/s at concurrency {}; {pg}",
        r.echo_latency_ms.p50, r.echo_per_second, r.echo_concurrency
    )
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}"))
}

/// One second of the run.
#[derive(Debug, serde::Serialize)]
pub struct TimelineRow {
    pub second: usize,
    /// Calls answered in this second (errors included).
    pub completed: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_queue_depth: u64,
    pub max_outbox_backlog: u64,
}

/// CPU and memory of one process over the run.
#[derive(Debug, Default, serde::Serialize)]
pub struct ProcessSummary {
    /// Before the first order: what the process holds once started.
    pub rss_mib_start: f64,
    pub cpu_percent_peak: f64,
    pub cpu_percent_mean: f64,
    pub rss_mib_peak: f64,
    pub rss_mib_end: f64,
}

/// The wait for everything to be consumed after the load.
#[derive(Debug, serde::Serialize)]
pub struct Drain {
    pub consumed: bool,
    pub waited_seconds: f64,
    pub queue_depth_left: u64,
    pub dead_letters: u64,
    pub outbox_left: u64,
}

/// What `e2e::audit` found after the run; every count but `orders` must be zero.
#[derive(Debug, serde::Serialize)]
pub struct AuditSummary {
    pub clean: bool,
    #[serde(flatten)]
    pub found: e2e::audit::Audit,
}

impl From<e2e::audit::Audit> for AuditSummary {
    fn from(found: e2e::audit::Audit) -> Self {
        Self {
            clean: found.clean(),
            found,
        }
    }
}

/// Builds the report's derived figures.
pub fn timeline(recorded: &Recorded, samples: &[Sample]) -> Vec<TimelineRow> {
    recorded
        .seconds
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // A sample taken at t belongs to the second it closes.
            let in_second = samples
                .iter()
                .filter(|x| x.t > i as f64 && x.t <= (i + 1) as f64 + 0.05);
            let (q, o) = in_second.fold((0, 0), |(q, o), x| {
                (q.max(x.queue_depth()), o.max(x.outbox_backlog()))
            });
            let p = Percentiles::of(&s.latency);
            TimelineRow {
                second: i,
                completed: s.latency.len(),
                errors: s.errors,
                p50_ms: p.p50,
                p99_ms: p.p99,
                max_queue_depth: q,
                max_outbox_backlog: o,
            }
        })
        .collect()
}

/// Peak and mean CPU, peak and last RSS of each process over `samples`.
pub fn processes(idle: &Sample, samples: &[Sample]) -> BTreeMap<String, ProcessSummary> {
    let mut out: BTreeMap<String, (ProcessSummary, f64, u32)> = BTreeMap::new();
    for (name, p) in &idle.processes {
        out.entry(name.clone()).or_default().0.rss_mib_start = p.rss_kib as f64 / 1024.0;
    }
    // `idle` set every CPU baseline, so each sample has an interval behind it.
    for s in samples {
        for (name, p) in &s.processes {
            let (sum, total, n) = out.entry(name.clone()).or_default();
            let rss = p.rss_kib as f64 / 1024.0;
            sum.cpu_percent_peak = sum.cpu_percent_peak.max(p.cpu_percent);
            sum.rss_mib_peak = sum.rss_mib_peak.max(rss);
            sum.rss_mib_end = rss;
            *total += p.cpu_percent;
            *n += 1;
        }
    }
    out.into_iter()
        .map(|(name, (mut s, total, n))| {
            s.cpu_percent_mean = if n > 0 { total / f64::from(n) } else { 0.0 };
            (name, s)
        })
        .collect()
}

impl Report {
    /// Writes `report.json`, `report.md` and `chart.svg` into `dir`.
    ///
    /// # Errors
    /// When the directory or a file cannot be written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = serde_json::to_string_pretty(self).context("serialising the report")?;
        std::fs::write(dir.join("report.json"), json).context("writing report.json")?;
        std::fs::write(dir.join("report.md"), self.markdown()).context("writing report.md")?;
        crate::chart::write(&dir.join("chart.svg"), &self.timeline)?;
        Ok(())
    }

    /// The headline tables.
    pub fn summary(&self) -> String {
        let mut m = String::new();
        let mode = match self.mode {
            Mode::Closed { concurrency } => format!("closed loop, concurrency {concurrency}"),
            Mode::Open { rate } => format!("open loop, {rate} orders/s scheduled"),
        };
        let l = &self.latency_ms;
        let _ = writeln!(m, "| figure | value |\n|---|---|");
        let story = match self.story {
            Story::Place => "PlaceOrder",
            Story::Mixed => "mixed story",
        };
        let _ = writeln!(
            m,
            "| load | {mode}, {story}, {:.1} s, {} |",
            self.load_seconds, self.system
        );
        let _ = writeln!(
            m,
            "| answered | {} ({:.1}/s), PAID {} ({:.1}/s) |",
            self.answered, self.answered_per_second, self.paid, self.paid_per_second
        );
        let _ = writeln!(
            m,
            "| latency ms | p50 {:.2} · p90 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} |",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(m, "| errors | {} ({errors}) |", self.errors_total);
        if self.story == Story::Mixed {
            let _ = writeln!(
                m,
                "| other RPCs | {} |",
                self.rpcs
                    .iter()
                    .filter(|(name, _)| name.as_str() != "PlaceOrder")
                    .map(|(name, c)| format!(
                        "{name} {} p50 {:.2} ms, {} errors",
                        c.latency_ms.count,
                        c.latency_ms.p50,
                        c.errors.values().sum::<u64>()
                    ))
                    .collect::<Vec<_>>()
                    .join(" · ")
            );
        }
        if let Some(lag) = &self.lag {
            let l = &lag.latency_ms;
            let _ = writeln!(
                m,
                "| event lag ms (WatchMyPage) | p50 {:.2} · p90 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} ({} of {} samples reached, {} NEVER) |",
                l.p50, l.p90, l.p99, l.p999, l.max, lag.reached, lag.samples, lag.never_reached
            );
        }
        if let Some(r) = &self.reference {
            let _ = writeln!(m, "| {} |", reference_line(r).replacen(": ", " | ", 1));
        }
        if let Some(r) = &self.ratios {
            let _ = writeln!(
                m,
                "| ratios | PlaceOrder p50 / echo p50 {} · orders/s per PG commit/s {} |",
                ratio(r.placeorder_p50_over_echo_p50),
                ratio(r.orders_per_pg_commit)
            );
        }
        if self.backlog_sampled {
            let _ = writeln!(
                m,
                "| backlog | max queue depth {}, max outbox {}, queue depth {} |",
                self.max_queue_depth,
                self.max_outbox_backlog,
                if self.queue_depth_grows {
                    "GROWS"
                } else {
                    "steady"
                }
            );
            let d = &self.drain;
            let _ = writeln!(
                m,
                "| consumed at the end | {} after {:.1} s (queues {}, dead letters {}, outbox {}) |",
                if d.consumed { "yes" } else { "NO" },
                d.waited_seconds,
                d.queue_depth_left,
                d.dead_letters,
                d.outbox_left
            );
        }
        if let Some(c) = &self.cost {
            let _ = writeln!(m, "| cost per PAID order | {} |", cost_line(c));
        }
        if let Some(a) = &self.audit {
            let _ = writeln!(
                m,
                "| audit | {}: orders {}, lost events {}, double charges {}, kept charges {}, stuck orders {}, my page mismatches {} |",
                if a.clean { "clean" } else { "NOT CLEAN" },
                a.found.orders,
                a.found.lost_events,
                a.found.double_charges,
                a.found.kept_charges,
                a.found.stuck_orders,
                a.found.mypage_mismatches
            );
        }
        m
    }

    fn markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# bench report\n");
        let _ = writeln!(m, "- command: `{}`", self.command);
        let _ = writeln!(m, "- date: {}", self.date);
        let _ = writeln!(
            m,
            "- machine: {} cores, {} MiB, {}\n",
            self.machine.cores, self.machine.memory_mib, self.machine.cpu
        );
        let _ = writeln!(m, "## Summary\n\n{}", self.summary());
        let _ = writeln!(
            m,
            "![throughput, latency and backlog over time](chart.svg)\n\n[chart.svg](chart.svg)\n"
        );
        let l = &self.latency_ms;
        let _ = writeln!(m, "## PlaceOrder latency (ms, {} calls)\n", l.count);
        let _ = writeln!(
            m,
            "| p50 | p90 | p99 | p99.9 | max | mean |\n|---|---|---|---|---|---|"
        );
        let _ = writeln!(
            m,
            "| {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        if let Some(lag) = &self.lag {
            let l = &lag.latency_ms;
            let _ = writeln!(
                m,
                "## Event lag (ms): PlaceOrder answer → final my page entry on WatchMyPage\n\n\
                 1 in {} customers watched ({} streams, {} restarts); {} sampled orders, {} reached, {} never reached.\n",
                lag.sample_every,
                lag.watchers,
                lag.watch_restarts,
                lag.samples,
                lag.reached,
                lag.never_reached
            );
            let _ = writeln!(
                m,
                "| p50 | p90 | p99 | p99.9 | max | mean |\n|---|---|---|---|---|---|"
            );
            let _ = writeln!(
                m,
                "| {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                l.p50, l.p90, l.p99, l.p999, l.max, l.mean
            );
        }
        if let Some(r) = &self.reference {
            let _ = writeln!(
                m,
                "## Reference ({:.1} s per measurement)\n\n{}\n",
                r.seconds_each,
                reference_line(r)
            );
            if let Some(ratios) = &self.ratios {
                let _ = writeln!(
                    m,
                    "- PlaceOrder p50 / echo p50: {}\n- orders/s per PostgreSQL commit/s: {}\n",
                    ratio(ratios.placeorder_p50_over_echo_p50),
                    ratio(ratios.orders_per_pg_commit)
                );
            }
        }
        let _ = writeln!(
            m,
            "## RPCs (ms, from each call's send)\n\n| RPC | calls | p50 | p90 | p99 | p99.9 | max | outcomes | errors |\n|---|---|---|---|---|---|---|---|---|"
        );
        let counts = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        for (name, c) in &self.rpcs {
            let l = &c.latency_ms;
            let _ = writeln!(
                m,
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
                l.count,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                counts(&c.outcomes),
                counts(&c.errors)
            );
        }
        let _ = writeln!(m, "\n## Outcomes\n\n| outcome | count |\n|---|---|");
        for (k, v) in &self.outcomes {
            let _ = writeln!(m, "| {k} | {v} |");
        }
        for (k, v) in &self.errors {
            let _ = writeln!(m, "| error {k} | {v} |");
        }
        let _ = writeln!(
            m,
            "\n## Processes\n\n| process | CPU % peak | CPU % mean | RSS MiB at start | RSS MiB peak | RSS MiB end |\n|---|---|---|---|---|---|"
        );
        for (name, p) in &self.processes {
            let _ = writeln!(
                m,
                "| {name} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} |",
                p.cpu_percent_peak,
                p.cpu_percent_mean,
                p.rss_mib_start,
                p.rss_mib_peak,
                p.rss_mib_end
            );
        }
        let _ = writeln!(
            m,
            "\n## Timeline\n\n| s | answered | errors | p50 ms | p99 ms | max queue depth | max outbox |\n|---|---|---|---|---|---|---|"
        );
        for r in &self.timeline {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {:.2} | {:.2} | {} | {} |",
                r.second,
                r.completed,
                r.errors,
                r.p50_ms,
                r.p99_ms,
                r.max_queue_depth,
                r.max_outbox_backlog
            );
        }
        m
    }
}
