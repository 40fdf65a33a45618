//! `spawn_app` and friends: build the real mypage-svc from real settings, overriding
//! only the port (0), the database (fresh) and the broker names (per test), plus
//! replicas sharing an app's database and queue; and `Story`, the events the real
//! services emit for one order, as real envelopes.

use std::time::Duration;

use platform::envelope::NewEvent;
use prost::Message;
use sea_orm::{EntityTrait, PaginatorTrait};
use talentshare_proto::events::{
    EventEnvelope, OrderCancelled, OrderPaid, OrderPaymentDeclined, OrderPlaced, PaymentApproved,
    PaymentDeclined, PaymentRefunded, ReservationCancelled, ReservationConfirmed,
    ReservationRequested, event_envelope::Payload,
};
use talentshare_proto::mypage::{
    GetMyPageEntryRequest, MyPageEntry, my_page_service_client::MyPageServiceClient,
};
use testkit::{
    AuthChannel, Backend, ServiceFlags, Spawned, TestBroker, TestDatabase, TestIdentity,
};
use tonic::Code;
use tonic::transport::Channel;

pub use testkit::wait_until;

/// How long a test waits for the consumer to apply what it published.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// The customer [`TestApp::client`] acts as.
pub const CUSTOMER: &str = "cust-1";

pub struct TestApp {
    /// mypage-svc as [`CUSTOMER`].
    pub client: MyPageServiceClient<AuthChannel>,
    /// mypage-svc's channel without credentials, for other callers.
    pub channel: Channel,
    /// Signs the tokens mypage-svc (and its replicas) accept.
    pub identity: TestIdentity,
    pub db: TestDatabase,
    pub broker: TestBroker,
    service: Spawned,
}

/// A second mypage-svc on the app's database and exchange, so on its queue too:
/// the two consume the queue's events between them, as replicas do. Its
/// `channel` has no credentials ([`TestApp::client_on`]).
pub type Replica = Spawned;

/// A ready mypage-svc on `database_url` and the topology of `exchange`, trusting
/// `identity`, with `extra` flags.
async fn start(
    database_url: &str,
    exchange: &str,
    identity: &TestIdentity,
    extra: &[&str],
) -> Spawned {
    let settings = ServiceFlags::new(database_url, exchange)
        .args(["--consumer-retry-max-delay", "500ms"])
        .args(identity.args())
        .args(extra)
        .parse();
    testkit::spawn(mypage_svc::SERVICE_NAME, settings, mypage_svc::start).await
}

/// A ready mypage-svc on a fresh database and topology.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Like [`spawn_app`], with extra command-line settings.
pub async fn spawn_app_with(backend: Backend, extra: &[&str]) -> TestApp {
    let db = TestDatabase::create(backend).await;
    let broker = TestBroker::create().await;
    let identity = TestIdentity::create();
    let service = start(db.url(), broker.exchange(), &identity, extra).await;
    TestApp {
        client: MyPageServiceClient::new(identity.as_customer(service.channel.clone(), CUSTOMER)),
        channel: service.channel.clone(),
        identity,
        db,
        broker,
        service,
    }
}

impl TestApp {
    /// mypage-svc as customer `id`.
    pub fn client_as(&self, id: &str) -> MyPageServiceClient<AuthChannel> {
        self.client_on(&self.channel, id)
    }

    /// The server behind `channel` (the app or a replica) as customer `id`.
    pub fn client_on(&self, channel: &Channel, id: &str) -> MyPageServiceClient<AuthChannel> {
        MyPageServiceClient::new(self.identity.as_customer(channel.clone(), id))
    }

    /// Starts a [`Replica`] of this app; [`Spawned::stop`] stops it and leaves the
    /// database and topology to the app.
    pub async fn spawn_replica(&self) -> Replica {
        start(self.db.url(), self.broker.exchange(), &self.identity, &[]).await
    }

