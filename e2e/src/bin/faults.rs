//! The fault harness: a bounded load of orders against the four real binaries, the real
//! RabbitMQ and PostgreSQL, through ten faults, each on its own databases and broker
//! names; the public services trust the run's test identity provider and the load
//! calls them with its tokens. After each fault it waits for the system to converge,
//! audits the databases against each other, and prints one line; then a final line:
//!
//! `audit: orders=N lost_events=0 double_charges=0 kept_charges=0 stuck_orders=0 mypage_mismatches=0 legit_dlq=0 dlq=K converge_ms=T`
//!
//! `kept_charges` counts approved, unrefunded payments of orders that are not PAID
//! (money kept without a booking); `legit_dlq` counts legitimate events found in a
//! dead-letter queue (only poison may rest there; they also count as lost events).
//! It exits non-zero if any zero-count is not zero or a fault's own check failed, and
//! then prints the end of every service's log for that fault.
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
use talentshare_proto::mypage::my_page_service_client::MyPageServiceClient;
use talentshare_proto::mypage::{GetMyPageRequest, MyPageEntry, WatchMyPageRequest};
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
    SlowPaymentPath,
    DatabaseOutage,
    DeadLetterReplay,
    MyPageReplicaKilled,
}

impl Fault {
    const ALL: [Fault; 10] = [
        Fault::BrokerOutage,
        Fault::PaymentKilled,
        Fault::ConsumersKilled,
        Fault::DuplicatesReordered,
        Fault::Poison,
        Fault::Sigterm,
        Fault::SlowPaymentPath,
        Fault::DatabaseOutage,
        Fault::DeadLetterReplay,
        Fault::MyPageReplicaKilled,
    ];

    fn label(self) -> &'static str {
        match self {
            Fault::BrokerOutage => "a broker-unreachable-5s",
            Fault::PaymentKilled => "b payment-sigkill",
            Fault::ConsumersKilled => "c reservation+mypage-sigkill",
            Fault::DuplicatesReordered => "d duplicated+reordered",
            Fault::Poison => "e poison-messages",
            Fault::Sigterm => "f sigterm-each-service",
            Fault::SlowPaymentPath => "g slow-payment-path-one-of-two-order-replicas",
            Fault::DatabaseOutage => "h reservation-db-unreachable-30s",
            Fault::DeadLetterReplay => "i dead-lettered-by-a-bug-then-replayed",
            Fault::MyPageReplicaKilled => "j two-mypage-replicas-one-sigkilled-watchers-resume",
        }
    }
}

/// What one fault's run produced.
struct Outcome {
    audit: Audit,
    dlq: usize,
    legit_dlq: usize,
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
    ("ANTI_ENTROPY_INTERVAL", "1s"),
    ("ANTI_ENTROPY_QUIET", "10s"),
    ("ANTI_ENTROPY_BATCH", "200"),
    ("RUST_LOG", "warn,platform::host=debug"),
];

