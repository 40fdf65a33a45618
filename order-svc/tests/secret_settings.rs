//! The real `order-svc` binary reports a bad URL setting by name and never echoes its
//! value (which may carry a password), whether it came from a flag or from the
//! environment; and it stops with clap's usage exit code before binding anything.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_order-svc");

/// Fails to parse (a space in the host) and carries a password.
const BAD_DATABASE_URL: &str = "postgres://app:hunter2@db server:5432/orders";
const BAD_AMQP_URL: &str = "amqp://svc:hunter2@rabbit:notaport/%2f";

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        // Were the URL accepted, the service would start; this address makes sure it
        // could not clash with anything, and the assertions below would fail.
        .env("GRPC_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("order-svc runs")
}

fn assert_named_not_echoed(out: &Output, names: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "usage error exit code; stderr: {stderr}"
    );
    assert!(
        names.iter().all(|n| stderr.contains(n)),
        "{names:?} named in: {stderr}"
    );
    assert!(stderr.contains("not a valid URL"), "says why: {stderr}");
    for shown in [&stderr, &stdout] {
        assert!(!shown.contains("hunter2"), "password leaked: {shown}");
        assert!(!shown.contains("app:"), "user leaked: {shown}");
    }
}

#[test]
fn a_bad_database_url_in_the_environment_is_named_not_echoed() {
    let out = run(&[], &[("DATABASE_URL", BAD_DATABASE_URL)]);
    assert_named_not_echoed(&out, &["DATABASE_URL"]);
}

#[test]
fn a_bad_database_url_flag_is_named_not_echoed() {
    let out = run(&["--database-url", BAD_DATABASE_URL], &[]);
    assert_named_not_echoed(&out, &["--database-url", "DATABASE_URL"]);
}

#[test]
fn a_bad_amqp_url_in_the_environment_is_named_not_echoed() {
    let out = run(&[], &[("AMQP_URL", BAD_AMQP_URL)]);
    assert_named_not_echoed(&out, &["AMQP_URL"]);
}
