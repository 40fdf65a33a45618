//! `spawn_app` and friends: build the real reservation-svc from real settings,
//! overriding only the port (0), the database (fresh), the broker names (per test)
//! and `PAYMENT_URL`, which points at a real payment-svc started the same way on its
//! own fresh database and the same test exchange (or at a port nobody answers on).

use std::time::Duration;

use clap::Parser;
use platform::RunningService;
use platform::envelope::NewEvent;
use prost::Message;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use talentshare_proto::events::{
    EventEnvelope, OrderCancelled, PaymentApproved, event_envelope::Payload,
};
use talentshare_proto::payment::{
    BookingDetails, GetPaymentRequest, PayRequest, Payment, PaymentStatus,
    get_payment_request::Lookup, payment_service_client::PaymentServiceClient,
};
use talentshare_proto::reservation::{
    GetReservationRequest, Reservation, reservation_service_client::ReservationServiceClient,
};
use testkit::{AuthChannel, Backend, ReceivedEvent, TestBroker, TestDatabase, TestIdentity};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

pub use testkit::wait_until;

use platform::outbox::OutboxSignal;
use platform::values::ExternalId;
use reservation_svc::domain::RejectReason;
use reservation_svc::store::{Claimed, ReservationStore, entity};

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

/// The session every test booking is for.
pub const SESSION_START_SECONDS: i64 = 1_900_000_000;

/// A real payment-svc serving one test.
struct PaymentApp {
    client: PaymentServiceClient<Channel>,
    db: TestDatabase,
    shutdown: CancellationToken,
    running: RunningService,
    /// The topology payment-svc publishes to when it is not the test's.
    own_broker: Option<TestBroker>,
}

/// The manager [`TestApp::client`] acts as.
pub const MANAGER: &str = "mgr-1";
/// The talents [`MANAGER`] manages: every talent the tests book.
pub const MANAGED: &[&str] = &["talent-7", "talent-a", "talent-b"];

pub struct TestApp {
    /// reservation-svc as [`MANAGER`].
    pub client: ReservationServiceClient<AuthChannel>,
    /// reservation-svc's channel without credentials, for other callers.
    pub channel: Channel,
    /// Signs the tokens reservation-svc accepts.
    pub identity: TestIdentity,
    pub db: TestDatabase,
    pub broker: TestBroker,
    payment: Option<PaymentApp>,
    shutdown: CancellationToken,
    running: Option<RunningService>,
}

/// Settings as the binary would parse them, with the test's overrides and `extra`
/// flags.
pub fn settings(
    database_url: &str,
    exchange: &str,
    payment_url: &str,
    payment_timeout: &str,
    identity: &TestIdentity,
    extra: &[&str],
) -> reservation_svc::Settings {
    platform::telemetry::init_for_tests();
    let auth = identity.args();
    let base = [
        "reservation-svc",
        "--grpc-addr",
        "127.0.0.1:0",
        "--database-url",
        database_url,
        "--events-exchange",
        exchange,
        "--amqp-url",
        &testkit::amqp_url(),
        "--outbox-poll-interval",
        "200ms",
        "--shutdown-grace",
        "5s",
        "--payment-url",
        payment_url,
        "--payment-timeout",
        payment_timeout,
    ];
    reservation_svc::Settings::try_parse_from(
        base.iter()
            .copied()
            .chain(auth.iter().map(String::as_str))
            .chain(extra.iter().copied()),
    )
    .expect("test settings parse")
}

/// A ready reservation-svc calling a ready payment-svc, both on fresh databases of
/// `backend` and one fresh topology.
pub async fn spawn_app(backend: Backend) -> TestApp {
    let broker = TestBroker::create().await;
    let payment = spawn_payment(backend, broker.exchange()).await;
    let url = format!("http://{}", payment.running.local_addr);
    spawn_with(backend, broker, Some(payment), &url, "3s", &[]).await
}

