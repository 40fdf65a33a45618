//! `spawn_app` and friends: build the real reservation-svc from real settings,
//! overriding only the port (0), the database (fresh), the broker names (per test)
//! and `PAYMENT_URL`, which points at a real payment-svc started the same way on its
//! own fresh database and the same test exchange (or at a port nobody answers on).

use std::time::Duration;

use platform::envelope::NewEvent;
use prost::Message;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
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
use testkit::{
    AuthChannel, Backend, Dependency, ReceivedEvent, ServiceFlags, Spawned, TestBroker,
    TestDatabase, TestIdentity,
};
use tonic::transport::Channel;

pub use testkit::{closed_port_url, wait_until};

use platform::outbox::OutboxSignal;
use platform::values::ExternalId;
use reservation_svc::domain::RejectReason;
use reservation_svc::store::{Claimed, ReservationStore, entity};

/// The session every test booking is for.
pub const SESSION_START_SECONDS: i64 = 1_900_000_000;

/// A real payment-svc serving one test.
struct PaymentApp {
    app: Dependency,
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
    service: Spawned,
}

/// A ready reservation-svc calling a ready payment-svc, both on fresh databases of
/// `backend` and one fresh topology.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with_args(backend, &[]).await
}

/// Like [`spawn_app`], with extra reservation-svc flags.
pub async fn spawn_app_with_args(backend: Backend, extra: &[&str]) -> TestApp {
    let broker = TestBroker::create().await;
    let payment = spawn_payment(backend, broker.exchange()).await;
    spawn_with(backend, broker, payment, "3s", extra).await
}

/// Like [`spawn_app_with_args`], with payment-svc publishing to a topology of its own:
/// reservation-svc never hears its `payment.approved`, as if every one were lost.
pub async fn spawn_app_deaf_to_payments(backend: Backend, extra: &[&str]) -> TestApp {
    let broker = TestBroker::create().await;
    let elsewhere = TestBroker::create().await;
    let mut payment = spawn_payment(backend, elsewhere.exchange()).await;
    payment.own_broker = Some(elsewhere);
    spawn_with(backend, broker, payment, "3s", extra).await
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
    let extra = ["--reconcile-after", after, "--reconcile-interval", interval];
    spawn_with(backend, broker, payment, payment_timeout, &extra).await
}

/// A ready reservation-svc whose `PAYMENT_URL` is `payment_url`, with no payment-svc
/// behind it (a closed port, or a server that never answers).
pub async fn spawn_app_without_payment(
    backend: Backend,
    payment_url: &str,
    payment_timeout: &str,
) -> TestApp {
    let broker = TestBroker::create().await;
    start(backend, broker, None, payment_url, payment_timeout, &[]).await
}

async fn spawn_payment(backend: Backend, exchange: &str) -> PaymentApp {
    let app = Dependency::spawn(
        backend,
        exchange,
        payment_svc::SERVICE_NAME,
        payment_svc::start,
    )
    .await;
    PaymentApp {
        app,
        own_broker: None,
    }
}

/// A ready reservation-svc calling `payment` directly.
async fn spawn_with(
    backend: Backend,
    broker: TestBroker,
    payment: PaymentApp,
    payment_timeout: &str,
    extra: &[&str],
) -> TestApp {
    let url = payment.app.service.url();
    start(backend, broker, Some(payment), &url, payment_timeout, extra).await
}

/// A ready reservation-svc on a fresh database of `backend`, calling payment-svc at
/// `payment_url`, as [`MANAGER`], with `extra` flags.
async fn start(
    backend: Backend,
    broker: TestBroker,
    payment: Option<PaymentApp>,
    payment_url: &str,
    payment_timeout: &str,
    extra: &[&str],
) -> TestApp {
    let db = TestDatabase::create(backend).await;
    let identity = TestIdentity::create();
    let settings = ServiceFlags::new(db.url(), broker.exchange())
        .args([
            "--payment-url",
            payment_url,
            "--payment-timeout",
            payment_timeout,
        ])
        .args(identity.args())
        .args(extra)
        .parse();
    let service = testkit::spawn(
        reservation_svc::SERVICE_NAME,
        settings,
        reservation_svc::start,
    )
    .await;
    TestApp {
        client: ReservationServiceClient::new(identity.as_manager(
            service.channel.clone(),
            MANAGER,
            MANAGED,
        )),
        channel: service.channel.clone(),
        identity,
        db,
        broker,
        payment,
        service,
    }
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
        PaymentServiceClient::new(self.payment_app().service.channel.clone())
    }

    fn payment_app(&self) -> &Dependency {
        &self
            .payment
            .as_ref()
            .expect("this test runs payment-svc")
            .app
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
        self.payment_app().db.wait_outbox_drained().await;
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
        self.broker.all_events_queue()
    }

    /// Every event on the bus since the last call, once this service's outbox is
    /// empty (a row leaves it only after the broker confirmed it). payment-svc's
    /// events are among them only as far as its own relay has published them.
    pub async fn all_events(&self) -> Vec<ReceivedEvent> {
        self.db.wait_outbox_drained().await;
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
        self.db.rows::<entity::Entity>().await
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
        let reservation_id = uuid::Uuid::parse_str(reservation_id).expect("a reservation id");
        let manager_id = ExternalId::try_from(manager_id.to_owned()).expect("a manager id");
        let reason = RejectReason::try_from(reason.to_owned()).expect("a reason");
        let claimed = testkit::retry_write("record the rejection", || {
            store.claim_rejection(reservation_id, &manager_id, &reason)
        })
        .await;
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
        self.db.outbox_len().await
    }

    /// Stops both services (graceful shutdown) and cleans up databases and topology.
    pub async fn stop(self) {
        self.service.stop().await;
        if let Some(p) = self.payment {
            p.app.stop().await;
            if let Some(b) = p.own_broker {
                b.delete().await;
            }
        }
        self.broker.delete().await;
        self.db.drop_database().await;
    }
}
