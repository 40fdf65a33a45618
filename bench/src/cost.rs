//! What one order costs the machine, measured from the load's start until everything
//! is consumed (so the events' downstream work counts too): CPU time of the whole
//! machine and of each part of the system (PostgreSQL backends, RabbitMQ, the four
//! services, the bench itself) from `/proc`, and, on PostgreSQL, the transactions the
//! run's four databases committed (`pg_stat_database`). Divided into the machine's
//! capacity, these are the bounds a throughput target runs into: cores over CPU per
//! order, and the reference commit rate over commits per order.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Svc, System};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::sample::{TICKS_PER_SECOND, cpu_ticks};

/// Process names (`/proc/<pid>/comm`) of the shared servers, by the part they count
/// towards.
const SERVERS: &[(&str, &str)] = &[
    ("postgres", "PostgreSQL"),
    ("beam.smp", "RabbitMQ"),
    ("erl_child_setup", "RabbitMQ"),
    ("epmd", "RabbitMQ"),
    ("inet_gethost", "RabbitMQ"),
];

/// What the machine had done at one moment.
pub struct Snapshot {
    /// Busy and total CPU ticks of all cores (`/proc/stat`).
    busy: u64,
    total: u64,
    /// CPU ticks by part of the system.
    parts: BTreeMap<String, u64>,
    /// Transactions committed in the run's databases, when they are on PostgreSQL.
    commits: Option<i64>,
}

/// Takes snapshots of one run.
pub struct Meter {
    /// Named processes of the run: the services and the bench.
    processes: Vec<(String, u32)>,
    /// The PostgreSQL maintenance database and the names of the run's databases.
    pg: Option<(DatabaseConnection, Vec<String>)>,
}

impl Meter {
    pub async fn new(system: Option<&System>) -> Self {
        let mut processes = vec![("bench".to_owned(), std::process::id())];
        let mut pg = None;
        if let Some(system) = system {
            for svc in Svc::ALL {
                if let Some(pid) = system.pid(svc) {
                    processes.push((svc.binary().to_owned(), pid));
                }
            }
            if !system.on_sqlite() {
                let names = Svc::ALL.iter().map(|s| system.database_name(*s)).collect();
                let url = format!("{}/postgres", testkit::postgres_server_url());
                match sea_orm::Database::connect(url).await {
                    Ok(admin) => pg = Some((admin, names)),
                    Err(e) => eprintln!("bench: no commit counts ({e})"),
                }
            }
        }
        Self { processes, pg }
    }

    pub async fn snapshot(&self) -> Snapshot {
        let (busy, total) = machine_ticks().unwrap_or((0, 0));
        let mut parts: BTreeMap<String, u64> = BTreeMap::new();
        for (name, pid) in &self.processes {
            *parts.entry(name.clone()).or_default() += cpu_ticks(*pid).unwrap_or(0);
        }
        for (pid, comm) in all_processes() {
            if let Some((_, part)) = SERVERS.iter().find(|(c, _)| *c == comm) {
                *parts.entry((*part).to_owned()).or_default() += cpu_ticks(pid).unwrap_or(0);
            }
        }
        Snapshot {
            busy,
            total,
            parts,
            commits: self.commits().await,
        }
    }