/// Like [`spawn_app`], with extra reservation-svc flags.
pub async fn spawn_app_with_args(backend: Backend, extra: &[&str]) -> TestApp {
    let broker = TestBroker::create().await;
    let payment = spawn_payment(backend, broker.exchange()).await;
    let url = format!("http://{}", payment.running.local_addr);
    spawn_with(backend, broker, Some(payment), &url, "3s", extra).await
}

/// Like [`spawn_app_with_args`], with payment-svc publishing to a topology of its own:
/// reservation-svc never hears its `payment.approved`, as if every one were lost.
pub async fn spawn_app_deaf_to_payments(backend: Backend, extra: &[&str]) -> TestApp {
    let broker = TestBroker::create().await;
    let elsewhere = TestBroker::create().await;
    let mut payment = spawn_payment(backend, elsewhere.exchange()).await;
    payment.own_broker = Some(elsewhere);
    let url = format!("http://{}", payment.running.local_addr);
    spawn_with(backend, broker, Some(payment), &url, "3s", extra).await
}

/// Like [`spawn_app`], with the rejection reconciler finishing claims older than
/// `after` every `interval`. The grace must exceed the Refund deadline, so that one
/// is `payment_timeout`.
pub async fn spawn_app_reconciling(
    backend: Backend,
    after: &str,
    interval: &str,
    payment_timeout: &str,
) -> TestApp {
    let broker = TestBroker::create().await;
    let payment = spawn_payment(backend, broker.exchange()).await;
    let url = format!("http://{}", payment.running.local_addr);
    let extra = ["--reconcile-after", after, "--reconcile-interval", interval];
    spawn_with(
        backend,
        broker,
        Some(payment),
        &url,
        payment_timeout,
        &extra,
    )
    .await
}

/// A ready reservation-svc whose `PAYMENT_URL` is `payment_url`, with no payment-svc
/// behind it (a closed port, or a server that never answers).
pub async fn spawn_app_without_payment(
    backend: Backend,
    payment_url: &str,
    payment_timeout: &str,
) -> TestApp {
    let broker = TestBroker::create().await;
    spawn_with(backend, broker, None, payment_url, payment_timeout, &[]).await
}

async fn spawn_payment(backend: Backend, exchange: &str) -> PaymentApp {
    let db = TestDatabase::create(backend).await;
    let s = payment_svc::Settings::try_parse_from([
        "payment-svc",
        "--grpc-addr",
        "127.0.0.1:0",
        "--database-url",
        db.url(),
        "--events-exchange",
        exchange,
        "--amqp-url",
        &testkit::amqp_url(),
        "--outbox-poll-interval",
        "200ms",
        "--shutdown-grace",
        "5s",
    ])
    .expect("payment test settings parse");
    let shutdown = CancellationToken::new();
    let running = payment_svc::start(s, shutdown.clone())
        .await
        .expect("start payment-svc");
    let channel = connect(running.local_addr).await;
    wait_ready(&channel, payment_svc::SERVICE_NAME).await;
    PaymentApp {
        client: PaymentServiceClient::new(channel),
        db,
        shutdown,
        running,
        own_broker: None,
    }
}

async fn spawn_with(
    backend: Backend,
    broker: TestBroker,
    payment: Option<PaymentApp>,
    payment_url: &str,
    payment_timeout: &str,
    extra: &[&str],
) -> TestApp {
    let db = TestDatabase::create(backend).await;
    let identity = TestIdentity::create();
    let s = settings(
        db.url(),
        broker.exchange(),
        payment_url,
        payment_timeout,
        &identity,
        extra,
    );
    let shutdown = CancellationToken::new();
    let running = reservation_svc::start(s, shutdown.clone())
        .await
        .expect("start reservation-svc");
    let channel = connect(running.local_addr).await;
    wait_ready(&channel, reservation_svc::SERVICE_NAME).await;
    TestApp {
        client: ReservationServiceClient::new(identity.as_manager(
            channel.clone(),
            MANAGER,
            MANAGED,
        )),
        channel,
        identity,
        db,
        broker,
        payment,
        shutdown,
        running: Some(running),
    }
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect to the service")
}

