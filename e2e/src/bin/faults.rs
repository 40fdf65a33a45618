//! The fault harness: a bounded load of orders against the four real binaries, the real
//! RabbitMQ and PostgreSQL, through six faults, each on its own databases and broker
//! names; the public services trust the run's test identity provider and the load
//! calls them with its tokens. After each fault it waits for the system to converge,
//! audits the databases against each other, and prints one line; then a final line:
//!
//! `audit: orders=N lost_events=0 double_charges=0 stuck_orders=0 mypage_mismatches=0 dlq=K converge_ms=T`
//!
//! It exits non-zero if any zero-count is not zero or a fault's own check failed.
//! Run: `cargo build --release --workspace --bins && cargo run --release -p e2e --bin faults`
//! (`FAULT_ORDERS` sets the orders per fault, default 500).

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::audit::{self, Audit};
use e2e::load::{self, LoadStats};
use e2e::{Svc, System};
use prost::Message;
use rand::seq::SliceRandom;
use talentshare_proto::events::{EventEnvelope, PaymentApproved, event_envelope::Payload};
use testkit::TcpProxy;
use tonic_health::pb::health_check_response::ServingStatus;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    BrokerOutage,
    PaymentKilled,
    ConsumersKilled,
    DuplicatesReordered,
    Poison,
    Sigterm,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::BrokerOutage,
        Fault::PaymentKilled,
        Fault::ConsumersKilled,
        Fault::DuplicatesReordered,
        Fault::Poison,
        Fault::Sigterm,
    ];

    fn label(self) -> &'static str {
        match self {
            Fault::BrokerOutage => "a broker-unreachable-5s",
            Fault::PaymentKilled => "b payment-sigkill",
            Fault::ConsumersKilled => "c reservation+mypage-sigkill",
            Fault::DuplicatesReordered => "d duplicated+reordered",
            Fault::Poison => "e poison-messages",
            Fault::Sigterm => "f sigterm-each-service",
        }
    }
}

/// What one fault's run produced.
struct Outcome {
    audit: Audit,
    dlq: usize,
    converge_ms: u128,
    notes: Vec<String>,
    ok: bool,
}

const SERVICE_ENV: &[(&str, &str)] = &[
    ("RECONCILE_AFTER", "4s"),
    ("RECONCILE_INTERVAL", "500ms"),
    ("PAYMENT_TIMEOUT", "2s"),
    ("PAYMENT_BREAKER_COOLDOWN", "1s"),
    ("SHUTDOWN_DELAY", "1s"),
    ("CONSUMER_RETRY_MAX_DELAY", "500ms"),
    ("OUTBOX_POLL_INTERVAL", "200ms"),
    ("RUST_LOG", "warn,platform::host=info"),
];