    /// Waits until `n` consumers (one per running instance) take the app's queue,
    /// so that events published next are shared out between them.
    pub async fn wait_consumers(&self, n: u32) {
        let queue = self.broker.topology.queue(mypage_svc::consumer::QUEUE);
        let conn = lapin::Connection::connect(&testkit::amqp_url(), Default::default())
            .await
            .expect("connect to test RabbitMQ");
        let channel = conn.create_channel().await.expect("channel");
        wait_until(
            &format!("{n} consumers on {queue}"),
            Duration::from_secs(20),
            || async {
                let q = channel
                    .queue_declare(
                        queue.as_str().into(),
                        lapin::options::QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        Default::default(),
                    )
                    .await
                    .expect("the consumer's queue exists");
                (q.consumer_count() >= n).then_some(())
            },
        )
        .await;
        let _ = conn.close(200, "counted".into()).await;
    }

    /// Publishes `events` to the test exchange, in the given order, as the
    /// services' outbox relays would (routing key = event type).
    pub async fn publish(&self, events: &[EventEnvelope]) {
        for e in events {
            self.broker
                .publish_raw(&e.event_type, &e.encode_to_vec(), Default::default())
                .await;
        }
    }

    /// The entry of `order_id` as its customer sees it, or None while it is not there
    /// (PERMISSION_DENIED: the answer reads the same as for someone else's order).
    pub async fn entry(&self, customer: &str, order_id: &str) -> Option<MyPageEntry> {
        let res = self
            .client_as(customer)
            .get_my_page_entry(GetMyPageEntryRequest {
                order_id: order_id.to_owned(),
            })
            .await;
        match res {
            Ok(r) => Some(r.into_inner().entry.expect("a found entry is set")),
            Err(s) if s.code() == Code::PermissionDenied => None,
            Err(s) => panic!("GetMyPageEntry {order_id}: {s}"),
        }
    }

    /// Waits until the entry of `order_id` satisfies `done`, and returns it.
    pub async fn wait_entry(
        &self,
        customer: &str,
        order_id: &str,
        what: &str,
        done: impl Fn(&MyPageEntry) -> bool,
    ) -> MyPageEntry {
        wait_until(what, APPLY_TIMEOUT, || async {
            self.entry(customer, order_id).await.filter(|e| done(e))
        })
        .await
    }

    /// Waits until everything published before this call has been consumed: one
    /// consumer takes the queue in order, so once a marker event published now has
    /// been applied, so has everything before it (and duplicates were dropped).
    pub async fn settle(&self) {
        let marker = Story::new("settle-marker").placed();
        self.publish(&marker.events).await;
        self.wait_entry(
            &marker.customer_id,
            &marker.order_id,
            "the settle marker",
            |_| true,
        )
        .await;
    }

    /// Rows in `my_page_entries`.
    pub async fn row_count(&self) -> u64 {
        let conn = self.db.connect().await;
        let n = mypage_svc::store::entity::Entity::find()
            .count(&conn)
            .await
            .expect("count rows");
        let _ = conn.close().await;
        n
    }

    /// Starts the service's shutdown without waiting for it ([`TestApp::stop`] waits).
    pub fn begin_shutdown(&self) {
        self.service.begin_shutdown();
    }

    /// Stops the service (graceful shutdown) and cleans up the database and topology.
    pub async fn stop(self) {
        self.service.stop().await;
        self.broker.delete().await;
        self.db.drop_database().await;
    }
}

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// The events order-svc, payment-svc and reservation-svc emit for one order, with
/// the aggregate versions they use, each one second after the previous one.
#[derive(Clone)]
pub struct Story {
    pub order_id: String,
    pub payment_id: String,
    pub reservation_id: String,
    pub customer_id: String,
    pub events: Vec<EventEnvelope>,
}

/// When the first event of every story happened.
pub const STORY_START: i64 = 1_900_000_000;

impl Story {
    /// A new order of `customer_id`, with nothing happened yet.
    pub fn new(customer_id: &str) -> Self {
        Self {
            order_id: uuid::Uuid::now_v7().to_string(),
            payment_id: uuid::Uuid::now_v7().to_string(),
            reservation_id: uuid::Uuid::now_v7().to_string(),
            customer_id: customer_id.to_owned(),
            events: Vec::new(),
        }
    }

