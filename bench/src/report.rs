//! The report of one run, built from the recorder and the samples, written as JSON
//! (everything, for tools) and Markdown (the tables a person reads).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::load::Recorded;
use crate::sample::Sample;
use crate::settings::Mode;

/// The whole report.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub command: String,
    pub date: String,
    pub machine: Machine,
    pub system: String,
    pub mode: Mode,
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
    pub errors_total: u64,
    pub timeline: Vec<TimelineRow>,
    pub processes: BTreeMap<String, ProcessSummary>,
    /// Whether queue depths and outboxes were sampled (a spawned system only).
    pub backlog_sampled: bool,
    pub max_queue_depth: u64,
    pub max_outbox_backlog: u64,
    pub queue_depth_grows: bool,
    pub drain: Drain,
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
pub fn processes(samples: &[Sample]) -> BTreeMap<String, ProcessSummary> {
    let mut out: BTreeMap<String, (ProcessSummary, f64, u32)> = BTreeMap::new();
    // The first sample has no CPU interval behind it.
    for s in samples.iter().skip(1) {
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
    /// Writes `report.json` and `report.md` into `dir`.
    ///
    /// # Errors
    /// When the directory or a file cannot be written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = serde_json::to_string_pretty(self).context("serialising the report")?;
        std::fs::write(dir.join("report.json"), json).context("writing report.json")?;
        std::fs::write(dir.join("report.md"), self.markdown()).context("writing report.md")?;
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
        let _ = writeln!(
            m,
            "| load | {mode}, {:.1} s, {} |",
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
        let _ = writeln!(m, "## Outcomes\n\n| outcome | count |\n|---|---|");
        for (k, v) in &self.outcomes {
            let _ = writeln!(m, "| {k} | {v} |");
        }
        for (k, v) in &self.errors {
            let _ = writeln!(m, "| error {k} | {v} |");
        }
        let _ = writeln!(
            m,
            "\n## Processes\n\n| process | CPU % peak | CPU % mean | RSS MiB peak | RSS MiB end |\n|---|---|---|---|---|"
        );
        for (name, p) in &self.processes {
            let _ = writeln!(
                m,
                "| {name} | {:.0} | {:.0} | {:.1} | {:.1} |",
                p.cpu_percent_peak, p.cpu_percent_mean, p.rss_mib_peak, p.rss_mib_end
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
