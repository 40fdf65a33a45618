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

/// A callee that notes each Check attempt's `grpc-timeout` and answers every call
/// UNAVAILABLE after `busy`, so the caller retries.
#[derive(Clone)]
struct Busy {
    seen: std::sync::Arc<std::sync::Mutex<Vec<Duration>>>,
    busy: Duration,
}

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Busy {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        let header = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_suffix('m'))
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(Duration::from_millis)
            .expect("every attempt carries a grpc-timeout in milliseconds");
        self.seen.lock().unwrap().push(header);
        tokio::time::sleep(self.busy).await;
        Err(tonic::Status::unavailable("busy"))
    }

    type WatchStream = std::pin::Pin<
        Box<
            dyn futures::Stream<Item = Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>
                + Send,
        >,
    >;

    // A busy callee is busy for every call: Watch gets the same answer as Check.
    async fn watch(
        &self,
        _: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        tokio::time::sleep(self.busy).await;
        Err(tonic::Status::unavailable("busy"))
    }
}

#[tokio::test]
async fn every_retry_carries_only_the_time_left_of_the_callers_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let busy = Busy {
        seen: Default::default(),
        busy: Duration::from_millis(300),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(tonic_health::pb::health_server::HealthServer::new(
                busy.clone(),
            ))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    // The policy allows 5 s; the caller asks for 1 s, which must win, retries included.
    let ch = channel(addr, Duration::from_secs(5));
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let err = HealthClient::new(ch.clone())
        .check(request)
        .await
        .unwrap_err();
    let took = started.elapsed();

    let seen = busy.seen.lock().unwrap().clone();
    assert!(
        // The last attempt may be cut by its own (short) grpc-timeout: tonic reports
        // that as CANCELLED.
        matches!(
            err.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
        ),
        "{err:?}"
    );
    assert!(seen.len() >= 2, "the call was retried: {seen:?}");
    assert!(seen[0] <= Duration::from_secs(1), "{seen:?}");
    for pair in seen.windows(2) {
        // Each attempt started at least `busy` after the one before it.
        assert!(
            pair[1] + Duration::from_millis(300) <= pair[0],
            "each retry carries only the time left: {seen:?}"
        );
    }
    assert!(took < Duration::from_millis(1500), "took {took:?}");
}
