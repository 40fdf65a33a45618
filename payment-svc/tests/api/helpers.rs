//! `spawn_app` and friends: build the real payment-svc from real settings, overriding
//! only the port (0), the database (fresh) and the broker names (per test).

use talentshare_proto::payment::{
    BookingDetails, PayRequest, payment_service_client::PaymentServiceClient,
};
use testkit::{Backend, ServiceFlags, Spawned, TestBroker, TestDatabase};

pub use testkit::wait_until;

pub struct TestApp {
    pub client: PaymentServiceClient<tonic::transport::Channel>,
    pub db: TestDatabase,
    pub broker: TestBroker,
    service: Spawned,
}

/// Settings as the binary would parse them, with the test's overrides.
pub fn settings(database_url: &str, exchange: &str, amqp_url: &str) -> payment_svc::Settings {
    ServiceFlags::with_amqp(database_url, exchange, amqp_url).parse()
}

/// A ready payment-svc on a fresh database and topology.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with_amqp(backend, &testkit::amqp_url()).await
}

/// Like [`spawn_app`], with the service's AMQP URL chosen by the test (a proxy).
pub async fn spawn_app_with_amqp(backend: Backend, amqp_url: &str) -> TestApp {
    let db = TestDatabase::create(backend).await;
    let broker = TestBroker::create().await;
    let service = testkit::spawn(
        payment_svc::SERVICE_NAME,
        settings(db.url(), broker.exchange(), amqp_url),
        payment_svc::start,
    )
    .await;
    TestApp {
        client: PaymentServiceClient::new(service.channel.clone()),
        db,
        broker,
        service,
    }
}

impl TestApp {
    /// The queue mypage-svc would read (bound to every event).
    pub fn all_events_queue(&self) -> String {
        self.broker.all_events_queue()
    }

    /// Rows in `payments`.
    pub async fn payment_rows(&self) -> Vec<payment_svc::store::entity::Model> {
        self.db.rows::<payment_svc::store::entity::Entity>().await
    }

    /// Rows still waiting in the outbox.
    pub async fn outbox_len(&self) -> u64 {
        self.db.outbox_len().await
    }

    /// Stops the service (graceful shutdown) and cleans up the database and topology.
    pub async fn stop(self) {
        self.service.stop().await;
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
