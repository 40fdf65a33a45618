//! What the system carries besides answers, sampled once a second: the depth of each
//! RabbitMQ queue of the run's topology (a passive declare reports its message count),
//! each service's outbox backlog (`outbox_events` rows not yet published), and each
//! service process's CPU share and resident memory from `/proc`. A backlog that grows
//! through the run means the system falls behind even if every call is answered.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Svc, System};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use platform::amqp::{CONSUMERS, Topology};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

/// Linux reports process times in clock ticks of `USER_HZ`, which is 100 on every
/// architecture it exports to user space.
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

/// One sample.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    /// Messages ready in each queue (dead-letter queues included, named `….dlq`).
    pub queues: BTreeMap<String, u64>,
    /// Rows in each service's outbox.
    pub outbox: BTreeMap<String, u64>,
    /// CPU share (100 = one core) and RSS of each process, the bench's own included.
    pub processes: BTreeMap<String, ProcessSample>,
}

impl Sample {
    /// Messages waiting in the consumers' queues, dead-letter queues excluded.
    pub fn queue_depth(&self) -> u64 {
        self.queues
            .iter()
            .filter(|(name, _)| !name.ends_with(".dlq"))
            .map(|(_, n)| n)
            .sum()
    }

    /// Messages in dead-letter queues.
    pub fn dead_letters(&self) -> u64 {
        self.queues
            .iter()
            .filter(|(name, _)| name.ends_with(".dlq"))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn outbox_backlog(&self) -> u64 {
        self.outbox.values().sum()
    }

    /// Nothing waits anywhere: queues, dead-letter queues and outboxes all empty.
    pub fn all_consumed(&self) -> bool {
        self.queue_depth() == 0 && self.dead_letters() == 0 && self.outbox_backlog() == 0
    }
}

/// CPU and memory of one process.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ProcessSample {
    pub cpu_percent: f64,
    pub rss_kib: u64,
}

/// Reads the samples; holds its broker channel and database connections for the run.
pub struct Sampler {
    started: tokio::time::Instant,
    broker: Option<(Connection, Channel, Topology)>,
    databases: Vec<(Svc, DatabaseConnection)>,
    processes: Vec<(String, u32)>,
    /// CPU ticks at the previous sample, to turn totals into a share.
    last_ticks: BTreeMap<String, (u64, tokio::time::Instant)>,
    /// Outbox counts asked so far: each is a transaction in a service's database
    /// that the cost per order must not count.
    pub queries: u64,
}

impl Sampler {
    /// A sampler of a spawned system's queues, outboxes and processes; for running
    /// services (no system) only the bench's own process.
    pub async fn new(system: Option<&System>, started: tokio::time::Instant) -> Self {
        let mut sampler = Sampler {
            started,
            broker: None,
            databases: Vec::new(),
            processes: vec![("bench".to_owned(), std::process::id())],
            last_ticks: BTreeMap::new(),
            queries: 0,
        };
        if let Some(system) = system {
            match Connection::connect(&testkit::amqp_url(), ConnectionProperties::default()).await {
                Ok(conn) => match conn.create_channel().await {
                    Ok(ch) => sampler.broker = Some((conn, ch, Topology::new(system.exchange()))),
                    Err(e) => eprintln!("bench: no queue depths (channel: {e})"),
                },
                Err(e) => eprintln!("bench: no queue depths (broker: {e})"),
            }
            for svc in Svc::ALL {
                sampler.databases.push((svc, system.db(svc).await));
                if let Some(pid) = system.pid(svc) {
                    sampler.processes.push((svc.binary().to_owned(), pid));
                }
            }
        }
        sampler
    }

