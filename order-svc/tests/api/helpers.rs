//! `spawn_app` and friends: build the real order-svc and the real payment-svc from
//! real settings, overriding only the ports (0), the databases (fresh, one each) and
//! the broker names (per test). order-svc reaches payment-svc through a
//! [`TcpProxy`], so a test can take payment-svc away and bring it back.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use talentshare_proto::events::EventEnvelope;
use talentshare_proto::order::{
    GetOrderRequest, ListOrdersRequest, Order, PlaceOrderRequest,
    order_service_client::OrderServiceClient,
};
use talentshare_proto::payment::{
    BookingDetails, GetPaymentRequest, ListPaymentsRequest, PayRequest, Payment, RefundRequest,
    get_payment_request::Lookup, payment_service_client::PaymentServiceClient,
};
use testkit::{
    AuthChannel, Backend, Dependency, ServiceFlags, Spawned, TcpProxy, TestBroker, TestDatabase,
    TestIdentity,
};
use tonic::transport::Channel;

pub use testkit::wait_until;

pub const APPROVED_CARD: &str = "4242 4242 4242 4242";
pub const DECLINED_CARD: &str = "4000000000000002";

/// Settings that let the reconciler act within a test's patience: Pay attempts
/// count as over after 500 ms (the Pay deadline must be shorter, see
/// `PaymentCallerSettings::validate`), and it looks every 100 ms.
pub const FAST_RECONCILER: &[&str] = &[
    "--payment-timeout",
    "250ms",
    "--reconcile-after",
    "500ms",
    "--reconcile-interval",
    "100ms",
];

/// Like [`FAST_RECONCILER`] but with the background task asleep, so only
/// CancelOrder settles pending orders.
pub const FAST_GRACE_NO_RECONCILER: &[&str] = &[
    "--payment-timeout",
    "250ms",
    "--reconcile-after",
    "500ms",
    "--reconcile-interval",
    "10m",
];

/// How a test wants its services.
#[derive(Default)]
pub struct Options {
    /// Start with payment-svc unreachable (the proxy's port closed).
    pub payment_down: bool,
    /// Extra order-svc flags.
    pub args: &'static [&'static str],
}

/// Another order-svc process on the test's database (see [`TestApp::start_replica`]).
pub struct Replica {
    /// The replica as [`CUSTOMER`].
    pub client: OrderServiceClient<AuthChannel>,
    service: Spawned,
}

impl Replica {
    /// Drains the replica.
    pub async fn stop(self) {
        self.service.stop().await;
    }
}

/// The customer [`TestApp::client`] acts as (the one [`place_request`] orders for).
pub const CUSTOMER: &str = "cust-1";

pub struct TestApp {
    /// order-svc as [`CUSTOMER`].
    pub client: OrderServiceClient<AuthChannel>,
    /// order-svc's channel without credentials, for other callers.
    pub channel: Channel,
    /// Signs the tokens order-svc accepts.
    pub identity: TestIdentity,
    /// payment-svc, directly (not through the proxy), for assertions.
    pub payment: PaymentServiceClient<Channel>,
    pub db: TestDatabase,
    pub broker: TestBroker,
    /// Between order-svc and payment-svc.
    pub proxy: TcpProxy,
    /// Every event drained from the all-events queue so far.
    seen: Mutex<Vec<EventEnvelope>>,
    service: Spawned,
    payment_app: Dependency,
}

/// A ready order-svc on `database_url` and the topology of `exchange`, calling
/// payment-svc at `payment_url`, trusting `identity`, with `extra` flags.
async fn start(
    database_url: &str,
    exchange: &str,
    payment_url: &str,
    identity: &TestIdentity,
    extra: &[&str],
) -> Spawned {
    let settings = ServiceFlags::new(database_url, exchange)
        .args(["--consumer-retry-max-delay", "500ms"])
        .args(["--payment-url", payment_url])
        .args(identity.args())
        .args(extra)
        .parse();
    testkit::spawn(order_svc::SERVICE_NAME, settings, order_svc::start).await
}

/// A ready order-svc and payment-svc on fresh databases and a fresh topology.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

/// Like [`spawn_app`], as `options` say.
pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    spawn_app_trusting(backend, options, TestIdentity::create()).await
}

/// Like [`spawn_app_with`], with order-svc trusting `identity` (whose JWKS the test
/// prepared, e.g. with more keys) from its start.
pub async fn spawn_app_trusting(
    backend: Backend,
    options: Options,
    identity: TestIdentity,
) -> TestApp {
    let broker = TestBroker::create().await;
    let payment_app = Dependency::spawn(
        backend,
        broker.exchange(),
        payment_svc::SERVICE_NAME,
        payment_svc::start,
    )
    .await;
    let proxy = if options.payment_down {
        TcpProxy::start_cut(payment_app.service.addr).await
    } else {
        TcpProxy::start(payment_app.service.addr).await
    };

    let db = TestDatabase::create(backend).await;
    // Readiness depends on order-svc's own database only, not on payment-svc.
    let service = start(
        db.url(),
        broker.exchange(),
        &format!("http://{}", proxy.addr()),
        &identity,
        options.args,
    )
    .await;
    TestApp {
        client: OrderServiceClient::new(identity.as_customer(service.channel.clone(), CUSTOMER)),
        channel: service.channel.clone(),
        identity,
        payment: PaymentServiceClient::new(payment_app.service.channel.clone()),
        db,
        broker,
        proxy,
        seen: Mutex::new(Vec::new()),
        service,
        payment_app,
    }
}