/// Waits until readiness of `service` says SERVING.
pub async fn wait_ready(channel: &Channel, service: &str) {
    wait_until("readiness SERVING", Duration::from_secs(20), || async {
        (testkit::health::check(channel.clone(), service).await == Ok(ServingStatus::Serving))
            .then_some(())
    })
    .await;
}

/// A `payment.approved` payload for made-up payment `payment_id` booking `talent_id`.
pub fn approval(payment_id: &str, talent_id: &str) -> Payload {
    Payload::PaymentApproved(PaymentApproved {
        payment_id: payment_id.to_owned(),
        amount_minor: 15_000,
        currency: "KRW".into(),
        card_last4: "4242".into(),
        talent_id: talent_id.into(),
        session_start_time: Some(prost_types::Timestamp {
            seconds: SESSION_START_SECONDS,
            nanos: 0,
        }),
        session_minutes: 90,
    })
}

/// A URL on which nothing listens: the port was free a moment ago.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}

impl TestApp {
    /// reservation-svc as customer `id`.
    pub fn as_customer(&self, id: &str) -> ReservationServiceClient<AuthChannel> {
        ReservationServiceClient::new(self.identity.as_customer(self.channel.clone(), id))
    }

    /// reservation-svc as manager `id` of `talents`.
    pub fn as_manager(&self, id: &str, talents: &[&str]) -> ReservationServiceClient<AuthChannel> {
        ReservationServiceClient::new(self.identity.as_manager(self.channel.clone(), id, talents))
    }

    /// A client of the real payment-svc (panics in tests that run without one).
    pub fn payments(&self) -> PaymentServiceClient<Channel> {
        self.payment
            .as_ref()
            .expect("this test runs payment-svc")
            .client
            .clone()
    }

    /// Pays for a new order of `customer-1` booking `talent_id`, through the real
    /// payment-svc; its `payment.approved` then reaches reservation-svc.
    pub async fn pay(&self, talent_id: &str) -> Payment {
        self.pay_for(&uuid::Uuid::now_v7().to_string(), talent_id)
            .await
    }

    /// Like [`TestApp::pay`], for a chosen order id. Returns once payment-svc has
    /// published the approval, so an event published afterwards queues behind it.
    pub async fn pay_for(&self, order_id: &str, talent_id: &str) -> Payment {
        let payment = self
            .payments()
            .pay(PayRequest {
                order_id: order_id.to_owned(),
                customer_id: "cust-1".into(),
                amount_minor: 15_000,
                currency: "KRW".into(),
                card_number: "4242 4242 4242 4242".into(),
                booking: Some(BookingDetails {
                    talent_id: talent_id.into(),
                    session_start_time: Some(prost_types::Timestamp {
                        seconds: SESSION_START_SECONDS,
                        nanos: 0,
                    }),
                    session_minutes: 90,
                }),
            })
            .await
            .expect("pay")
            .into_inner()
            .payment
            .expect("a payment");
        let payment_db = &self
            .payment
            .as_ref()
            .expect("this test runs payment-svc")
            .db;
        wait_until(
            "payment-svc's outbox drained",
            Duration::from_secs(10),
            || async {
                let conn = payment_db.connect().await;
                let n = platform::outbox::entity::Entity::find()
                    .count(&conn)
                    .await
                    .expect("count payment outbox");
                let _ = conn.close().await;
                (n == 0).then_some(())
            },
        )
        .await;
        payment
    }

    /// Pays, then waits for the reservation the approval creates.
    pub async fn book(&self, talent_id: &str) -> (Payment, Reservation) {
        let payment = self.pay(talent_id).await;
        let reservation = self.reservation_of(&payment.order_id).await;
        (payment, reservation)
    }

