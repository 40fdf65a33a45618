//! The host owns its tasks: a background task that panics or returns before shutdown
//! turns readiness NOT_SERVING and makes the service stop with an error naming the
//! task (so its binary exits non-zero); and `run_together` stops every service of a
//! process as soon as one of them fails. Real hosts on SQLite and the real broker.

use std::time::Duration;

use clap::Parser;
use platform::{
    Access, BackgroundTask, Host, PlatformSettings, RunningService, ServiceDef, run_together,
};
use sea_orm_migration::prelude::*;
use testkit::{Backend, TestBroker, TestDatabase, wait_until};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_check_response::ServingStatus;

struct PlatformTables;

impl MigratorTrait for PlatformTables {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(platform::migrations::CreateOutbox),
            Box::new(platform::migrations::CreateInbox),
        ]
    }
}

const DEF: ServiceDef = ServiceDef {
    slug: "probe",
    grpc_service: "talentshare.test.v1.Probe",
    descriptor_sets: &[],
    access: Access::Internal,
    broker: platform::amqp::ORDER_SVC,
};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    platform: PlatformSettings,
}

/// A host on a fresh SQLite database and the test's exchange, running `tasks`.
async fn start(
    db: &TestDatabase,
    broker: &TestBroker,
    tasks: Vec<BackgroundTask>,
    shutdown: CancellationToken,
) -> RunningService {
    platform::telemetry::init_for_tests();
    let settings = Args::try_parse_from([
        "t",
        "--database-url",
        db.url(),
        "--events-exchange",
        broker.exchange(),
        "--shutdown-grace",
        "5s",
    ])
    .unwrap()
    .platform;
    let host = Host::bind(DEF, "127.0.0.1:0".parse().unwrap(), settings, None)
        .await
        .unwrap();
    host.start::<PlatformTables>(tonic::service::Routes::default(), tasks, shutdown)
}

async fn readiness(addr: std::net::SocketAddr) -> Result<ServingStatus, tonic::Code> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    testkit::health::check(channel, DEF.grpc_service).await
}

/// A task that runs until shutdown, as every real one does.
fn steady() -> BackgroundTask {
    BackgroundTask::new("steady", |stop| async move { stop.cancelled().await })
}

/// A task that dies after `after`: by panicking, or by simply returning.
fn dying(after: Duration, panics: bool) -> BackgroundTask {
    BackgroundTask::new("doomed", move |_stop| async move {
        tokio::time::sleep(after).await;
        if panics {
            panic!("boom: the handler hit a bug");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_panics_or_returns_stops_the_service_with_an_error_naming_it() {
    let broker = TestBroker::create().await;
    for (panics, cause) in [(true, "panicked: boom"), (false, "returned")] {
        let db = TestDatabase::create(Backend::Sqlite).await;
        let shutdown = CancellationToken::new();
        let running = start(
            &db,
            &broker,
            vec![steady(), dying(Duration::from_millis(1500), panics)],
            shutdown.clone(),
        )
        .await;
        let addr = running.local_addr;
        wait_until("SERVING", Duration::from_secs(10), || async {
            (readiness(addr).await == Ok(ServingStatus::Serving)).then_some(())
        })
        .await;
        let waited = tokio::spawn(running.wait());
        // Readiness turns NOT_SERVING (or the port closes once drained) on its own,
        // with nobody asking for shutdown.
        wait_until(
            "NOT_SERVING after the task died",
            Duration::from_secs(10),
            || async { (readiness(addr).await != Ok(ServingStatus::Serving)).then_some(()) },
        )
        .await;
        let result = tokio::time::timeout(Duration::from_secs(10), waited)
            .await
            .expect("the service stops by itself")
            .unwrap();
        let err = format!(
            "{:#}",
            result.expect_err("an error, so the binary exits non-zero")
        );
        assert!(err.contains("background task `doomed`"), "{err}");
        assert!(err.contains(cause), "{err}");
        assert!(!shutdown.is_cancelled(), "nobody asked it to stop");
        db.drop_database().await;
    }
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_together_stops_every_service_as_soon_as_one_fails() {
    let broker = TestBroker::create().await;
    let healthy_db = TestDatabase::create(Backend::Sqlite).await;
    let failing_db = TestDatabase::create(Backend::Sqlite).await;
    let shutdown = CancellationToken::new();
    let healthy = start(&healthy_db, &broker, vec![steady()], shutdown.clone()).await;
    let healthy_addr = healthy.local_addr;
    let failing = start(
        &failing_db,
        &broker,
        vec![dying(Duration::from_millis(1500), true)],
        shutdown.clone(),
    )
    .await;
    wait_until("healthy SERVING", Duration::from_secs(10), || async {
        (readiness(healthy_addr).await == Ok(ServingStatus::Serving)).then_some(())
    })
    .await;

    let result = tokio::time::timeout(
        Duration::from_secs(20),
        run_together(
            vec![("healthy", healthy), ("failing", failing)],
            shutdown.clone(),
        ),
    )
    .await
    .expect("both stopped");
    let err = format!("{:#}", result.expect_err("the failure is reported"));
    assert!(err.starts_with("failing: "), "{err}");
    assert!(
        !err.contains("healthy:"),
        "the healthy one only drained: {err}"
    );
    assert!(shutdown.is_cancelled(), "the failure took the others down");
    assert!(
        readiness(healthy_addr).await != Ok(ServingStatus::Serving),
        "the healthy service is gone too"
    );
    healthy_db.drop_database().await;
    failing_db.drop_database().await;
    broker.delete().await;
}
