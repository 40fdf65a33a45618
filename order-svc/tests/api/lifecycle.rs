//! The service as a process: `--help`, settings errors, and readiness that does not
//! wait for payment-svc.

use std::time::Duration;

use talentshare_proto::order::order_service_client::OrderServiceClient;
use tonic::Code;

use crate::helpers::{APPROVED_CARD, CUSTOMER, place_request};
use testkit::{ServiceProcess, TestBroker, TestIdentity, health};

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
        "AUTH_JWKS",
        "AUTH_ISSUER",
        "AUTH_AUDIENCE",
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
    let identity = TestIdentity::create();
    let cases: [(&[(&str, &str)], &str); 7] = [
        // There is no unauthenticated mode: each of the three is required.
        (&[("AUTH_JWKS", "")], "AUTH_JWKS"),
        (&[("AUTH_ISSUER", "")], "AUTH_ISSUER"),
        (&[("AUTH_JWKS", "/nonexistent/jwks.json")], "AUTH_JWKS"),
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
        for (k, v) in identity.env() {
            cmd.env(k, v);
        }
        for (k, v) in envs {
            // An empty value stands for "not set".
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
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
    let payment_url = testkit::closed_port_url();
    let identity = TestIdentity::create();
    let mut env = identity.env();
    env.extend([
        ("DATA_DIR", dir.path().display().to_string()),
        ("EVENTS_EXCHANGE", broker.exchange().to_owned()),
        ("AMQP_URL", testkit::amqp_url()),
        ("PAYMENT_URL", payment_url),
        ("RUST_LOG", "debug".into()),
    ]);
    let mut process = ServiceProcess::spawn(BIN, &env).await;
    let channel = process.channel().await;
    health::wait_ready(&channel, order_svc::SERVICE_NAME).await;

    let token = identity.customer(CUSTOMER);
    let err = OrderServiceClient::new(tonic::service::interceptor::InterceptedService::new(
        channel.clone(),
        testkit::Bearer::new(&token),
    ))
    .place_order(place_request(APPROVED_CARD))
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    // A token from another signer is refused (and logged at debug, without the token).
    let stranger = TestIdentity::create().customer(CUSTOMER);
    let err = OrderServiceClient::new(tonic::service::interceptor::InterceptedService::new(
        channel,
        testkit::Bearer::new(&stranger),
    ))
    .place_order(place_request(APPROVED_CARD))
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    process.signal("TERM");
    assert_eq!(process.wait(Duration::from_secs(15)).await, Some(0));
    let logs = process.output();
    assert!(
        !logs.contains("4242424242424242") && !logs.contains("4242 4242 4242 4242"),
        "card number in logs"
    );
    assert!(
        logs.contains("call refused"),
        "the refusal is logged: {logs}"
    );
    for (name, t) in [("accepted", &token), ("refused", &stranger)] {
        // Neither the whole token nor its signature part may reach a log line.
        let signature = t.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(t.as_str()) && !logs.contains(signature),
            "{name} token in logs"
        );
    }
    broker.delete().await;
}
