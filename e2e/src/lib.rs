//! The whole system as real processes for end-to-end tests and the fault harness:
//! [`System`] starts the four service binaries, each on its own fresh PostgreSQL
//! database (or, [`System::start_sqlite`], its own SQLite file), all on one per-run
//! broker topology, and can stop and restart any of them on the same port. The three public services trust one [`TestIdentity`] per system,
//! so clients call them with that identity's tokens ([`System::order_as`] …).
//! [`audit`] checks the services' databases against each other and [`load`] drives
//! them like real clients; the `faults` binary combines the three.

pub mod audit;
pub mod load;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use talentshare_proto::mypage::{
    GetMyPageEntryRequest, MyPageEntry, my_page_service_client::MyPageServiceClient,
};
use talentshare_proto::order::order_service_client::OrderServiceClient;
use talentshare_proto::payment::payment_service_client::PaymentServiceClient;
use talentshare_proto::reservation::reservation_service_client::ReservationServiceClient;
use testkit::{
    AuthChannel, Backend, ServiceProcess, TcpProxy, TestBroker, TestDatabase, TestIdentity,
};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

/// One of the four services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Svc {
    Order,
    Payment,
    Reservation,
    MyPage,
}

impl Svc {
    /// All four, in start order (payment first: the others need its address).
    pub const ALL: [Svc; 4] = [Svc::Payment, Svc::Order, Svc::Reservation, Svc::MyPage];

    /// The name of its default SQLite file under `DATA_DIR` (`<slug>.db`).
    pub fn slug(self) -> &'static str {
        match self {
            Svc::Order => "order",
            Svc::Payment => "payment",
            Svc::Reservation => "reservation",
            Svc::MyPage => "mypage",
        }
    }

    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            Svc::Order => "order-svc",
            Svc::Payment => "payment-svc",
            Svc::Reservation => "reservation-svc",
            Svc::MyPage => "mypage-svc",
        }
    }

    /// Full gRPC service name (the readiness health-check name).
    pub fn grpc_name(self) -> &'static str {
        match self {
            Svc::Order => "talentshare.order.v1.OrderService",
            Svc::Payment => "talentshare.payment.v1.PaymentService",
            Svc::Reservation => "talentshare.reservation.v1.ReservationService",
            Svc::MyPage => "talentshare.mypage.v1.MyPageService",
        }
    }

    /// Whether end users call it, so it demands a token (payment-svc is internal).
    pub fn is_public(self) -> bool {
        !matches!(self, Svc::Payment)
    }
}

/// The path of a workspace binary built next to the running test or harness
/// (`target/<profile>/<name>`).
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built; run the tests with `cargo nextest run --workspace` (or build the workspace first)",
        path.display()
    );
    path
}

