//! The order story with every service reaching PostgreSQL through a real PgBouncer
//! (Debian's package, installed by `scripts/pgbouncer.sh` when missing), started on a
//! free port with a config of its own in a temporary directory, in session pooling
//! mode: the mode README "Running behind PgBouncer" recommends for PgBouncer 1.18,
//! because sqlx prepares every statement and mypage-svc LISTENs (see there).
//! `PGBOUNCER_POOL_MODE=transaction` runs the same story in transaction mode, to try a
//! newer PgBouncer (from 1.21 the harness then sets `max_prepared_statements`).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use e2e::{Svc, System};
use talentshare_proto::mypage::{WatchMyPageRequest, WatchMyPageResponse};
use talentshare_proto::order::OrderStatus;
use talentshare_proto::payment::PaymentStatus;
use talentshare_proto::reservation::{ConfirmReservationRequest, ReservationStatus};
use tokio::process::{Child, Command};
use tonic::Streaming;

use crate::flows::booking_of;
use crate::{GOOD_CARD, MANAGER, place_order};

/// A PgBouncer of this test's own: its config and log in a temporary directory,
/// every database name passed on to the local PostgreSQL. Killed on drop.
struct PgBouncer {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    version: String,
}

impl PgBouncer {
    /// Installs PgBouncer if needed and starts it in `pool_mode`, ready for clients.
    async fn start(pool_mode: &str) -> Self {
        let bin = install();
        let version = version(&bin);
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = free_port();
        let server = server_addr();
        let mut config = format!(
            "[databases]\n\
             ; Any database name a client asks for, on the local server (the fallback entry).\n\
             * = host={host} port={port}\n\
             [pgbouncer]\n\
             listen_addr = {listen}\n\
             listen_port = {listen_port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             admin_users = postgres\n\
             pool_mode = {pool_mode}\n\
             max_client_conn = 500\n\
             default_pool_size = 30\n\
             ; sqlx sends extra_float_digits at start-up, which PgBouncer does not track.\n\
             ignore_startup_parameters = extra_float_digits\n",
            host = server.ip(),
            port = server.port(),
            listen = addr.ip(),
            listen_port = addr.port(),
            dir = dir.path().display(),
        );
        if pool_mode == "transaction" && supports_prepared_statements(&version) {
            config.push_str("max_prepared_statements = 200\n");
        }
        write_readable(&dir.path().join("pgbouncer.ini"), &config);
        write_readable(&dir.path().join("userlist.txt"), "\"postgres\" \"\"\n");
        // PgBouncer refuses to run as root; as root it is told to switch to nobody,
        // who must be able to read the directory.
        make_readable(dir.path());
        let log = std::fs::File::create(dir.path().join("pgbouncer.log")).expect("log file");
        let mut cmd = Command::new(&bin);
        if is_root() {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .arg(dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let bouncer = Self {
            child,
            addr,
            dir,
            version,
        };
        bouncer.wait_listening().await;
        bouncer
    }

    async fn wait_listening(&self) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("PgBouncer did not listen on {}:\n{}", self.addr, self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// Runs one command on PgBouncer's admin console (simple query protocol only, so
    /// psql rather than sqlx); returns its rows, columns split on `|`.
    async fn admin(&self, command: &str) -> Vec<Vec<String>> {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-h"])
            .arg(self.addr.ip().to_string())
            .arg("-p")
            .arg(self.addr.port().to_string())
            .args(["-U", "postgres", "-d", "pgbouncer", "-c", command])
            .output()
            .await
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_owned).collect())
            .collect()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The path of the pgbouncer binary, installed by the project's script if missing.
fn install() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pgbouncer.sh");
    let out = std::process::Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// "1.18.0" from `pgbouncer --version` ("PgBouncer 1.18.0" on its first line).
fn version(bin: &Path) -> String {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .expect("pgbouncer --version");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .unwrap_or("unknown")
        .to_owned()
}

/// Protocol-level prepared statements arrived in PgBouncer 1.21.
fn supports_prepared_statements(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 21)
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn write_readable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write PgBouncer file");
    make_readable(path);
}

fn make_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A port nobody listens on right now (the OS picks it; PgBouncer binds it next).
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr")
}

/// The test PostgreSQL server's address.
fn server_addr() -> SocketAddr {
    let url = url::Url::parse(&testkit::postgres_server_url()).expect("server URL");
    let host = url.host_str().expect("host");
    format!("{host}:{}", url.port().unwrap_or(5432))
        .parse()
        .expect("server address")
}

/// The next entry on `stream` that satisfies `pred`, within 30 s.
async fn watched(
    stream: &mut Streaming<WatchMyPageResponse>,
    what: &str,
    pred: impl Fn(&talentshare_proto::mypage::MyPageEntry) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .unwrap_or_else(|_| panic!("WatchMyPage did not show {what} within 30 s"))
            .expect("no error on the stream")
            .expect("the stream goes on");
        if message.entry.as_ref().is_some_and(&pred) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_story_runs_with_every_service_behind_pgbouncer() {
    // Arrange: PgBouncer in front of the server, the four services through it.
    let mode = std::env::var("PGBOUNCER_POOL_MODE").unwrap_or_else(|_| "session".into());
    let bouncer = PgBouncer::start(&mode).await;
    eprintln!(
        "PgBouncer {} in {mode} mode on {}",
        bouncer.version, bouncer.addr
    );
    let system = System::start_with_database_via(bouncer.addr, &[]).await;
    let mut watch = system
        .mypage_as("alice")
        .watch_my_page(WatchMyPageRequest::default())
        .await
        .expect("WatchMyPage")
        .into_inner();

    // Act: place → paid → reservation requested → the manager confirms.
    let order = system
        .order_as("alice")
        .place_order(place_order("alice", GOOD_CARD))
        .await
        .expect("PlaceOrder")
        .into_inner()
        .order
        .expect("order");
    assert_eq!(order.status(), OrderStatus::Paid);
    let booking = booking_of(&system, &order.order_id).await;
    assert_eq!(booking.status(), ReservationStatus::Requested);
    let confirmed = system
        .reservation_as_manager(MANAGER, &["coach-kim"])
        .confirm_reservation(ConfirmReservationRequest {
            reservation_id: booking.reservation_id.clone(),
            manager_id: MANAGER.into(),
        })
        .await
        .expect("ConfirmReservation")
        .into_inner()
        .reservation
        .expect("reservation");
    assert_eq!(confirmed.status(), ReservationStatus::Confirmed);

    // Assert: my page shows it, read and watched. The watch hears the change through
    // mypage-svc's LISTEN connection, which holds its session through PgBouncer.
    let entry = system
        .wait_mypage(
            "alice",
            &order.order_id,
            "my page shows it confirmed",
            |e| e.reservation_status() == ReservationStatus::Confirmed,
        )
        .await;
    assert_eq!(
        (
            entry.order_status(),
            entry.payment_status(),
            entry.reservation_id.as_str()
        ),
        (
            OrderStatus::Paid,
            PaymentStatus::Approved,
            booking.reservation_id.as_str()
        )
    );
    watched(&mut watch, "the confirmed booking", |e| {
        e.order_id == order.order_id && e.reservation_status() == ReservationStatus::Confirmed
    })
    .await;

    // And every service's connections really are PgBouncer's clients.
    let clients = bouncer.admin("SHOW CLIENTS").await;
    for svc in Svc::ALL {
        let database = system.database_name(svc);
        assert!(
            clients.iter().any(|c| c.get(2) == Some(&database)),
            "{} has no client in PgBouncer on {database}: {clients:?}\n{}",
            svc.binary(),
            bouncer.log()
        );
    }
    eprintln!("PgBouncer clients at the end: {}", clients.len());
    system.shutdown().await;
}
