//! The resilient client channel against real sockets: fail fast once the breaker
//! opens, recover through a probe once the callee is back, and give up at the deadline
//! when the callee accepts connections but never answers.

use std::time::{Duration, Instant};

use platform::client::{BreakerSettings, BreakerState, CallPolicy, ResilientChannel, lazy_channel};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn always(_: &str) -> bool {
    true
}

fn channel(addr: std::net::SocketAddr, timeout: Duration) -> ResilientChannel {
    ResilientChannel::new(
        "test-callee",
        lazy_channel(&format!("http://{addr}"), timeout, 16).unwrap(),
        CallPolicy {
            timeout,
            retries: 2,
            idempotent: always,
        },
        BreakerSettings {
            failures: 3,
            cooldown: Duration::from_millis(300),
        },
    )
}

async fn check(ch: &ResilientChannel) -> Result<(), tonic::Status> {
    HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn breaker_fails_fast_while_the_callee_is_down_and_closes_once_it_is_back() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let ch = channel(addr, Duration::from_secs(2));

    for _ in 0..3 {
        let err = check(&ch).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    }
    assert_eq!(ch.breaker_state(), BreakerState::Open);
    // The message proves no call went out: the breaker answered by itself.
    let err = check(&ch).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("circuit open"), "{err:?}");

    // The callee comes back on the same port.
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    testkit::wait_until(
        "breaker closes after a successful probe",
        Duration::from_secs(10),
        || async {
            (check(&ch).await.is_ok() && ch.breaker_state() == BreakerState::Closed).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_callee_that_never_answers_costs_one_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept connections and hold them open without ever speaking HTTP/2.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let ch = channel(addr, Duration::from_millis(400));

    let started = Instant::now();
    let err = check(&ch).await.unwrap_err();
    let took = started.elapsed();

    assert!(
        matches!(
            err.code(),
            Code::DeadlineExceeded | Code::Unavailable | Code::Cancelled
        ),
        "{err:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "bounded by the deadline, took {took:?}"
    );
}
