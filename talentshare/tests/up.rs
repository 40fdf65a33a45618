//! `talentshare up` as a real process: the README walkthrough run verbatim against it,
//! Ctrl-C drains all four, a broker outage is one clear line while orders still
//! succeed, and `talentshare probe` exit codes.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_talentshare");

const SERVICES: [(&str, &str); 4] = [
    ("order", "talentshare.order.v1.OrderService"),
    ("payment", "talentshare.payment.v1.PaymentService"),
    (
        "reservation",
        "talentshare.reservation.v1.ReservationService",
    ),
    ("mypage", "talentshare.mypage.v1.MyPageService"),
];

struct Up {
    child: Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
    _dir: tempfile::TempDir,
    exchange: String,
}

/// Starts `talentshare up` in an empty directory with its own broker names.
async fn up(extra: &[&str], env: &[(&str, &str)]) -> Up {
    let dir = tempfile::tempdir().unwrap();
    let exchange = format!("t-{}.events", uuid_like());
    let mut cmd = Command::new(BIN);
    cmd.arg("up")
        // Tests run several `up`s at once: none binds the default metrics ports.
        .args(["--metrics-port", "0"])
        .args(extra)
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("DATA_DIR")
        .env("EVENTS_EXCHANGE", &exchange)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn talentshare up");
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let out = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut o = out.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
    }
    Up {
        child,
        output,
        _dir: dir,
        exchange,
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}{:x}", std::process::id())
}

async fn wait_all_ready(ports: [u16; 4]) {
    for ((_, name), port) in SERVICES.iter().zip(ports) {
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_lazy();
        testkit::wait_until(
            &format!("{name} SERVING"),
            Duration::from_secs(30),
            || async {
                (testkit::health::check(channel.clone(), name).await
                    == Ok(tonic_health::pb::health_check_response::ServingStatus::Serving))
                .then_some(())
            },
        )
        .await;
    }
}

impl Up {
    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Ctrl-C, then the exit code.
    async fn interrupt(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("talentshare up drains within 30s")
            .unwrap();
        let out = self.output();
        cleanup(&self.exchange).await;
        (status.code(), out)
    }
}

async fn cleanup(exchange: &str) {
    if let Ok(conn) = lapin::Connection::connect(&testkit::amqp_url(), Default::default()).await
        && let Ok(ch) = conn.create_channel().await
    {
        let _ = platform::amqp::Topology::new(exchange).delete(&ch).await;
    }
}

fn walkthrough() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough:begin -->")
        .expect("walkthrough begin marker");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("walkthrough end marker");
    let block = &readme[start..end];
    let code = block.split("```sh\n").nth(1).expect("a ```sh block");
    code.split("\n```").next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_verbatim_against_talentshare_up() {
    // The README names the default ports, so this test needs them free. Other tests'
    // short-lived sockets can hold one of them for a moment (they sit in the
    // ephemeral range), so wait for them rather than fail.
    testkit::wait_until(
        "ports 50051-50054 free",
        Duration::from_secs(30),
        || async {
            [50051u16, 50052, 50053, 50054]
                .iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
                .then_some(())
        },
    )
    .await;
    let up = up(&[], &[]).await;
    wait_all_ready([50051, 50052, 50053, 50054]).await;
    let grpcurl_dir = std::path::Path::new(&testkit::grpcurl())
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let script = walkthrough();
    // The walkthrough runs where `up` runs (its development key is in ./data), with
    // the `talentshare` binary on PATH, as the README tells a reader to.
    let bin_dir = std::path::Path::new(BIN)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();

    // Output goes to files so a hung step can still be shown.
    let logs = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (logs.path().join("out"), logs.path().join("err"));
    let mut script_run = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(up._dir.path())
        .env(
            "PATH",
            format!(
                "{bin_dir}:{grpcurl_dir}:{}",
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(60), script_run.wait()).await;
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let status = match finished {
        Ok(status) => status.unwrap(),
        Err(_) => panic!(
            "walkthrough hung for 60s:\n{stdout}\n{stderr}\n--- up:\n{}",
            up.output()
        ),
    };

    assert!(
        status.success(),
        "walkthrough failed:\n{stdout}\n{stderr}\n--- up:\n{}",
        up.output()
    );
    assert!(
        stdout.contains("ORDER_STATUS_PAID"),
        "step 2 shows the order paid"
    );
    assert!(
        stdout.contains("RESERVATION_STATUS_CONFIRMED"),
        "my page shows it confirmed"
    );
    assert!(
        stdout.contains("PAYMENT_STATUS_REFUNDED")
            && stdout.contains("RESERVATION_STATUS_CANCELLED")
    );
    // Step 7: another customer, then no token at all.
    assert!(
        stderr.contains("Code: PermissionDenied"),
        "bob is refused:\n{stderr}"
    );
    assert!(
        stderr.contains("Code: Unauthenticated"),
        "no token is refused:\n{stderr}"
    );
    let (code, out) = up.interrupt().await;
    assert_eq!(
        code,
        Some(0),
        "Ctrl-C drains all four and exits cleanly:\n{out}"
    );
    for (_, name) in SERVICES {
        assert!(
            out.contains(&format!("\"service\":\"{name}\"")) && out.contains("stopped"),
            "{name} stopped"
        );
    }
    // A start a person can read: one line per service, migrations summed up, none of
    // sea-orm's line per migration.
    let lines: Vec<&str> = out.lines().collect();
    let last_ready = lines
        .iter()
        .rposition(|l| l.contains("migrations applied"))
        .expect("the services' ready lines");
    let start = &lines[..=last_ready];
    for (_, name) in SERVICES {
        let ready: Vec<&&str> = start
            .iter()
            .filter(|l| l.contains(&format!("\"service\":\"{name}\"")))
            .collect();
        assert!(
            ready.len() == 1 && ready[0].contains("migrations applied\""),
            "{name}: one line at start, saying how many migrations it applied:\n{}",
            start.join("\n")
        );
    }
    assert!(
        start.len() <= SERVICES.len() + 3 && !out.contains("Applying migration"),
        "a quiet start:\n{}",
        start.join("\n")
    );
}

/// Four free ports, none of the README's 50051-50054 (another test needs those).
fn free_ports() -> [u16; 4] {
    let mut listeners = Vec::new();
    while listeners.len() < 4 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        if !(50051..=50054).contains(&l.local_addr().unwrap().port()) {
            listeners.push(l);
        }
    }
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    [ports[0], ports[1], ports[2], ports[3]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rabbitmq_unreachable_up_says_so_once_and_keeps_taking_orders() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let amqp = format!("amqp://guest:guest@{}/%2f", closed.local_addr().unwrap());
    drop(closed);
    let [o, p, r, m] = free_ports();
    let ports = [o.to_string(), p.to_string(), r.to_string(), m.to_string()];
    let up = up(
        &[
            "--host",
            "0.0.0.0",
            "--order-port",
            &ports[0],
            "--payment-port",
            &ports[1],
            "--reservation-port",
            &ports[2],
            "--mypage-port",
            &ports[3],
        ],
        &[("AMQP_URL", &amqp)],
    )
    .await;
    wait_all_ready([o, p, r, m]).await;

    let token = mint(up._dir.path(), &["--customer", "zoe"]);
    let mut orders = talentshare_proto::order::order_service_client::OrderServiceClient::new(
        tonic::service::interceptor::InterceptedService::new(
            tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{o}"))
                .unwrap()
                .connect_lazy(),
            testkit::Bearer::new(&token),
        ),
    );
    let start = std::time::SystemTime::now() + Duration::from_secs(86_400 * 30);
    let seconds = start
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let order = orders
        .place_order(talentshare_proto::order::PlaceOrderRequest {
            request_id: "0192f5a0-0000-7000-8000-0000000000b1".into(),
            customer_id: "zoe".into(),
            talent_id: "t-1".into(),
            session_start_time: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            session_minutes: 30,
            amount_minor: 1_000,
            currency: "USD".into(),
            card_number: "4242424242424242".into(),
        })
        .await
        .expect("orders are taken while RabbitMQ is down")
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.status(), talentshare_proto::order::OrderStatus::Paid);

    let (code, out) = up.interrupt().await;
    assert_eq!(code, Some(0));
    let warnings = out
        .lines()
        .filter(|l| l.contains("RabbitMQ unreachable"))
        .count();
    assert_eq!(warnings, 1, "one clear line about the broker:\n{out}");
    assert!(
        !out.contains("guest:guest@"),
        "the broker password is not logged"
    );
    // The public services bind the asked-for address; payment-svc, internal, only
    // loopback.
    assert!(out.contains(&format!("payment 127.0.0.1:{p}")), "{out}");
    assert!(out.contains(&format!("order 0.0.0.0:{o}")), "{out}");
    assert!(!out.contains(&token), "the token is not logged");
}

