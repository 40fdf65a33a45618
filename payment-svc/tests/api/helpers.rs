//! `spawn_app` and friends: build the real payment-svc from real settings, overriding
//! only the port (0), the database (fresh) and the broker names (per test).

use std::time::Duration;

use clap::Parser;
use platform::RunningService;
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use talentshare_proto::payment::{
    BookingDetails, PayRequest, payment_service_client::PaymentServiceClient,
};
use testkit::{Backend, TestBroker, TestDatabase};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

pub use testkit::wait_until;

/// Generates a `sqlite` and a `postgres` test for each listed `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(testkit::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(testkit::Backend::Postgres).await
                }
            }
        )*
    };
}

pub struct TestApp {
    pub client: PaymentServiceClient<Channel>,
    pub db: TestDatabase,
    pub broker: TestBroker,
    shutdown: CancellationToken,
    running: Option<RunningService>,
}

/// Settings as the binary would parse them, with the test's overrides.
pub fn settings(database_url: &str, exchange: &str, amqp_url: &str) -> payment_svc::Settings {
    platform::telemetry::init_for_tests();
    payment_svc::Settings::try_parse_from([
        "payment-svc",
        "--grpc-addr",
        "127.0.0.1:0",
        "--database-url",
        database_url,
        "--events-exchange",
        exchange,
        "--amqp-url",
        amqp_url,
        "--outbox-poll-interval",
        "200ms",
        "--shutdown-grace",
        "5s",
    ])
    .expect("test settings parse")
}

/// A ready payment-svc on a fresh database and topology.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with_amqp(backend, &testkit::amqp_url()).await
}

/// Like [`spawn_app`], with the service's AMQP URL chosen by the test (a proxy).
pub async fn spawn_app_with_amqp(backend: Backend, amqp_url: &str) -> TestApp {
    let db = TestDatabase::create(backend).await;
    let broker = TestBroker::create().await;
    let s = settings(db.url(), broker.exchange(), amqp_url);
    let shutdown = CancellationToken::new();
    let running = payment_svc::start(s, shutdown.clone())
        .await
        .expect("start payment-svc");
    let addr = running.local_addr;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to payment-svc");
    wait_ready(&channel).await;
    TestApp {
        client: PaymentServiceClient::new(channel),
        db,
        broker,
        shutdown,
        running: Some(running),
    }
}

/// Waits until readiness says SERVING.
pub async fn wait_ready(channel: &Channel) {
    wait_until("readiness SERVING", Duration::from_secs(20), || async {
        (testkit::health::check(channel.clone(), payment_svc::SERVICE_NAME).await
            == Ok(ServingStatus::Serving))
        .then_some(())
    })
    .await;
}

impl TestApp {
    /// The queue mypage-svc would read (bound to every event).
    pub fn all_events_queue(&self) -> String {
        self.broker.topology.queue("mypage")
    }

    /// A connection to the service's database for assertions.
    pub async fn db(&self) -> DatabaseConnection {
        self.db.connect().await
    }

    /// Rows in `payments`.
    pub async fn payment_rows(&self) -> Vec<payment_svc::store::entity::Model> {
        let conn = self.db().await;
        let rows = payment_svc::store::entity::Entity::find()
            .all(&conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        rows
    }

    /// Rows still waiting in the outbox.
    pub async fn outbox_len(&self) -> u64 {
        let conn = self.db().await;
        let n = platform::outbox::entity::Entity::find()
            .count(&conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        n
    }

    /// Stops the service (graceful shutdown) and cleans up the database and topology.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await.expect("payment-svc stopped cleanly");
        }
        self.broker.delete().await;
        self.db.drop_database().await;
    }
}

pub const APPROVED_CARD: &str = "4242 4242 4242 4242";

/// A valid Pay request for a new order.
pub fn pay_request(card: &str, amount_minor: i64) -> PayRequest {
    PayRequest {
        order_id: uuid::Uuid::now_v7().to_string(),
        customer_id: "cust-1".into(),
        amount_minor,
        currency: "USD".into(),
        card_number: card.into(),
        booking: Some(BookingDetails {
            talent_id: "talent-7".into(),
            session_start_time: Some(prost_types::Timestamp {
                seconds: 1_900_000_000,
                nanos: 0,
            }),
            session_minutes: 60,
        }),
    }
}
