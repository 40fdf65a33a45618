//! One booking is one trace: the four services export their spans over OTLP/gRPC to a
//! small receiver inside the test, and the spans of one PlaceOrder link up from the
//! caller's `traceparent` through Pay, the outbox, RabbitMQ and both consumers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{Svc, System};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use talentshare_proto::order::PlaceOrderRequest;
use talentshare_proto::reservation::ReservationStatus;
use tokio_util::sync::CancellationToken;

use crate::{GOOD_CARD, place_order};

/// One span as received, ids in hex.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: SpanKind,
    /// The `order_id` attribute (handlers and consumers record it).
    order_id: Option<String>,
}

/// An OTLP/gRPC trace receiver keeping every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                let order_id = span
                    .attributes
                    .iter()
                    .find(|a| a.key == "order_id")
                    .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                        Value::StringValue(s) => Some(s.clone()),
                        _ => None,
                    });
                kept.push(Received {
                    order_id,
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    kind: span.kind(),
                    name: span.name,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Receiver {
    async fn start(stop: CancellationToken) -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Self::default();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                )
                .await
                .expect("OTLP receiver");
        });
        (receiver, addr)
    }

    fn trace(&self, trace_id: &str) -> Vec<Received> {
        let spans = self.0.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

/// The span of `service` of `kind` named `name` that is a child of `parent`, directly
/// or through the service's own internal spans (a handler's `#[instrument]` span).
fn find<'a>(
    spans: &'a [Received],
    service: &str,
    kind: SpanKind,
    name: &str,
    parent: &str,
) -> Option<&'a Received> {
    spans.iter().find(|s| {
        if s.service != service || s.kind != kind || s.name != name {
            return false;
        }
        let mut up = s.parent.as_str();
        loop {
            if up == parent {
                return true;
            }
            match spans.iter().find(|p| p.span_id == up) {
                Some(p) if p.service == service && p.kind == SpanKind::Internal => {
                    up = p.parent.as_str();
                }
                _ => return false,
            }
        }
    })
}

/// The spans as an indented tree under `root` (the caller's span id).
fn tree(spans: &[Received], root: &str) -> String {
    let mut children: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for s in spans {
        children.entry(s.parent.as_str()).or_default().push(s);
    }
    fn walk(
        out: &mut String,
        children: &BTreeMap<&str, Vec<&Received>>,
        parent: &str,
        depth: usize,
    ) {
        for s in children.get(parent).into_iter().flatten() {
            out.push_str(&format!(
                "{}{} [{}] {:?} span {}\n",
                "  ".repeat(depth),
                s.name,
                s.service,
                s.kind,
                s.span_id
            ));
            walk(out, children, &s.span_id, depth + 1);
        }
    }
    let mut out = format!("caller span {root}\n");
    walk(&mut out, &children, root, 1);
    out
}

/// The four services exporting to a receiver of the test's, every 100 ms, with `env`.
async fn exporting_system(stop: &CancellationToken, env: &[(&str, &str)]) -> (Receiver, System) {
    let (receiver, addr) = Receiver::start(stop.clone()).await;
    let endpoint = format!("http://{addr}");
    let mut all = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    all.extend_from_slice(env);
    (receiver, System::start_with_env(&all).await)
}