/// `talentshare token` run in `dir` (where `up` keeps ./data), its stdout.
fn mint(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .arg("token")
        .args(args)
        .current_dir(dir)
        .env_remove("DATA_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "talentshare token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The claims of a JWT, unverified (the services verify; this only reads).
fn claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn token_mints_customer_and_manager_tokens_with_the_up_key() {
    let dir = tempfile::tempdir().unwrap();
    let customer = claims(&mint(dir.path(), &["--customer", "alice"]));
    assert_eq!(customer["sub"], "alice");
    assert_eq!(customer["iss"], platform::auth::dev::DEV_ISSUER);
    assert_eq!(customer["aud"], platform::auth::dev::DEV_AUDIENCE);
    let ttl = customer["exp"].as_u64().unwrap() - customer["iat"].as_u64().unwrap();
    assert_eq!(ttl, 3600, "one hour by default");
    assert!(customer.get("roles").is_none());

    let manager = claims(&mint(
        dir.path(),
        &["--manager", "lee", "--talent", "t-1,t-2", "--ttl", "5m"],
    ));
    assert_eq!(manager["sub"], "lee");
    assert_eq!(manager["roles"], serde_json::json!(["manager"]));
    assert_eq!(manager["talents"], serde_json::json!(["t-1", "t-2"]));

    // The key and the JWKS `up` reads: created once, the private key private.
    let key = dir.path().join("data/dev-signing-key.pem");
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("data/dev-jwks.json")).unwrap())
            .unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "the JWKS holds no private part"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    for bad in [
        &["--customer", "a b"][..],
        &["--manager", "lee"],
        &["--customer", "alice", "--manager", "lee", "--talent", "t"],
    ] {
        let out = std::process::Command::new(BIN)
            .arg("token")
            .args(bad)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} was accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_exits_zero_only_when_serving() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let probe = |addr: &str, service: &str| {
        std::process::Command::new(BIN)
            .args([
                "probe",
                "--addr",
                addr,
                "--service",
                service,
                "--timeout",
                "1s",
            ])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(probe(&closed_addr, ""), Some(2), "unreachable");

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(
            "talentshare.order.v1.OrderService",
            tonic_health::ServingStatus::NotServing,
        )
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let a = addr.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || probe(&a, ""))
            .await
            .unwrap(),
        Some(0),
        "liveness"
    );
    let a = addr.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || probe(&a, "talentshare.order.v1.OrderService"))
            .await
            .unwrap(),
        Some(1),
        "NOT_SERVING"
    );
}
