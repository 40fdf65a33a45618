//! The service as a process: `--help`, settings errors, and readiness that does not
//! wait for payment-svc.

use std::time::Duration;

use talentshare_proto::order::order_service_client::OrderServiceClient;
use tonic::Code;

use crate::helpers::{APPROVED_CARD, place_request, wait_ready};
use testkit::{ServiceProcess, TestBroker};

const BIN: &str = env!("CARGO_BIN_EXE_order-svc");

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
        "AMQP_URL",
        "EVENTS_EXCHANGE",
        "RUST_LOG",
        "REQUEST_TIMEOUT",
        "SHUTDOWN_GRACE",
        "PAYMENT_URL",
        "PAYMENT_TIMEOUT",
        "PAYMENT_MAX_CONCURRENCY",
        "RECONCILE_INTERVAL",
        "RECONCILE_AFTER",
    ] {
        assert!(
            help.contains(&format!("env: {env}")),
            "--help does not list {env}:\n{help}"
        );
    }
    assert!(help.contains("0.0.0.0:50051"), "default port 50051 shown");
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_with_a_message_naming_it() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("PAYMENT_URL", "ftp://payment")], "--payment-url"),
        (&[("PAYMENT_TIMEOUT", "soon")], "--payment-timeout"),
        (&[("RECONCILE_INTERVAL", "0s")], "RECONCILE_INTERVAL"),
        (
            &[("RECONCILE_AFTER", "2s"), ("PAYMENT_TIMEOUT", "3s")],
            "RECONCILE_AFTER",
        ),
    ];
    for (envs, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(BIN);
        cmd.env_clear()
            .env("DATA_DIR", dir.path())
            .env("GRPC_ADDR", "127.0.0.1:0");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{envs:?} was accepted");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(named), "{envs:?}: {text}");
        assert!(!text.contains("panicked"), "{envs:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_is_ready_while_payment_is_down_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::create().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let payment_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut process = ServiceProcess::spawn(
        BIN,
        &[
            ("DATA_DIR", dir.path().display().to_string()),
            ("EVENTS_EXCHANGE", broker.exchange().to_owned()),
            ("AMQP_URL", testkit::amqp_url()),
            ("PAYMENT_URL", payment_url),
            ("RUST_LOG", "debug".into()),
        ],
    )
    .await;
    let channel = process.channel().await;
    wait_ready(&channel, order_svc::SERVICE_NAME).await;

    let err = OrderServiceClient::new(channel)
        .place_order(place_request(APPROVED_CARD))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);

    process.signal("TERM");
    assert_eq!(process.wait(Duration::from_secs(15)).await, Some(0));
    let logs = process.output();
    assert!(
        !logs.contains("4242424242424242") && !logs.contains("4242 4242 4242 4242"),
        "card number in logs"
    );
    broker.delete().await;
}