/// Books for `customer` and waits until my page shows the reservation (every hop
/// done); returns the order id.
async fn book(
    system: &System,
    customer: &str,
    request: tonic::Request<PlaceOrderRequest>,
) -> String {
    let order = system
        .order_as(customer)
        .place_order(request)
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    system
        .wait_mypage(customer, &order.order_id, "reservation requested", |e| {
            e.reservation_status() == ReservationStatus::Requested
        })
        .await;
    order.order_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_booking_is_one_trace_from_place_order_through_pay_the_broker_and_both_consumers() {
    // Arrange: the services export to the receiver, quickly.
    let stop = CancellationToken::new();
    let (receiver, system) = exporting_system(&stop, &[("LOG_FORMAT", "json")]).await;
    // The caller's own trace, which the booking must continue.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let mut request = tonic::Request::new(place_order("alice", GOOD_CARD));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller}-01").parse().unwrap(),
    );

    // Act
    let order_id = book(&system, "alice", request).await;

    // Assert: the chain of spans, each the child of the one before, in one trace.
    let place = "/talentshare.order.v1.OrderService/PlaceOrder";
    let pay = "/talentshare.payment.v1.PaymentService/Pay";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let linked = |spans: Vec<Received>| {
        let placed = find(&spans, "order-svc", SpanKind::Server, place, &caller)?;
        let call = find(&spans, "order-svc", SpanKind::Client, pay, &placed.span_id)?;
        let paid = find(&spans, "payment-svc", SpanKind::Server, pay, &call.span_id)?;
        let approved = find(
            &spans,
            "payment-svc",
            SpanKind::Producer,
            "payment.approved publish",
            &paid.span_id,
        )?;
        let booked = find(
            &spans,
            "reservation-svc",
            SpanKind::Consumer,
            "payment.approved process",
            &approved.span_id,
        )?;
        let requested = find(
            &spans,
            "reservation-svc",
            SpanKind::Producer,
            "reservation.requested publish",
            &booked.span_id,
        )?;
        find(
            &spans,
            "mypage-svc",
            SpanKind::Consumer,
            "reservation.requested process",
            &requested.span_id,
        )?;
        find(
            &spans,
            "mypage-svc",
            SpanKind::Consumer,
            "payment.approved process",
            &approved.span_id,
        )?;
        find(
            &spans,
            "order-svc",
            SpanKind::Producer,
            "order.placed publish",
            &placed.span_id,
        )?;
        Some(spans)
    };
    let chain = loop {
        if let Some(chain) = linked(receiver.trace(&trace_id)) {
            break chain;
        }
        if tokio::time::Instant::now() > deadline {
            let all = receiver.0.lock().unwrap().clone();
            panic!(
                "the booking's spans did not link up; received {} spans:\n{}\n{all:#?}",
                all.len(),
                tree(&receiver.trace(&trace_id), &caller)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let printed = tree(&chain, &caller);
    println!("trace {trace_id}\n{printed}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/observability");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("span-tree.txt"),
        format!("trace {trace_id}\n{printed}"),
    );
    // Every span of the trace hangs under the caller's, and every consumer span of any
    // trace that names this order is in this one: no event started a trace of its own
    // (the test's own GetMyPageEntry polls are traces of their own, rightly).
    let ids: Vec<&str> = chain.iter().map(|s| s.span_id.as_str()).collect();
    for s in &chain {
        assert!(
            s.parent == caller || ids.contains(&s.parent.as_str()),
            "{s:?} has a parent outside the trace:\n{printed}"
        );
    }
    let all = receiver.0.lock().unwrap().clone();
    let of_order: Vec<&Received> = all
        .iter()
        .filter(|s| {
            s.kind == SpanKind::Consumer && s.order_id.as_deref() == Some(order_id.as_str())
        })
        .collect();
    assert!(
        of_order.len() >= 5,
        "the consumers' spans name the order: {of_order:#?}"
    );
    for s in of_order {
        assert_eq!(s.trace_id, trace_id, "{s:?} is in another trace");
    }

    // Assert: the log lines written while handling it carry its trace id.
    for (svc, message) in [
        (Svc::Order, "place order"),
        (Svc::Payment, "pay"),
        (Svc::Reservation, "reservation event applied"),
    ] {
        let output = system.output(svc);
        assert!(
            output
                .lines()
                .any(|l| l.contains(&format!("\"message\":\"{message}\""))
                    && l.contains(&format!("\"trace_id\":\"{trace_id}\""))),
            "no `{message}` line with trace id {trace_id} from {svc:?}"
        );
    }

    system.shutdown().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_sdk_disabled_exports_nothing_even_with_an_endpoint() {
    let stop = CancellationToken::new();
    let (receiver, system) = exporting_system(&stop, &[("OTEL_SDK_DISABLED", "true")]).await;

    book(
        &system,
        "bob",
        tonic::Request::new(place_order("bob", GOOD_CARD)),
    )
    .await;
    // SIGTERM makes an enabled SDK flush every span it holds before the exit, so
    // once the four have exited nothing more can arrive: no sleep needed.
    system.shutdown().await;

    let received = receiver.0.lock().unwrap().len();
    assert_eq!(received, 0, "spans exported with OTEL_SDK_DISABLED=true");
    stop.cancel();
}