    /// Waits until the order's reservation exists, then reads it through the API.
    pub async fn reservation_of(&self, order_id: &str) -> Reservation {
        let id = wait_until(
            "the order's reservation",
            Duration::from_secs(20),
            || async {
                self.rows_of(order_id)
                    .await
                    .into_iter()
                    .next()
                    .map(|r| r.reservation_id)
            },
        )
        .await;
        self.get(&id).await
    }

    /// GetReservation as the customer every test booking belongs to (`cust-1`), who
    /// may see it in every state (a tombstone has no talent, so no manager may).
    pub async fn get(&self, reservation_id: &str) -> Reservation {
        self.as_customer("cust-1")
            .get_reservation(GetReservationRequest {
                reservation_id: reservation_id.to_owned(),
            })
            .await
            .expect("get reservation")
            .into_inner()
            .reservation
            .expect("a reservation")
    }

    /// Publishes an event as its upstream service would (a sealed envelope with a new
    /// event id) and returns it, so a test can publish it again.
    pub async fn publish(&self, order_id: &str, payload: Payload) -> EventEnvelope {
        let env = NewEvent {
            aggregate_id: uuid::Uuid::now_v7().to_string(),
            aggregate_version: 1,
            order_id: order_id.to_owned(),
            customer_id: "cust-1".into(),
            payload,
        }
        .into_envelope();
        self.republish(&env).await;
        env
    }

    /// Publishes `env` as it is (a redelivery keeps its event id).
    pub async fn republish(&self, env: &EventEnvelope) {
        self.broker
            .publish_raw(&env.event_type, &env.encode_to_vec(), Default::default())
            .await;
    }

    /// Publishes `order.cancelled` for `order_id`.
    pub async fn cancel_order(&self, order_id: &str, payment_id: &str) -> EventEnvelope {
        self.publish(
            order_id,
            Payload::OrderCancelled(OrderCancelled {
                payment_id: payment_id.to_owned(),
                reason: "plans changed".into(),
                refunded: !payment_id.is_empty(),
            }),
        )
        .await
    }

    /// Publishes `payment.approved` for a new order, with no payment-svc involved.
    pub async fn publish_approval(&self, talent_id: &str) -> EventEnvelope {
        let payment_id = uuid::Uuid::now_v7().to_string();
        self.publish(
            &uuid::Uuid::now_v7().to_string(),
            approval(&payment_id, talent_id),
        )
        .await
    }

    /// Waits until the consumer has handled everything published before this call,
    /// leaving no trace in the service: the queue is consumed first in, first out,
    /// so once a poison marker published now reaches the dead-letter queue, every
    /// earlier event was handled.
    pub async fn barrier(&self) {
        let mut marker = NewEvent {
            aggregate_id: "barrier".into(),
            aggregate_version: 1,
            order_id: uuid::Uuid::now_v7().to_string(),
            customer_id: "barrier".into(),
            payload: Payload::PaymentApproved(PaymentApproved::default()),
        }
        .into_envelope();
        // A payload that does not match its type is poison: dead-lettered unread.
        marker.payload = Some(Payload::OrderCancelled(OrderCancelled::default()));
        self.republish(&marker).await;
        let dead = self.dead_letters(1).await;
        assert!(
            dead.iter().any(|d| d.body == marker.encode_to_vec()),
            "the barrier marker was dead-lettered"
        );
    }

    /// Waits for `n` messages in this service's dead-letter queue and takes them.
    pub async fn dead_letters(&self, n: usize) -> Vec<ReceivedEvent> {
        let dlq = self.broker.topology.dead_letter_queue("reservation");
        let got = self.broker.collect(&dlq, n, Duration::from_secs(20)).await;
        assert!(
            got.len() >= n,
            "expected {n} dead letters, got {}",
            got.len()
        );
        got
    }

    /// The queue mypage-svc would read (bound to every event).
    pub fn all_events_queue(&self) -> String {
        self.broker.topology.queue("mypage")
    }