#[tokio::main]
async fn main() -> ExitCode {
    let per_fault: usize = std::env::var("FAULT_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let started = Instant::now();
    let (mut orders, mut lost, mut double, mut kept, mut stuck, mut mismatches) =
        (0, 0, 0, 0, 0, 0);
    let (mut dlq, mut legit_dlq, mut converge) = (0, 0, 0u128);
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
            "fault {}: orders={} lost_events={} double_charges={} kept_charges={} stuck_orders={} mypage_mismatches={} legit_dlq={} dlq={} converge_ms={} took_s={:.1} statuses={:?} payments={:?}{}",
            fault.label(),
            a.orders,
            a.lost_events,
            a.double_charges,
            a.kept_charges,
            a.stuck_orders,
            a.mypage_mismatches,
            o.legit_dlq,
            o.dlq,
            o.converge_ms,
            t.elapsed().as_secs_f64(),
            sorted(&a.by_status),
            sorted(&a.payments_by_status),
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
        kept += a.kept_charges;
        stuck += a.stuck_orders;
        mismatches += a.mypage_mismatches;
        dlq += o.dlq;
        legit_dlq += o.legit_dlq;
        converge += o.converge_ms;
    }
    println!("harness took {:.1}s", started.elapsed().as_secs_f64());
    println!(
        "audit: orders={orders} lost_events={lost} double_charges={double} kept_charges={kept} stuck_orders={stuck} mypage_mismatches={mismatches} legit_dlq={legit_dlq} dlq={dlq} converge_ms={converge}"
    );
    if all_ok
        && lost == 0
        && double == 0
        && kept == 0
        && stuck == 0
        && mismatches == 0
        && legit_dlq == 0
    {
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
    if fault == Fault::DeadLetterReplay {
        // The replay must be what repairs: the anti-entropy pass would book the
        // dead-lettered approvals by itself.
        env.push(("ANTI_ENTROPY_INTERVAL", "10m"));
    }
    let mut system = System::start_with_env(&env).await;
    let tap = system.broker.tap().await;
    let run_id = format!("f{}", uuid::Uuid::now_v7().simple());
    let stats = Arc::new(LoadStats::default());
    let stop_manager = Arc::new(AtomicBool::new(false));
    let mut notes = Vec::new();
    let mut ok = true;

    // Faults g and h need their slow or cuttable link in place before the load.
    let mut order_channels = vec![system.channel(Svc::Order)];
    let mut slow_payment: Option<TcpProxy> = None;
    let mut database_link: Option<TcpProxy> = None;
    let mut mypage_replica = None;
    let mut watchers = Vec::new();
    match fault {
        Fault::MyPageReplicaKilled => {
            // Two consumers of my page's queue, and watchers on the one that will die.
            let replica = system.start_replica(Svc::MyPage, &[]).await;
            for c in 0..WATCHED_CUSTOMERS {
                let customer = format!("{run_id}r0-c{c}");
                watchers.push(Watcher::start(&system, replica, &customer));
            }
            mypage_replica = Some(replica);
        }
        Fault::SlowPaymentPath => {
            let slow = TcpProxy::start(system.addr(Svc::Payment)).await;
            let replica = system
                .start_replica(
                    Svc::Order,
                    &[("PAYMENT_URL", format!("http://{}", slow.addr()))],
                )
                .await;
            order_channels.push(
                tonic::transport::Channel::from_shared(format!("http://{replica}"))
                    .expect("uri")
                    .connect_lazy(),
            );
            slow_payment = Some(slow);
        }
        Fault::DatabaseOutage => {
            database_link = Some(system.route_database_through_proxy(Svc::Reservation).await);
        }
        _ => {}
    }

    // Customers spread over every order-svc replica, 16 clients in all.
    let replicas = order_channels.len();
    let customers: Vec<_> = order_channels
        .into_iter()
        .enumerate()
        .map(|(i, channel)| {
            let share = total / replicas + usize::from(i < total % replicas);
            let (identity, stats) = (system.identity().clone(), stats.clone());
            let run_id = format!("{run_id}r{i}");
            // The slow replica's customers do not wait: an order whose Pay is still on
            // its way when they give up is the one the other replica abandons.
            let patience = if i > 0 {
                load::Patience::Impatient
            } else {
                load::Patience::Patient
            };
            tokio::spawn(async move {
                load::customers(
                    channel,
                    identity,
                    &run_id,
                    share,
                    16 / replicas,
                    patience,
                    stats,
                )
                .await
            })
        })
        .collect();
    let load_finished = || customers.iter().all(|c| c.is_finished());
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
    while stats.progress.load(Ordering::Relaxed) < total / 3 && !load_finished() {
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
        Fault::MyPageReplicaKilled => {
            let replica = mypage_replica.expect("the replica");
            system.kill_replica(replica).await;
        }
        Fault::SlowPaymentPath => {
            // The second replica's Pays now take 6 s to arrive, past its 2 s deadline and
            // the 4 s grace after which the first replica gives their orders up.
            let slow = slow_payment.as_ref().expect("slow proxy");
            slow.set_delay(Duration::from_secs(6));
            tokio::time::sleep(Duration::from_secs(10)).await;
            slow.set_delay(Duration::ZERO);
        }
        Fault::DatabaseOutage => {
            // Far longer than ten delivery attempts take (≈ 3 s with these settings).
            let link = database_link.as_ref().expect("database proxy");
            link.cut().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            link.restore().await;
        }
        Fault::DeadLetterReplay => {
            if let Err(e) = inject_bug(&system, true).await {
                notes.push(format!("could not install the bug: {e:#}"));
                ok = false;
            }
            // The fix ships once the bug has dead-lettered a few events (each takes
            // its ten deliveries first), or after a minute at most.
            let since = Instant::now();
            while since.elapsed() < Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if dead_letters(&system, "reservation").await.unwrap_or(0) >= 5 {
                    break;
                }
            }
            if let Err(e) = inject_bug(&system, false).await {
                notes.push(format!("could not remove the bug: {e:#}"));
                ok = false;
            }
        }
    }
    for c in customers {
        let _ = c.await;
    }
    stop_manager.store(true, Ordering::Relaxed);
    let _ = manager.await;
    let load_done = Instant::now();

    if fault == Fault::DuplicatesReordered {
        let n = republish_sample(&system, &tap).await;
        notes.push(format!("republished {n} handled events out of order"));
    }
    if fault == Fault::DeadLetterReplay {
        match replay_dead_letters(&system).await {
            Ok((listed, replayed)) => {
                notes.push(format!(
                    "dead-lettered by the bug: {listed}; replayed: {replayed}"
                ));
                if listed == 0 || replayed != listed {
                    ok = false;
                }
            }
            Err(e) => {
                notes.push(format!("replay failed: {e:#}"));
                ok = false;
            }
        }
    }

    let failures = stats.failures.load(Ordering::Relaxed);
    if failures > 0 {
        ok = false;
    }
    notes.push(format!(
        "placed={} walked_away={} cancelled={} confirmed={} rejected={} client_retries={} client_failures={failures}",
        stats.placed.load(Ordering::Relaxed),
        stats.walked_away.load(Ordering::Relaxed),
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
    if fault == Fault::MyPageReplicaKilled {
        let (held, resumed) = check_watchers(&system, &watchers).await;
        notes.push(format!(
            "watchers holding my page exactly: {held}/{}; resumed on the other replica: {resumed}",
            watchers.len()
        ));
        if held != watchers.len() || resumed == 0 {
            ok = false;
        }
        for w in watchers {
            w.task.abort();
        }
    }
    if fault == Fault::SlowPaymentPath {
        // The fault is only proven if some order was given up while its Pay was held.
        let voided = audit.payments_by_status.get("VOIDED").copied().unwrap_or(0);
        if voided == 0 {
            notes.push("no order was voided: the slow path never outlived the grace".into());
            ok = false;
        }
    }
    let dlq = dead.iter().filter(|b| poison.contains(b)).count();
    let legit_dlq = dead.len() - dlq;
    // Repairs the anti-entropy passes made: each stands for an event that did not
    // arrive within ANTI_ENTROPY_QUIET (they log one WARN line with `repair`).
    let repairs: usize = [Svc::Order, Svc::Reservation]
        .iter()
        .map(|svc| {
            system
                .output(*svc)
                .lines()
                .filter(|l| l.contains("\"repair\":"))
                .count()
        })
        .sum();
    notes.push(format!("anti_entropy_repairs={repairs}"));
    if !ok || !audit.clean() || legit_dlq > 0 {
        for svc in [Svc::Order, Svc::Payment, Svc::Reservation, Svc::MyPage] {
            let log = system.output(svc);
            let lines: Vec<&str> = log.lines().collect();
            println!("  --- {} (last 40 lines):", svc.binary());
            for line in &lines[lines.len().saturating_sub(40)..] {
                println!("    {line}");
            }
        }
    }
    system.shutdown().await;
    Outcome {
        audit,
        dlq,
        legit_dlq,
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
            // Under a key the consumers are bound to (a key none is bound to reaches
            // no queue at all): an envelope of a type they do not know.
            .publish_raw("payment.approved", &unknown, Default::default())
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

/// A bug in reservation-svc, as a trigger: while installed, creating a booking for
/// `talent-3` fails, so those `payment.approved` events fail every delivery and the
/// broker dead-letters them. `false` removes it (the fix is deployed).
async fn inject_bug(system: &System, install: bool) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let db = system.db(Svc::Reservation).await;
    let statements: &[&str] = if install {
        &[
            "CREATE FUNCTION injected_bug() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected bug: cannot book talent-3'; END $$",
            "CREATE TRIGGER injected_bug BEFORE INSERT ON reservations FOR EACH ROW \
             WHEN (NEW.talent_id = 'talent-3' AND NEW.status = 'REQUESTED') \
             EXECUTE FUNCTION injected_bug()",
        ]
    } else {
        &[
            "DROP TRIGGER injected_bug ON reservations",
            "DROP FUNCTION injected_bug()",
        ]
    };
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    let _ = db.close().await;
    Ok(())
}

/// `talentshare dlq …` against the system's broker, as an operator runs it.
fn talentshare_dlq(system: &System, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(std::process::Command::new(e2e::binary_path("talentshare"))
        .arg("dlq")
        .args(args)
        .env("AMQP_URL", testkit::amqp_url())
        .env("EVENTS_EXCHANGE", system.broker.exchange())
        .output()?)
}

/// How many messages rest in `consumer`'s dead-letter queue (`talentshare dlq list`).
async fn dead_letters(system: &System, consumer: &str) -> anyhow::Result<usize> {
    let listed = talentshare_dlq(
        system,
        &[
            "list",
            "--consumer",
            consumer,
            "--json",
            "--limit",
            "100000",
        ],
    )?;
    anyhow::ensure!(
        listed.status.success(),
        "dlq list: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    Ok(String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .count())
}

/// What an operator does after the fix: once the dead-letter queue has settled (an
/// event whose last failing delivery happened just before the fix is dead-lettered a
/// moment later, after its retry pause), lists reservation-svc's dead letters and
/// replays them all with `talentshare dlq`; again if more arrived meanwhile. Returns
/// (listed, replayed) over all rounds.
async fn replay_dead_letters(system: &System) -> anyhow::Result<(usize, usize)> {
    let (mut listed, mut replayed) = (0, 0);
    for _ in 0..3 {
        let mut count = dead_letters(system, "reservation").await?;
        // Settled: unchanged over two seconds, four times the longest retry pause.
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let again = dead_letters(system, "reservation").await?;
            if again == count {
                break;
            }
            count = again;
        }
        if count == 0 {
            break;
        }
        listed += count;
        let out = talentshare_dlq(system, &["replay", "--consumer", "reservation", "--all"])?;
        anyhow::ensure!(
            out.status.success(),
            "dlq replay: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = String::from_utf8_lossy(&out.stdout);
        // The summary line: "replayed N event(s) from <dlq> to <queue>; …".
        replayed += out
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("replayed "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| anyhow::anyhow!("no summary line in: {out}"))?;
    }
    Ok((listed, replayed))
}

/// Customers of fault j watched through WatchMyPage.
const WATCHED_CUSTOMERS: usize = 8;

/// A WatchMyPage client that keeps one customer's page in memory, as an app would:
/// it starts on `first` (the replica fault j kills) and, when its stream breaks,
/// resumes on my page's main process with the last resume token it received.
struct Watcher {
    customer: String,
    page: Arc<std::sync::Mutex<std::collections::HashMap<String, MyPageEntry>>>,
    resumed: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    fn start(system: &System, first: std::net::SocketAddr, customer: &str) -> Self {
        let identity = system.identity().clone();
        let channel = |addr: std::net::SocketAddr| {
            tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect_lazy()
        };
        let targets = [channel(first), channel(system.addr(Svc::MyPage))];
        let page = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let resumed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (who, into, count) = (customer.to_owned(), page.clone(), resumed.clone());
        let task = tokio::spawn(async move {
            let mut token = String::new();
            let mut target = 0;
            loop {
                let mut client =
                    MyPageServiceClient::new(identity.as_customer(targets[target].clone(), &who));
                let opened = client
                    .watch_my_page(WatchMyPageRequest {
                        resume_token: token.clone(),
                        ..Default::default()
                    })
                    .await;
                if let Ok(stream) = opened {
                    let mut stream = stream.into_inner();
                    while let Ok(Some(m)) = stream.message().await {
                        if !m.resume_token.is_empty() {
                            token.clone_from(&m.resume_token);
                        }
                        if let Some(e) = m.entry {
                            into.lock().expect("page").insert(e.order_id.clone(), e);
                        }
                    }
                }
                // The stream broke (its replica died): resume on the other process.
                if target == 0 {
                    target = 1;
                }
                if !token.is_empty() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            customer: customer.to_owned(),
            page,
            resumed,
            task,
        }
    }
}

/// After convergence: how many watchers hold exactly what my page holds for their
/// customer (waiting up to 30 s for their streams to catch up), and how many resumed.
async fn check_watchers(system: &System, watchers: &[Watcher]) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut held = 0;
    for w in watchers {
        loop {
            let stored: std::collections::HashMap<String, MyPageEntry> = system
                .mypage_as(&w.customer)
                .get_my_page(GetMyPageRequest {
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().entries)
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.order_id.clone(), e))
                .collect();
            if *w.page.lock().expect("page") == stored {
                held += 1;
                break;
            }
            if Instant::now() >= deadline {
                println!(
                    "  watcher of {} differs: holds {} entries, my page {}",
                    w.customer,
                    w.page.lock().expect("page").len(),
                    stored.len()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let resumed = watchers
        .iter()
        .filter(|w| w.resumed.load(Ordering::Relaxed) > 0)
        .count();
    (held, resumed)
}