    async fn commits(&self) -> Option<i64> {
        let (admin, names) = self.pg.as_ref()?;
        let row = admin
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT coalesce(sum(xact_commit), 0)::bigint AS n \
                 FROM pg_stat_database WHERE datname = ANY($1)",
                [names.clone().into()],
            ))
            .await
            .ok()??;
        row.try_get("", "n").ok()
    }

    /// The cost per PAID order between two snapshots. PostgreSQL backends report
    /// their counts when they go idle, at most once a second, so the end snapshot is
    /// taken after a pause once the system is quiet.
    pub fn cost(
        &self,
        start: &Snapshot,
        end: &Snapshot,
        orders: u64,
        window: Duration,
        sampler_queries: u64,
    ) -> Option<Cost> {
        if orders == 0 {
            return None;
        }
        let per_order_ms = |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1000.0 / orders as f64;
        let cores = end.total.saturating_sub(start.total) as f64
            / TICKS_PER_SECOND
            / window.as_secs_f64().max(1e-3);
        let busy = end.busy.saturating_sub(start.busy);
        let mut parts: BTreeMap<String, f64> = end
            .parts
            .iter()
            .map(|(name, t)| {
                let before = start.parts.get(name).copied().unwrap_or(0);
                (name.clone(), per_order_ms(t.saturating_sub(before)))
            })
            .collect();
        let named: f64 = parts.values().sum();
        let cpu_ms = per_order_ms(busy);
        // Processes that ended inside the window and the kernel's own work.
        parts.insert("other".to_owned(), (cpu_ms - named).max(0.0));
        let commits = match (start.commits, end.commits) {
            // The bench's own outbox counts are commits too; they are not the system's.
            (Some(a), Some(b)) => {
                Some((b - a - sampler_queries as i64).max(0) as f64 / orders as f64)
            }
            _ => None,
        };
        Some(Cost {
            window_seconds: window.as_secs_f64(),
            cores: cores.round(),
            cpu_ms_per_order: cpu_ms,
            cpu_ms_by_part: parts,
            orders_per_second_cpu_bound: (cpu_ms > 0.0).then(|| cores.round() * 1000.0 / cpu_ms),
            pg_commits_per_order: commits,
        })
    }
}

/// The cost per PAID order of a run, from the load's start until all was consumed.
#[derive(Debug, serde::Serialize)]
pub struct Cost {
    pub window_seconds: f64,
    pub cores: f64,
    /// Busy CPU of the whole machine per order.
    pub cpu_ms_per_order: f64,
    /// The same by part: each service, `bench`, `PostgreSQL`, `RabbitMQ`, `other`.
    pub cpu_ms_by_part: BTreeMap<String, f64>,
    /// What the machine could carry if every core were busy at this cost.
    pub orders_per_second_cpu_bound: Option<f64>,
    /// PostgreSQL transactions committed per order in the run's four databases.
    pub pg_commits_per_order: Option<f64>,
}

/// Busy and total ticks of all CPUs, from the first line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Every process's id and command name.
fn all_processes() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        Some((pid, comm.trim().to_owned()))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_and_its_processes_are_readable() {
        let (busy, total) = machine_ticks().expect("/proc/stat");
        assert!(total > busy && busy > 0);
        assert!(
            all_processes()
                .iter()
                .any(|(pid, _)| *pid == std::process::id())
        );
    }

    #[test]
    fn the_cost_divides_by_orders_and_names_what_is_left_other() {
        let parts = |pg: u64, svc: u64| -> BTreeMap<String, u64> {
            [("PostgreSQL".into(), pg), ("order-svc".into(), svc)].into()
        };
        let meter = Meter {
            processes: Vec::new(),
            pg: None,
        };
        let start = Snapshot {
            busy: 1_000,
            total: 5_000,
            parts: parts(100, 100),
            commits: Some(50),
        };
        // 10 s on 2 cores, 1,000 ticks busy: 400 PostgreSQL, 500 order-svc, 100 other.
        let end = Snapshot {
            busy: 2_000,
            total: 7_000,
            parts: parts(500, 600),
            commits: Some(2_060),
        };
        let cost = meter
            .cost(&start, &end, 1_000, Duration::from_secs(10), 10)
            .expect("a cost");
        assert_eq!(cost.cores, 2.0);
        assert!((cost.cpu_ms_per_order - 10.0).abs() < 1e-9);
        assert!((cost.cpu_ms_by_part["PostgreSQL"] - 4.0).abs() < 1e-9);
        assert!((cost.cpu_ms_by_part["order-svc"] - 5.0).abs() < 1e-9);
        assert!((cost.cpu_ms_by_part["other"] - 1.0).abs() < 1e-9);
        assert_eq!(cost.orders_per_second_cpu_bound, Some(200.0));
        assert_eq!(cost.pg_commits_per_order, Some(2.0));
        assert!(
            meter
                .cost(&start, &end, 0, Duration::from_secs(1), 0)
                .is_none()
        );
    }
}
