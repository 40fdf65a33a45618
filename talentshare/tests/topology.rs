//! `talentshare topology` as a real process: it declares the whole topology with the
//! admin URL and says what it declared; it fails with one line that hides the
//! password; `--print-permissions` prints the service users' `rabbitmqctl` commands;
//! and a bad AMQP_URL (for `topology` and `up`) is named, never echoed.

use std::process::{Command, Output};

use platform::amqp::Topology;
use testkit::TestBroker;

const BIN: &str = env!("CARGO_BIN_EXE_talentshare");

fn talentshare(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("AMQP_URL")
        .env_remove("EVENTS_EXCHANGE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("talentshare runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_declares_everything_and_says_what() {
    // TestBroker only provides a unique exchange name and cleans it up even on
    // panic; its topology is deleted first so the command has to declare it all.
    let broker = TestBroker::create().await;
    let topology: Topology = broker.topology.clone();
    let conn = lapin::Connection::connect(&testkit::amqp_url(), Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    topology.delete(&ch).await.unwrap();
    assert!(
        topology.check(&conn).await.is_err(),
        "nothing left before the command runs"
    );

    let out = talentshare(
        &["topology"],
        &[
            ("AMQP_URL", &testkit::amqp_url()),
            ("EVENTS_EXCHANGE", topology.exchange()),
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        stdout.starts_with("declared on amqp://guest:***@"),
        "{stdout}"
    );
    for name in topology.resources().into_iter().map(|(_, n)| n) {
        assert!(stdout.contains(&format!(" {name} (")), "{name} in {stdout}");
    }
    topology
        .check(&conn)
        .await
        .expect("every exchange and queue exists after the command");
    let _ = conn.close(200, "done".into()).await;
    broker.delete().await;
}

#[test]
fn topology_failure_is_one_line_without_the_password() {
    let out = talentshare(
        &["topology"],
        &[("AMQP_URL", "amqp://admin:hunter2@127.0.0.1:1/%2f")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "talentshare: declaring the RabbitMQ topology on amqp://admin:***@127.0.0.1:1/%2f failed"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn print_permissions_gives_every_service_user_its_commands() {
    let out = talentshare(&["topology", "--print-permissions", "talentshare"], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success());
    for line in [
        r"rabbitmqctl set_permissions -p talentshare order-svc '^$' '^talentshare\.events$' '^talentshare\.events\.order$'",
        r"rabbitmqctl set_topic_permissions -p talentshare order-svc talentshare.events '^order\..*' '^$'",
        r"rabbitmqctl set_permissions -p talentshare payment-svc '^$' '^talentshare\.events$' '^$'",
        r"rabbitmqctl set_topic_permissions -p talentshare payment-svc talentshare.events '^payment\..*' '^$'",
        r"rabbitmqctl set_permissions -p talentshare reservation-svc '^$' '^talentshare\.events$' '^talentshare\.events\.reservation$'",
        r"rabbitmqctl set_topic_permissions -p talentshare reservation-svc talentshare.events '^reservation\..*' '^$'",
        r"rabbitmqctl set_permissions -p talentshare mypage-svc '^$' '^$' '^talentshare\.events\.mypage$'",
        r"rabbitmqctl set_topic_permissions -p talentshare mypage-svc talentshare.events '^$' '^$'",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line}\nnot in\n{stdout}"
        );
    }
}

#[test]
fn a_bad_amqp_url_is_named_never_echoed() {
    const BAD: &str = "amqp://admin:hunter2@rabbit:notaport/%2f";
    for cmd in ["topology", "up"] {
        let from_env = talentshare(&[cmd], &[("AMQP_URL", BAD)]);
        let from_flag = talentshare(&[cmd, "--amqp-url", BAD], &[]);
        for out in [from_env, from_flag] {
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd}: {stderr}");
            assert!(
                stderr.contains("--amqp-url") && stderr.contains("AMQP_URL"),
                "{cmd}: {stderr}"
            );
            assert!(!stderr.contains("hunter2"), "{cmd}: {stderr}");
        }
    }
}