/// A valid PlaceOrder request for a new order, a week ahead.
pub fn place_request(card: &str) -> PlaceOrderRequest {
    let start = Utc::now() + TimeDelta::days(7);
    PlaceOrderRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        customer_id: CUSTOMER.into(),
        talent_id: "talent-7".into(),
        session_start_time: Some(prost_types::Timestamp {
            seconds: start.timestamp(),
            nanos: 0,
        }),
        session_minutes: 60,
        amount_minor: 15_000,
        currency: "KRW".into(),
        card_number: card.into(),
    }
}

/// The Pay request order-svc sends for `order` placed from `req`.
pub fn pay_request_for(order: &Order, req: &PlaceOrderRequest) -> PayRequest {
    PayRequest {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        amount_minor: order.amount_minor,
        currency: order.currency.clone(),
        card_number: req.card_number.clone(),
        booking: Some(BookingDetails {
            talent_id: order.talent_id.clone(),
            session_start_time: order.session_start_time,
            session_minutes: order.session_minutes,
        }),
    }
}

impl TestApp {
    /// order-svc as customer `id`.
    pub fn client_as(&self, id: &str) -> OrderServiceClient<AuthChannel> {
        OrderServiceClient::new(self.identity.as_customer(self.channel.clone(), id))
    }

    /// Places an order that must succeed.
    /// Where order-svc serves metrics, when started with `--metrics-addr`.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.service.metrics_addr
    }

    /// Where order-svc listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.service.addr
    }

    /// Where payment-svc listens (directly, not through the proxy).
    pub fn payment_addr(&self) -> std::net::SocketAddr {
        self.payment_app.service.addr
    }

    pub async fn place(&mut self, req: PlaceOrderRequest) -> Order {
        self.client
            .place_order(req)
            .await
            .expect("place order")
            .into_inner()
            .order
            .expect("order in response")
    }

    /// One order, which must exist.
    pub async fn get(&mut self, order_id: &str) -> Order {
        self.client
            .get_order(GetOrderRequest {
                order_id: order_id.to_owned(),
            })
            .await
            .expect("get order")
            .into_inner()
            .order
            .expect("order in response")
    }

    /// The customer's orders (first page of 100).
    pub async fn orders_of(&mut self, customer_id: &str) -> Vec<Order> {
        self.client_as(customer_id)
            .list_orders(ListOrdersRequest {
                page_size: 100,
                customer_id: customer_id.to_owned(),
                ..Default::default()
            })
            .await
            .expect("list orders")
            .into_inner()
            .orders
    }

    /// payment-svc's payment for an order, if any.
    pub async fn payment_of(&mut self, order_id: &str) -> Option<Payment> {
        match self
            .payment
            .get_payment(GetPaymentRequest {
                lookup: Some(Lookup::OrderId(order_id.to_owned())),
            })
            .await
        {
            Ok(r) => r.into_inner().payment,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => panic!("get payment: {s}"),
        }
    }

    /// Every payment payment-svc holds for the customer.
    pub async fn payments_of(&mut self, customer_id: &str) -> Vec<Payment> {
        self.payment
            .list_payments(ListPaymentsRequest {
                page_size: 100,
                customer_id: customer_id.to_owned(),
                ..Default::default()
            })
            .await
            .expect("list payments")
            .into_inner()
            .payments
    }

    /// Waits until the order reaches `status`, and returns it.
    pub async fn wait_for_status(
        &self,
        order_id: &str,
        status: talentshare_proto::order::OrderStatus,
    ) -> Order {
        wait_until(
            &format!("order {order_id} to be {status:?}"),
            Duration::from_secs(20),
            || {
                let mut client = self.client.clone();
                let order_id = order_id.to_owned();
                async move {
                    let order = client
                        .get_order(GetOrderRequest { order_id })
                        .await
                        .ok()?
                        .into_inner()
                        .order?;
                    (order.status == status as i32).then_some(order)
                }
            },
        )
        .await
    }

    /// The queue mypage-svc would read (bound to every event).
    pub fn all_events_queue(&self) -> String {
        self.broker.all_events_queue()
    }

    /// A second order-svc replica on the same database and topology, reaching payment-svc
    /// directly rather than through the proxy, started with `args`.
    pub async fn start_replica(&self, args: &[&str]) -> Replica {
        let service = start(
            self.db.url(),
            self.broker.exchange(),
            &self.payment_app.service.url(),
            &self.identity,
            args,
        )
        .await;
        Replica {
            client: OrderServiceClient::new(
                self.identity.as_customer(service.channel.clone(), CUSTOMER),
            ),
            service,
        }
    }

    /// A connection to order-svc's database for assertions.
    pub async fn db(&self) -> DatabaseConnection {
        self.db.connect().await
    }

    /// Rows in `orders`.
    pub async fn order_rows(&self) -> Vec<order_svc::store::entity::Model> {
        self.db.rows::<order_svc::store::entity::Entity>().await
    }

    /// Makes every write that would turn an order CANCELLED fail, as a database
    /// error (or a crash) between a Refund and recording its cancellation would. A
    /// trigger, so the service's own code runs unchanged and only the write fails.
    pub async fn fail_cancelled_writes(&self) {
        let conn = self.db().await;
        let statements: &[&str] = match conn.get_database_backend() {
            DbBackend::Postgres => &[
                "CREATE FUNCTION fail_cancelled() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'injected failure: no CANCELLED'; END $$",
                "CREATE TRIGGER fail_cancelled BEFORE UPDATE ON orders FOR EACH ROW \
                 WHEN (NEW.status = 'CANCELLED') EXECUTE FUNCTION fail_cancelled()",
            ],
            _ => &["CREATE TRIGGER fail_cancelled BEFORE UPDATE ON orders \
                 WHEN NEW.status = 'CANCELLED' \
                 BEGIN SELECT RAISE(ABORT, 'injected failure: no CANCELLED'); END"],
        };
        for sql in statements {
            conn.execute_unprepared(sql).await.expect("install trigger");
        }
        let _ = conn.close().await;
    }

    /// Undoes [`TestApp::fail_cancelled_writes`].
    pub async fn allow_cancelled_writes(&self) {
        let conn = self.db().await;
        let statements: &[&str] = match conn.get_database_backend() {
            DbBackend::Postgres => &[
                "DROP TRIGGER fail_cancelled ON orders",
                "DROP FUNCTION fail_cancelled()",
            ],
            _ => &["DROP TRIGGER fail_cancelled"],
        };
        for sql in statements {
            conn.execute_unprepared(sql).await.expect("drop trigger");
        }
        let _ = conn.close().await;
    }

    /// Records a cancellation request for a PAID order through order-svc's own store,
    /// as CancelOrder does before it refunds.
    pub async fn request_cancellation(&self, order_id: &str, reason: &str) {
        let conn = self.db().await;
        let store =
            order_svc::store::OrderStore::new(conn.clone(), platform::outbox::OutboxSignal::new());
        let order_id = order_id.parse().expect("order id");
        let order = testkit::retry_write("request cancellation", || {
            store.request_cancellation(order_id, Some(reason.into()))
        })
        .await;
        assert!(order.cancel_request().is_some(), "a paid order records it");
        let _ = conn.close().await;
    }

    /// Refunds a payment at payment-svc directly (not through order-svc).
    pub async fn refund_directly(&mut self, payment_id: &str, reason: &str) -> Payment {
        self.payment
            .refund(RefundRequest {
                payment_id: payment_id.to_owned(),
                reason: reason.to_owned(),
            })
            .await
            .expect("refund directly")
            .into_inner()
            .payment
            .expect("payment in response")
    }

    /// Rows still waiting in order-svc's outbox.
    pub async fn outbox_len(&self) -> u64 {
        self.db.outbox_len().await
    }

    /// Every `order.*` event order-svc has published so far, in publishing order.
    ///
    /// Waits for order-svc's outbox to be empty first
    /// ([`TestDatabase::wait_outbox_drained`]), so what the queue yields then is the
    /// complete list.
    pub async fn order_events(&self) -> Vec<EventEnvelope> {
        self.db.wait_outbox_drained().await;
        let drained = self.broker.drain(&self.all_events_queue()).await;
        let mut seen = self.seen.lock().unwrap();
        seen.extend(drained.iter().map(|e| e.envelope()));
        seen.iter()
            .filter(|e| e.event_type.starts_with("order."))
            .cloned()
            .collect()
    }

    /// The `order.*` events of one order, as `(routing key, aggregate version)`.
    pub async fn event_log(&self, order_id: &str) -> Vec<(String, i64)> {
        self.order_events()
            .await
            .into_iter()
            .filter(|e| e.order_id == order_id)
            .map(|e| (e.event_type, e.aggregate_version))
            .collect()
    }

    /// Stops both services (graceful shutdown) and cleans up databases and topology.
    pub async fn stop(self) {
        self.service.stop().await;
        self.payment_app.stop().await;
        self.broker.delete().await;
        self.db.drop_database().await;
    }
}

/// `(routing key, version)` pairs, for comparing event logs.
pub fn log(entries: &[(&str, i64)]) -> Vec<(String, i64)> {
    entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}