#[tokio::main]
async fn main() -> ExitCode {
    let per_fault: usize = std::env::var("FAULT_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let started = Instant::now();
    let (mut orders, mut lost, mut double, mut stuck, mut mismatches, mut dlq, mut converge) =
        (0, 0, 0, 0, 0, 0, 0u128);
    let mut all_ok = true;
    // FAULTS=a,c runs only those (by letter); default all.
    let only: Option<String> = std::env::var("FAULTS").ok();
    for fault in Fault::ALL {
        if let Some(only) = &only
            && !only.split(',').any(|l| fault.label().starts_with(l.trim()))
        {
            continue;
        }
        let n = if fault == Fault::Sigterm {
            per_fault * 2
        } else {
            per_fault
        };
        let t = Instant::now();
        let o = run(fault, n).await;
        let a = &o.audit;
        println!(
            "fault {}: orders={} lost_events={} double_charges={} stuck_orders={} mypage_mismatches={} dlq={} converge_ms={} took_s={:.1} statuses={:?}{}",
            fault.label(),
            a.orders,
            a.lost_events,
            a.double_charges,
            a.stuck_orders,
            a.mypage_mismatches,
            o.dlq,
            o.converge_ms,
            t.elapsed().as_secs_f64(),
            sorted(&a.by_status),
            if o.notes.is_empty() {
                String::new()
            } else {
                format!(" notes=[{}]", o.notes.join("; "))
            }
        );
        for p in &a.problems {
            println!("  problem: {p}");
        }
        all_ok &= o.ok && a.clean();
        orders += a.orders;
        lost += a.lost_events;
        double += a.double_charges;
        stuck += a.stuck_orders;
        mismatches += a.mypage_mismatches;
        dlq += o.dlq;
        converge += o.converge_ms;
    }
    println!("harness took {:.1}s", started.elapsed().as_secs_f64());
    println!(
        "audit: orders={orders} lost_events={lost} double_charges={double} stuck_orders={stuck} mypage_mismatches={mismatches} dlq={dlq} converge_ms={converge}"
    );
    if all_ok && lost == 0 && double == 0 && stuck == 0 && mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn sorted(m: &std::collections::HashMap<String, usize>) -> Vec<(String, usize)> {
    let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
    v.sort();
    v
}

async fn run(fault: Fault, total: usize) -> Outcome {
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().expect("addr")).await;
    let amqp = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let mut env: Vec<(&str, &str)> = SERVICE_ENV.to_vec();
    env.push(("AMQP_URL", &amqp));
    let mut system = System::start_with_env(&env).await;
    let tap = system.broker.tap().await;
    let run_id = format!("f{}", uuid::Uuid::now_v7().simple());
    let stats = Arc::new(LoadStats::default());
    let stop_manager = Arc::new(AtomicBool::new(false));
    let mut notes = Vec::new();
    let mut ok = true;

    let customers = {
        let channel = system.channel(Svc::Order);
        let (identity, stats, run_id) = (system.identity().clone(), stats.clone(), run_id.clone());
        tokio::spawn(
            async move { load::customers(channel, identity, &run_id, total, 16, stats).await },
        )
    };
    let manager = {
        let channel = system.channel(Svc::Reservation);
        let (identity, stop, stats) = (
            system.identity().clone(),
            stop_manager.clone(),
            stats.clone(),
        );
        tokio::spawn(async move { load::manager(channel, identity, stop, stats).await })
    };
    // Inject the fault a third of the way through the load.
    while stats.progress.load(Ordering::Relaxed) < total / 3 && !customers.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut poison: Vec<Vec<u8>> = Vec::new();
    match fault {
        Fault::BrokerOutage => {
            proxy.cut().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            proxy.restore().await;
        }
        Fault::PaymentKilled => {
            system.kill_service(Svc::Payment).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            system.start_service(Svc::Payment).await;
        }
        Fault::ConsumersKilled => {
            system.kill_service(Svc::Reservation).await;
            system.kill_service(Svc::MyPage).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            system.start_service(Svc::Reservation).await;
            system.start_service(Svc::MyPage).await;
        }
        Fault::Poison => {
            poison = inject_poison(&system).await;
        }
        Fault::Sigterm => {
            for svc in [Svc::Payment, Svc::Order, Svc::Reservation, Svc::MyPage] {
                let (dropped, code) = sigterm_and_restart(&mut system, svc).await;
                if !dropped || code != Some(0) {
                    ok = false;
                }
                notes.push(format!(
                    "{} readiness_dropped={dropped} exit={code:?}",
                    svc.binary()
                ));
            }
        }
        Fault::DuplicatesReordered => {}
    }
    let _ = customers.await;
    stop_manager.store(true, Ordering::Relaxed);
    let _ = manager.await;
    let load_done = Instant::now();

    if fault == Fault::DuplicatesReordered {
        let n = republish_sample(&system, &tap).await;
        notes.push(format!("republished {n} handled events out of order"));
    }

    let failures = stats.failures.load(Ordering::Relaxed);
    if failures > 0 {
        ok = false;
    }
    notes.push(format!(
        "placed={} cancelled={} confirmed={} rejected={} client_retries={} client_failures={failures}",
        stats.placed.load(Ordering::Relaxed),
        stats.cancelled.load(Ordering::Relaxed),
        stats.confirmed.load(Ordering::Relaxed),
        stats.rejected.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed),
    ));

    // Converge: outboxes empty, audit clean, and every poison message dead-lettered.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut dead: Vec<Vec<u8>> = Vec::new();
    let audit = loop {
        for svc in ["order", "reservation", "mypage"] {
            let q = system.broker.topology.dead_letter_queue(svc);
            dead.extend(system.broker.drain(&q).await.into_iter().map(|m| m.body));
        }
        let backlog = audit::outbox_backlog(&system).await.unwrap_or(usize::MAX);
        let mut a = audit::audit(&system).await.unwrap_or_else(|e| Audit {
            lost_events: 1,
            problems: vec![format!("audit failed: {e:#}")],
            ..Default::default()
        });
        let poison_seen: HashSet<&Vec<u8>> = dead.iter().filter(|b| poison.contains(b)).collect();
        let all_poison_seen = poison.iter().all(|p| poison_seen.contains(p));
        let legit_dead = dead.iter().filter(|b| !poison.contains(b)).count();
        a.lost_events += legit_dead;
        if backlog == 0 && a.clean() && all_poison_seen {
            break a;
        }
        if Instant::now() >= deadline {
            a.lost_events += backlog;
            if !all_poison_seen {
                notes.push("not every poison message reached a dead-letter queue".into());
                ok = false;
            }
            notes.push(format!(
                "did not converge in 180s (outbox backlog {backlog})"
            ));
            break a;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let converge_ms = load_done.elapsed().as_millis();
    let dlq = dead.iter().filter(|b| poison.contains(b)).count();
    system.shutdown().await;
    Outcome {
        audit,
        dlq,
        converge_ms,
        notes,
        ok,
    }
}

/// SIGTERM under load: readiness must turn NOT_SERVING at once (the service keeps
/// answering during SHUTDOWN_DELAY), then the process drains and exits 0; restart it.
async fn sigterm_and_restart(system: &mut System, svc: Svc) -> (bool, Option<i32>) {
    system.signal(svc, "TERM");
    let t = Instant::now();
    let mut dropped = false;
    while t.elapsed() < Duration::from_millis(900) {
        if system.readiness(svc).await == Ok(ServingStatus::NotServing) {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let code = system.wait_exit(svc).await;
    system.start_service(svc).await;
    (dropped, code)
}

/// Garbage bytes, an unknown event type, and a valid envelope with an invalid
/// payload, three of each; returns their bodies.
async fn inject_poison(system: &System) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    for i in 0..3u8 {
        let garbage = vec![0xff, 0x00, 0x13, i, b'x', b'!'];
        system
            .broker
            .publish_raw("payment.approved", &garbage, Default::default())
            .await;
        bodies.push(garbage);

        let unknown = EventEnvelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            event_type: "payment.teleported".into(),
            aggregate_id: uuid::Uuid::now_v7().to_string(),
            aggregate_version: 1,
            occurred_at: None,
            order_id: uuid::Uuid::now_v7().to_string(),
            customer_id: "poison".into(),
            payload: None,
        }
        .encode_to_vec();
        system
            .broker
            .publish_raw("payment.teleported", &unknown, Default::default())
            .await;
        bodies.push(unknown);

        let invalid = EventEnvelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            event_type: "payment.approved".into(),
            aggregate_id: "not-a-payment".into(),
            aggregate_version: 1,
            occurred_at: None,
            order_id: "not-an-order".into(),
            customer_id: "poison".into(),
            payload: Some(Payload::PaymentApproved(PaymentApproved {
                payment_id: "not-a-payment".into(),
                amount_minor: -5,
                currency: "???".into(),
                card_last4: String::new(),
                talent_id: String::new(),
                session_start_time: None,
                session_minutes: 0,
            })),
        }
        .encode_to_vec();
        system
            .broker
            .publish_raw("payment.approved", &invalid, Default::default())
            .await;
        bodies.push(invalid);
    }
    bodies
}

/// Republishes a shuffled sample of the events the tap saw, as a broker or relay
/// redelivering after a crash would.
async fn republish_sample(system: &System, tap: &str) -> usize {
    let mut seen = system.broker.drain(tap).await;
    seen.shuffle(&mut rand::rng());
    let sample: Vec<_> = seen.into_iter().take(400).collect();
    for m in &sample {
        system
            .broker
            .publish_raw(&m.routing_key, &m.body, m.properties.clone())
            .await;
    }
    sample.len()
}