    fn then(mut self, aggregate_id: String, version: i64, payload: Payload) -> Self {
        let mut env = NewEvent {
            aggregate_id,
            aggregate_version: version,
            order_id: self.order_id.clone(),
            customer_id: self.customer_id.clone(),
            payload,
        }
        .into_envelope();
        env.occurred_at = ts(STORY_START + self.events.len() as i64);
        self.events.push(env);
        self
    }

    pub fn placed(self) -> Self {
        let id = self.order_id.clone();
        self.then(
            id,
            1,
            Payload::OrderPlaced(OrderPlaced {
                talent_id: "talent-7".into(),
                session_start_time: ts(STORY_START + 86_400),
                session_minutes: 60,
                amount_minor: 15_000,
                currency: "KRW".into(),
            }),
        )
    }

    pub fn approved(self) -> Self {
        let id = self.payment_id.clone();
        self.then(
            id.clone(),
            1,
            Payload::PaymentApproved(PaymentApproved {
                payment_id: id,
                amount_minor: 15_000,
                currency: "KRW".into(),
                card_last4: "4242".into(),
                talent_id: "talent-7".into(),
                session_start_time: ts(STORY_START + 86_400),
                session_minutes: 60,
            }),
        )
    }

    pub fn paid(self) -> Self {
        let (id, payment_id) = (self.order_id.clone(), self.payment_id.clone());
        self.then(id, 2, Payload::OrderPaid(OrderPaid { payment_id }))
    }

    /// payment-svc declines, then order-svc records it.
    pub fn declined(self) -> Self {
        let (order_id, payment_id) = (self.order_id.clone(), self.payment_id.clone());
        let reason = "DECLINE_REASON_INSUFFICIENT_FUNDS".to_owned();
        self.then(
            payment_id.clone(),
            1,
            Payload::PaymentDeclined(PaymentDeclined {
                payment_id: payment_id.clone(),
                amount_minor: 15_000,
                currency: "KRW".into(),
                decline_reason: reason.clone(),
            }),
        )
        .then(
            order_id,
            2,
            Payload::OrderPaymentDeclined(OrderPaymentDeclined {
                payment_id,
                decline_reason: reason,
            }),
        )
    }

    pub fn requested(self) -> Self {
        let (id, payment_id) = (self.reservation_id.clone(), self.payment_id.clone());
        self.then(
            id.clone(),
            1,
            Payload::ReservationRequested(ReservationRequested {
                reservation_id: id,
                payment_id,
                talent_id: "talent-7".into(),
                session_start_time: ts(STORY_START + 86_400),
                session_minutes: 60,
            }),
        )
    }

    pub fn confirmed(self) -> Self {
        let id = self.reservation_id.clone();
        self.then(
            id.clone(),
            2,
            Payload::ReservationConfirmed(ReservationConfirmed {
                reservation_id: id,
                manager_id: "manager-1".into(),
            }),
        )
    }

    /// The customer cancels a paid order: refund first, then the order records it.
    pub fn cancelled(self, order_version: i64) -> Self {
        let (order_id, payment_id) = (self.order_id.clone(), self.payment_id.clone());
        self.then(
            payment_id.clone(),
            2,
            Payload::PaymentRefunded(PaymentRefunded {
                payment_id: payment_id.clone(),
                amount_minor: 15_000,
                currency: "KRW".into(),
                reason: "changed my mind".into(),
            }),
        )
        .then(
            order_id,
            order_version,
            Payload::OrderCancelled(OrderCancelled {
                payment_id,
                reason: "changed my mind".into(),
                refunded: true,
            }),
        )
    }

    pub fn reservation_cancelled(self, version: i64) -> Self {
        let id = self.reservation_id.clone();
        self.then(
            id.clone(),
            version,
            Payload::ReservationCancelled(ReservationCancelled {
                reservation_id: id,
                reason: "changed my mind".into(),
            }),
        )
    }
}