    /// Takes one sample now.
    pub async fn sample(&mut self) -> Sample {
        let mut sample = Sample {
            t: self.started.elapsed().as_secs_f64(),
            ..Sample::default()
        };
        self.sample_queues(&mut sample).await;
        for (svc, db) in &self.databases {
            self.queries += 1;
            let count = db
                .query_one_raw(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT count(*) FROM outbox_events",
                ))
                .await
                .ok()
                .flatten()
                .and_then(|row| row.try_get_by_index::<i64>(0).ok());
            if let Some(n) = count {
                sample.outbox.insert(svc.binary().to_owned(), n as u64);
            }
        }
        let now = tokio::time::Instant::now();
        for (name, pid) in &self.processes {
            let (Some(ticks), Some(rss_kib)) = (cpu_ticks(*pid), rss_kib(*pid)) else {
                continue;
            };
            let cpu_percent = match self.last_ticks.get(name) {
                Some((before, at)) => {
                    let secs = now.duration_since(*at).as_secs_f64().max(1e-3);
                    (ticks.saturating_sub(*before) as f64 / TICKS_PER_SECOND) / secs * 100.0
                }
                None => 0.0,
            };
            self.last_ticks.insert(name.clone(), (ticks, now));
            sample.processes.insert(
                name.clone(),
                ProcessSample {
                    cpu_percent,
                    rss_kib,
                },
            );
        }
        sample
    }

    async fn sample_queues(&mut self, sample: &mut Sample) {
        let Some((conn, ch, topology)) = &mut self.broker else {
            return;
        };
        for spec in CONSUMERS {
            for queue in [
                topology.queue(spec.name),
                topology.dead_letter_queue(spec.name),
            ] {
                let declared = ch
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await;
                match declared {
                    Ok(q) => {
                        sample.queues.insert(queue, u64::from(q.message_count()));
                    }
                    Err(_) => {
                        // A failed passive declare closes the channel; the next
                        // queue needs a new one.
                        if let Ok(fresh) = conn.create_channel().await {
                            *ch = fresh;
                        }
                    }
                }
            }
        }
    }

    /// Closes the broker and database connections.
    pub async fn close(self) {
        if let Some((conn, _, _)) = self.broker {
            let _ = conn.close(200, "bench done".into()).await;
        }
        for (_, db) in self.databases {
            let _ = db.close().await;
        }
    }
}

/// utime + stime of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; the fields after it start
    // behind its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of a process (`VmRSS` of `/proc/<pid>/status`), KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Whether the total queue depth grows through the load: the least-squares slope of
/// depth over time, projected over the run, exceeds both 100 messages and the
/// run's mean depth. A steady system shows a flat (if noisy) line; one falling
/// behind shows a ramp.
pub fn queue_depth_grows(samples: &[Sample]) -> bool {
    if samples.len() < 3 {
        return false;
    }
    let n = samples.len() as f64;
    let xs: Vec<f64> = samples.iter().map(|s| s.t).collect();
    let ys: Vec<f64> = samples.iter().map(|s| s.queue_depth() as f64).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        return false;
    }
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let span = xs[xs.len() - 1] - xs[0];
    let growth = sxy / sxx * span;
    growth > 100.0 && growth > my
}

/// Waits up to `timeout` until nothing waits anywhere; returns the last sample and
/// how long it took.
pub async fn wait_consumed(sampler: &mut Sampler, timeout: Duration) -> (Sample, Duration) {
    let start = tokio::time::Instant::now();
    loop {
        let sample = sampler.sample().await;
        if sample.all_consumed() || start.elapsed() >= timeout {
            return (sample, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depths(values: &[u64]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, d)| Sample {
                t: i as f64,
                queues: [("x.mypage".to_owned(), *d)].into(),
                ..Sample::default()
            })
            .collect()
    }

    #[test]
    fn a_ramp_of_queue_depth_grows() {
        assert!(queue_depth_grows(&depths(&[
            0, 500, 1000, 1500, 2000, 2500
        ])));
    }

    #[test]
    fn a_noisy_flat_queue_depth_does_not_grow() {
        assert!(!queue_depth_grows(&depths(&[10, 40, 5, 30, 12, 35, 8])));
    }

    #[test]
    fn own_process_figures_are_readable() {
        assert!(cpu_ticks(std::process::id()).is_some());
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