    /// Every event on the bus since the last call, once this service's outbox is
    /// empty (a row leaves it only after the broker confirmed it). payment-svc's
    /// events are among them only as far as its own relay has published them.
    pub async fn all_events(&self) -> Vec<ReceivedEvent> {
        wait_until("outbox drained", Duration::from_secs(10), || async {
            (self.outbox_len().await == 0).then_some(())
        })
        .await;
        self.broker.drain(&self.all_events_queue()).await
    }

    /// The `reservation.*` events published since the last call (see [`TestApp::all_events`]).
    pub async fn reservation_events(&self) -> Vec<ReceivedEvent> {
        self.all_events()
            .await
            .into_iter()
            .filter(|e| e.routing_key.starts_with("reservation."))
            .collect()
    }

    /// A connection to the service's database for assertions.
    pub async fn db(&self) -> DatabaseConnection {
        self.db.connect().await
    }

    /// Rows in `reservations`.
    pub async fn rows(&self) -> Vec<entity::Model> {
        let conn = self.db().await;
        let rows = entity::Entity::find()
            .all(&conn)
            .await
            .expect("read reservations");
        let _ = conn.close().await;
        rows
    }

    /// Rows of one order (the schema allows at most one).
    pub async fn rows_of(&self, order_id: &str) -> Vec<entity::Model> {
        let conn = self.db().await;
        let rows = entity::Entity::find()
            .filter(entity::Column::OrderId.eq(order_id))
            .all(&conn)
            .await
            .expect("read reservations");
        let _ = conn.close().await;
        rows
    }

    /// Records `manager_id`'s rejection of the reservation and goes no further, as a
    /// RejectReservation stopped (crashed, cut off) before its refund would.
    pub async fn claim_rejection(&self, reservation_id: &str, manager_id: &str, reason: &str) {
        let conn = self.db().await;
        let store = ReservationStore::new(conn.clone(), OutboxSignal::new());
        // On SQLite this second connection competes with the service's own one: a
        // write that lost the race (SQLITE_BUSY_SNAPSHOT) is simply tried again.
        let mut tries = 0;
        let claimed = loop {
            match store
                .claim_rejection(
                    uuid::Uuid::parse_str(reservation_id).expect("a reservation id"),
                    &ExternalId::try_from(manager_id.to_owned()).expect("a manager id"),
                    &RejectReason::try_from(reason.to_owned()).expect("a reason"),
                )
                .await
            {
                Ok(c) => break c,
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("record the rejection: {e:?}"),
            }
        };
        assert!(
            matches!(claimed, Claimed::Pending(..)),
            "a pending rejection: {claimed:?}"
        );
        let _ = conn.close().await;
    }

    /// The payment's status and refund reason, as payment-svc reports them.
    pub async fn payment_status(&self, payment_id: &str) -> (PaymentStatus, String) {
        let p = self
            .payments()
            .get_payment(GetPaymentRequest {
                lookup: Some(Lookup::PaymentId(payment_id.to_owned())),
            })
            .await
            .expect("get payment")
            .into_inner()
            .payment
            .expect("a payment");
        (p.status(), p.refund_reason)
    }

    /// Rows still waiting in the outbox.
    pub async fn outbox_len(&self) -> u64 {
        let conn = self.db().await;
        let n = platform::outbox::entity::Entity::find()
            .count(&conn)
            .await
            .expect("count outbox");
        let _ = conn.close().await;
        n
    }

    /// Stops both services (graceful shutdown) and cleans up databases and topology.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await.expect("reservation-svc stopped cleanly");
        }
        if let Some(p) = self.payment.take() {
            p.shutdown.cancel();
            p.running.wait().await.expect("payment-svc stopped cleanly");
            p.db.drop_database().await;
            if let Some(b) = p.own_broker {
                b.delete().await;
            }
        }
        self.broker.delete().await;
        self.db.drop_database().await;
    }
}