/// `url` with its host and port replaced by `via`'s.
fn url_via(url: &str, via: SocketAddr) -> String {
    let mut url = url::Url::parse(url).expect("database URL");
    url.set_host(Some(&via.ip().to_string())).expect("host");
    url.set_port(Some(via.port())).expect("port");
    url.to_string()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The four services of one run.
pub struct System {
    pub broker: TestBroker,
    databases: HashMap<Svc, TestDatabase>,
    /// On SQLite ([`System::start_sqlite`]): the `DATA_DIR` every service keeps its
    /// default file in, as `talentshare up` runs them; `databases` is then empty.
    data_dir: Option<tempfile::TempDir>,
    processes: HashMap<Svc, ServiceProcess>,
    addrs: HashMap<Svc, SocketAddr>,
    extra_env: Vec<(String, String)>,
    /// Environment for one service only, applied last (its own broker user, say).
    service_env: HashMap<Svc, Vec<(String, String)>>,
    /// The identity provider the public services trust; its JWKS file lives as long
    /// as the system, so a restarted service reads the same keys.
    identity: Arc<TestIdentity>,
    /// Extra processes of a service on its database ([`System::start_replica`]).
    replicas: Vec<ServiceProcess>,
    /// Where the services reach their databases, when not at the server itself
    /// ([`System::start_with_database_via`]).
    database_via: Option<SocketAddr>,
}

impl System {
    /// Starts all four services, ready.
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// Starts all four with extra environment for every service.
    pub async fn start_with_env(extra: &[(&str, &str)]) -> Self {
        Self::start_with(extra, HashMap::new(), None).await
    }

    /// Starts all four reaching their databases through `via` (a PgBouncer, say)
    /// instead of the server, with `extra` environment for every service. The
    /// audit and [`System::db`] still read the server directly.
    pub async fn start_with_database_via(via: SocketAddr, extra: &[(&str, &str)]) -> Self {
        Self::start_with(extra, HashMap::new(), Some(via)).await
    }

    /// Starts all four as production runs them on the broker: each service connects as
    /// its own least-privilege user of `users` and declares nothing
    /// (`AMQP_DECLARE_TOPOLOGY=false`). The topology must have been declared by an
    /// admin first (`talentshare topology`).
    pub async fn start_with_broker_users(users: &testkit::BrokerUsers) -> Self {
        let service_env = Svc::ALL
            .iter()
            .map(|svc| {
                let env = vec![
                    ("AMQP_URL".to_owned(), users.service_url(svc.binary())),
                    (
                        "EVENTS_EXCHANGE".to_owned(),
                        testkit::USERS_EXCHANGE.to_owned(),
                    ),
                    ("AMQP_DECLARE_TOPOLOGY".to_owned(), "false".to_owned()),
                ];
                (*svc, env)
            })
            .collect();
        Self::start_with(&[], service_env, None).await
    }

    /// Starts all four on SQLite as `talentshare up` does by default: no
    /// `DATABASE_URL`, one temporary `DATA_DIR` holding each service's own file.
    pub async fn start_sqlite() -> Self {
        Self::start_on(Backend::Sqlite, &[], HashMap::new(), None).await
    }

    async fn start_with(
        extra: &[(&str, &str)],
        service_env: HashMap<Svc, Vec<(String, String)>>,
        database_via: Option<SocketAddr>,
    ) -> Self {
        Self::start_on(Backend::Postgres, extra, service_env, database_via).await
    }

    async fn start_on(
        backend: Backend,
        extra: &[(&str, &str)],
        service_env: HashMap<Svc, Vec<(String, String)>>,
        database_via: Option<SocketAddr>,
    ) -> Self {
        let broker = TestBroker::create().await;
        let mut databases = HashMap::new();
        let mut data_dir = None;
        match backend {
            Backend::Postgres => {
                for svc in Svc::ALL {
                    databases.insert(svc, TestDatabase::create(Backend::Postgres).await);
                }
            }
            Backend::Sqlite => data_dir = Some(tempfile::tempdir().expect("temp dir")),
        }
        let mut system = System {
            broker,
            databases,
            data_dir,
            processes: HashMap::new(),
            addrs: HashMap::new(),
            identity: Arc::new(TestIdentity::create()),
            extra_env: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service_env,
            replicas: Vec::new(),
            database_via,
        };
        for svc in Svc::ALL {
            system.start_service(svc).await;
        }
        system
    }

    fn env_for(&self, svc: Svc) -> Vec<(String, String)> {
        let database = match &self.data_dir {
            Some(dir) => ("DATA_DIR".to_owned(), dir.path().display().to_string()),
            None => {
                let url = self.databases[&svc].url();
                let url = match self.database_via {
                    Some(via) => url_via(url, via),
                    None => url.to_owned(),
                };
                ("DATABASE_URL".to_owned(), url)
            }
        };
        let mut env = vec![
            database,
            ("AMQP_URL".to_owned(), testkit::amqp_url()),
            (
                "EVENTS_EXCHANGE".to_owned(),
                self.broker.exchange().to_owned(),
            ),
            ("OUTBOX_POLL_INTERVAL".to_owned(), "200ms".to_owned()),
            ("SHUTDOWN_GRACE".to_owned(), "10s".to_owned()),
        ];
        if matches!(svc, Svc::Order | Svc::Reservation) {
            let payment = self
                .addrs
                .get(&Svc::Payment)
                .expect("payment started first");
            env.push(("PAYMENT_URL".to_owned(), format!("http://{payment}")));
        }
        if let Some(addr) = self.addrs.get(&svc) {
            // Restart on the same port, so callers' URLs stay valid.
            env.push(("GRPC_ADDR".to_owned(), addr.to_string()));
        }
        if svc.is_public() {
            // The public services refuse to start without these.
            env.extend(
                self.identity
                    .env()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v)),
            );
        }
        env.extend(self.extra_env.iter().cloned());
        env.extend(self.service_env.get(&svc).into_iter().flatten().cloned());
        env
    }

    /// Starts (or restarts) one service and waits until it is ready.
    pub async fn start_service(&mut self, svc: Svc) {
        let env = self.env_for(svc);
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let bin = binary_path(svc.binary());
        let process = ServiceProcess::spawn(bin.to_str().expect("utf-8 path"), &env).await;
        self.addrs.insert(svc, process.addr);
        testkit::health::wait_ready(&process.channel().await, svc.grpc_name()).await;
        self.processes.insert(svc, process);
    }

    /// Starts another `svc` on its database and topology (it shares the service's
    /// queue), with `env` over its usual environment (say, a PAYMENT_URL through a
    /// slow proxy), and waits until it is ready; returns where it listens. It runs
    /// until [`System::kill_replica`] or [`System::shutdown`].
    pub async fn start_replica(&mut self, svc: Svc, env: &[(&str, String)]) -> SocketAddr {
        let mut all: Vec<(String, String)> = self
            .env_for(svc)
            .into_iter()
            .filter(|(k, _)| k != "GRPC_ADDR" && k != "METRICS_ADDR")
            .collect();
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let all: Vec<(&str, String)> = all.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let bin = binary_path(svc.binary());
        let process = ServiceProcess::spawn(bin.to_str().expect("utf-8 path"), &all).await;
        testkit::health::wait_ready(&process.channel().await, svc.grpc_name()).await;
        let addr = process.addr;
        self.replicas.push(process);
        addr
    }

    /// Kills the replica listening at `addr` with SIGKILL.
    pub async fn kill_replica(&mut self, addr: SocketAddr) {
        let i = self
            .replicas
            .iter()
            .position(|p| p.addr == addr)
            .expect("a replica listens there");
        let mut p = self.replicas.remove(i);
        p.signal("KILL");
        p.wait(Duration::from_secs(10)).await;
    }

    /// Restarts `svc` reaching its database through a proxy the caller can cut, and
    /// returns the proxy. The audit still reads the database directly. PostgreSQL
    /// only: a SQLite file has no connection to cut.
    pub async fn route_database_through_proxy(&mut self, svc: Svc) -> TcpProxy {
        let url = url::Url::parse(self.databases[&svc].url()).expect("database URL");
        let server: SocketAddr = format!(
            "{}:{}",
            url.host_str().expect("database host"),
            url.port().unwrap_or(5432)
        )
        .parse()
        .expect("database address");
        let proxy = TcpProxy::start(server).await;
        let via = url_via(url.as_str(), proxy.addr());
        self.service_env
            .entry(svc)
            .or_default()
            .push(("DATABASE_URL".to_owned(), via));
        self.stop_service(svc).await;
        self.start_service(svc).await;
        proxy
    }

    /// Stops one service with SIGTERM and waits for it to exit.
    pub async fn stop_service(&mut self, svc: Svc) -> Option<i32> {
        let mut p = self.processes.remove(&svc).expect("service running");
        p.signal("TERM");
        p.wait(Duration::from_secs(30)).await
    }

    /// Sends a signal (`TERM`, `KILL`, `INT`) to a running service.
    pub fn signal(&self, svc: Svc, name: &str) {
        self.processes
            .get(&svc)
            .expect("service running")
            .signal(name);
    }

    /// Waits for a signalled service to exit; returns its exit code.
    pub async fn wait_exit(&mut self, svc: Svc) -> Option<i32> {
        let mut p = self.processes.remove(&svc).expect("service running");
        p.wait(Duration::from_secs(60)).await
    }

    /// The readiness health status of a service right now.
    pub async fn readiness(&self, svc: Svc) -> Result<ServingStatus, tonic::Code> {
        testkit::health::check(self.channel(svc), svc.grpc_name()).await
    }

    /// Kills one service with SIGKILL.
    pub async fn kill_service(&mut self, svc: Svc) {
        let mut p = self.processes.remove(&svc).expect("service running");
        p.signal("KILL");
        p.wait(Duration::from_secs(10)).await;
    }

    /// Where a service listens (also after it stopped).
    pub fn addr(&self, svc: Svc) -> SocketAddr {
        self.addrs[&svc]
    }

    /// The process id of a running service, to read its CPU time and memory from
    /// `/proc`; `None` while it is stopped.
    pub fn pid(&self, svc: Svc) -> Option<u32> {
        self.processes.get(&svc).map(|p| p.pid())
    }

    /// The name of the run's events exchange (every queue name derives from it).
    pub fn exchange(&self) -> &str {
        self.broker.exchange()
    }

    /// Whether the services run on SQLite files (as `talentshare up` does).
    pub fn on_sqlite(&self) -> bool {
        self.data_dir.is_some()
    }

    /// The name of a service's database on the server.
    pub fn database_name(&self, svc: Svc) -> String {
        let url = url::Url::parse(self.databases[&svc].url()).expect("database URL");
        url.path().trim_start_matches('/').to_owned()
    }

    /// A connection to a service's database.
    pub async fn db(&self, svc: Svc) -> sea_orm::DatabaseConnection {
        match &self.data_dir {
            Some(dir) => {
                // The service created the file and set WAL mode, which persists in
                // the file, so this reader never blocks the service's writer.
                let path = dir.path().join(format!("{}.db", svc.slug()));
                sea_orm::Database::connect(format!("sqlite://{}?mode=rw", path.display()))
                    .await
                    .expect("open a service's SQLite file")
            }
            None => self.databases[&svc].connect().await,
        }
    }

    /// Everything a service printed.
    pub fn output(&self, svc: Svc) -> String {
        self.processes
            .get(&svc)
            .map(|p| p.output())
            .unwrap_or_default()
    }

    /// A lazily connected channel to a service; it reconnects after a restart.
    pub fn channel(&self, svc: Svc) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr(svc)))
            .expect("uri")
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy()
    }

    /// The identity provider the public services trust, to mint tokens.
    pub fn identity(&self) -> &Arc<TestIdentity> {
        &self.identity
    }

    /// A channel to a public service sending `token`.
    fn with_token(&self, svc: Svc, token: &str) -> AuthChannel {
        tonic::service::interceptor::InterceptedService::new(
            self.channel(svc),
            testkit::Bearer::new(token),
        )
    }

    /// order-svc, called by customer `customer`.
    pub fn order_as(&self, customer: &str) -> OrderServiceClient<AuthChannel> {
        OrderServiceClient::new(self.with_token(Svc::Order, &self.identity.customer(customer)))
    }

    /// payment-svc: internal, so no token.
    pub fn payment(&self) -> PaymentServiceClient<Channel> {
        PaymentServiceClient::new(self.channel(Svc::Payment))
    }

    /// reservation-svc, called by manager `manager` of `talents`.
    pub fn reservation_as_manager(
        &self,
        manager: &str,
        talents: &[&str],
    ) -> ReservationServiceClient<AuthChannel> {
        ReservationServiceClient::new(
            self.with_token(Svc::Reservation, &self.identity.manager(manager, talents)),
        )
    }

    /// reservation-svc, called by customer `customer`.
    pub fn reservation_as_customer(&self, customer: &str) -> ReservationServiceClient<AuthChannel> {
        ReservationServiceClient::new(
            self.with_token(Svc::Reservation, &self.identity.customer(customer)),
        )
    }

    /// mypage-svc, called by customer `customer`.
    pub fn mypage_as(&self, customer: &str) -> MyPageServiceClient<AuthChannel> {
        MyPageServiceClient::new(self.with_token(Svc::MyPage, &self.identity.customer(customer)))
    }

    /// Waits until my page's row for `order_id` of `customer` satisfies `pred`; returns
    /// it. Asks as that customer: my page shows a row only to its owner (until the
    /// first event arrives the answer is PERMISSION_DENIED, so it keeps polling). On
    /// timeout the panic shows the last answer and the services' recent logs.
    pub async fn wait_mypage(
        &self,
        customer: &str,
        order_id: &str,
        what: &str,
        pred: impl Fn(&MyPageEntry) -> bool,
    ) -> MyPageEntry {
        let mut client = self.mypage_as(customer);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last;
        loop {
            match client
                .get_my_page_entry(GetMyPageEntryRequest {
                    order_id: order_id.to_owned(),
                })
                .await
            {
                Ok(r) => match r.into_inner().entry {
                    Some(entry) if pred(&entry) => return entry,
                    other => last = format!("{other:?}"),
                },
                Err(status) => last = format!("{status:?}"),
            }
            if tokio::time::Instant::now() >= deadline {
                let logs: String = [Svc::Order, Svc::Payment, Svc::Reservation, Svc::MyPage]
                    .iter()
                    .map(|s| format!("--- {}:\n{}", s.binary(), tail(&self.output(*s), 30)))
                    .collect();
                panic!("timed out waiting for {what}; last answer: {last}\n{logs}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every service and removes the run's databases and topology.
    pub async fn shutdown(mut self) {
        for mut replica in self.replicas.drain(..) {
            replica.signal("TERM");
            replica.wait(Duration::from_secs(30)).await;
        }
        for svc in [Svc::Order, Svc::Reservation, Svc::MyPage, Svc::Payment] {
            if self.processes.contains_key(&svc) {
                self.stop_service(svc).await;
            }
        }
        self.broker.delete().await;
        for (_, db) in self.databases.drain() {
            db.drop_database().await;
        }
    }
}
