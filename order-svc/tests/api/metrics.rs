//! Metrics: order-svc started with `--metrics-addr` answers `GET /metrics` in the
//! OpenMetrics text format: each call counted and timed by method and code, the
//! attempts of its calls to payment-svc and the breaker, the events its relay
//! published and the broker confirmed, the outbox backlog, the
//! database pool, readiness and the build; anything else on that port is 404.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::helpers::{APPROVED_CARD, Options, place_request, spawn_app_with, wait_until};
use testkit::Backend;
use testkit::on_both_backends;

on_both_backends!(calls_are_counted_by_method_and_code_and_served_on_the_metrics_port,);

/// The status line and body of a plain HTTP/1.0 GET.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("headers end");
    (head.to_owned(), body.to_owned())
}

/// The value of the sample `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())?
    })
}

async fn calls_are_counted_by_method_and_code_and_served_on_the_metrics_port(backend: Backend) {
    let mut app = spawn_app_with(
        backend,
        Options {
            args: &["--metrics-addr", "127.0.0.1:0"],
            ..Options::default()
        },
    )
    .await;
    let addr = app.metrics_addr().expect("metrics served");

    app.place(place_request(APPROVED_CARD)).await;
    app.place(place_request(APPROVED_CARD)).await;
    let mut bad = place_request(APPROVED_CARD);
    bad.talent_id.clear();
    let refused = app.client.place_order(bad).await.expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);

    let (head, text) = get(addr, "/metrics").await;
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "a complete exposition");
    let place = |code| {
        [
            ("grpc_service", "talentshare.order.v1.OrderService"),
            ("grpc_method", "PlaceOrder"),
            ("grpc_code", code),
        ]
    };
    assert_eq!(
        sample(&text, "grpc_server_handled_total", &place("OK")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "grpc_server_handled_total",
            &place("InvalidArgument")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "grpc_server_handling_seconds_count", &place("OK")),
        Some(2.0)
    );
    assert!(sample(&text, "grpc_server_handling_seconds_sum", &place("OK")).unwrap() > 0.0);
    // The readiness checks the test harness made are calls too.
    assert!(
        sample(
            &text,
            "grpc_server_handled_total",
            &[
                ("grpc_service", "grpc.health.v1.Health"),
                ("grpc_code", "OK")
            ]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(sample(&text, "service_ready", &[]), Some(1.0));
    assert_eq!(
        sample(&text, "talentshare_build_info", &[("service", "order")]),
        Some(1.0)
    );
    // Its calls to payment-svc, each paid at the first attempt, and the breaker.
    assert_eq!(
        sample(
            &text,
            "payment_client_attempts_total",
            &[
                ("grpc_method", "Pay"),
                ("grpc_code", "OK"),
                ("attempt", "1")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "payment_client_breaker_state",
            &[("state", "closed")]
        ),
        Some(1.0)
    );
    // The pool, read at the scrape; the relay's counts once it has published.
    assert!(sample(&text, "db_pool_max_connections", &[]).unwrap() >= 1.0);
    assert!(sample(&text, "db_pool_connections", &[("state", "idle")]).is_some());
    let text = wait_until(
        "both orders' events confirmed",
        Duration::from_secs(10),
        || async {
            let (_, text) = get(addr, "/metrics").await;
            let confirmed =
                |t| sample(&text, "outbox_events_confirmed_total", &[("event_type", t)]);
            (confirmed("order.placed") == Some(2.0) && confirmed("order.paid") == Some(2.0))
                .then_some(text)
        },
    )
    .await;
    assert_eq!(
        sample(
            &text,
            "outbox_events_published_total",
            &[("event_type", "order.paid")]
        ),
        Some(2.0)
    );
    assert!(
        sample(&text, "outbox_backlog_rows", &[]).is_some(),
        "{text}"
    );
    assert!(sample(&text, "outbox_oldest_event_age_seconds", &[]).is_some());
    // Nothing about the card or the token.
    assert!(!text.contains(APPROVED_CARD) && !text.to_lowercase().contains("bearer"));

    let (head, _) = get(addr, "/").await;
    assert!(head.contains(" 404 "), "{head}");
}
