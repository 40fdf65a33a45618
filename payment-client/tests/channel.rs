//! The resilient channel's layers against real sockets: fail fast once the breaker
//! opens, recover through a probe once the callee is back, and give up at the deadline
//! when the callee accepts connections but never answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use payment_client::{
    BreakerSettings, BreakerState, CallPolicy, ResilientChannel, RetrySettings, lazy_channel,
};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn always(_: &str) -> bool {
    true
}

fn channel(addr: std::net::SocketAddr, timeout: Duration) -> ResilientChannel {
    ResilientChannel::new(
        "test-callee",
        lazy_channel(&format!("http://{addr}"), Duration::from_secs(1)).unwrap(),
        CallPolicy {
            timeout,
            retry: RetrySettings {
                retries: 2,
                idempotent: always,
            },
            max_concurrency: 16,
            breaker: BreakerSettings {
                failures: 3,
                cooldown: Duration::from_millis(300),
            },
        },
        None,
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
#[derive(Clone, Default)]
struct Busy {
    seen: std::sync::Arc<std::sync::Mutex<Vec<Duration>>>,
    busy: Duration,
    in_flight: std::sync::Arc<AtomicUsize>,
    most_in_flight: std::sync::Arc<AtomicUsize>,
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
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.busy).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
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
        busy: Duration::from_millis(300),
        ..Busy::default()
    };
    serve(listener, busy.clone());
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

fn serve(listener: tokio::net::TcpListener, callee: Busy) {
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(tonic_health::pb::health_server::HealthServer::new(callee))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
}

async fn busy_callee(busy: Duration) -> (std::net::SocketAddr, Busy) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let callee = Busy {
        busy,
        ..Busy::default()
    };
    serve(listener, callee.clone());
    (addr, callee)
}

fn never(_: &str) -> bool {
    false
}

fn policy(
    timeout: Duration,
    idempotent: fn(&str) -> bool,
    max_concurrency: usize,
    breaker_failures: u32,
) -> CallPolicy {
    CallPolicy {
        timeout,
        retry: RetrySettings {
            retries: 2,
            idempotent,
        },
        max_concurrency,
        breaker: BreakerSettings {
            failures: breaker_failures,
            cooldown: Duration::from_secs(60),
        },
    }
}

#[tokio::test]
async fn a_method_not_marked_idempotent_is_sent_once() {
    let (addr, callee) = busy_callee(Duration::ZERO).await;
    let inner = lazy_channel(&format!("http://{addr}"), Duration::from_secs(1)).unwrap();
    let ch = ResilientChannel::new(
        "test-callee",
        inner,
        policy(Duration::from_secs(2), never, 4, 100),
        None,
    );

    let err = check(&ch).await.unwrap_err();

    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(callee.seen.lock().unwrap().len(), 1, "no retry");
}

#[tokio::test]
async fn the_concurrency_limit_holds_calls_beyond_it_until_a_slot_frees() {
    let (addr, callee) = busy_callee(Duration::from_millis(200)).await;
    let inner = lazy_channel(&format!("http://{addr}"), Duration::from_secs(1)).unwrap();
    let ch = ResilientChannel::new(
        "test-callee",
        inner,
        policy(Duration::from_secs(5), never, 2, 100),
        None,
    );

    let calls = (0..6).map(|_| {
        let ch = ch.clone();
        async move { check(&ch).await }
    });
    let results = futures::future::join_all(calls).await;

    assert!(results.iter().all(|r| r.is_err()), "the callee is busy");
    assert_eq!(callee.seen.lock().unwrap().len(), 6, "every call went out");
    assert_eq!(
        callee.most_in_flight.load(Ordering::SeqCst),
        2,
        "never more than the limit at once, and the limit was reached"
    );
}

#[tokio::test]
async fn retries_stop_when_the_budget_is_spent() {
    let (addr, callee) = busy_callee(Duration::ZERO).await;
    let inner = lazy_channel(&format!("http://{addr}"), Duration::from_secs(1)).unwrap();
    // A breaker that never opens here, so only the budget can stop the retries.
    let ch = ResilientChannel::new(
        "test-callee",
        inner,
        policy(Duration::from_secs(5), always, 1000, 100_000),
        None,
    );
    let calls = 300usize;

    let results = futures::future::join_all((0..calls).map(|_| {
        let ch = ch.clone();
        async move { check(&ch).await }
    }))
    .await;

    assert!(results.iter().all(|r| r.is_err()));
    let attempts = callee.seen.lock().unwrap().len();
    // Unbudgeted, 2 retries each would make 900 attempts. The budget allows its
    // reserve (10 a second over 10 seconds) plus a fifth of the calls made.
    let allowed = calls + 100 + calls / 5;
    assert!(
        attempts > calls && attempts <= allowed + 5,
        "{attempts} attempts for {calls} calls; the budget allows {allowed}"
    );
}

#[tokio::test]
async fn each_attempt_is_counted_by_method_code_and_number_and_the_breaker_is_reported() {
    let (addr, _callee) = busy_callee(Duration::ZERO).await;
    let inner = lazy_channel(&format!("http://{addr}"), Duration::from_secs(1)).unwrap();
    let metrics = platform::metrics::Metrics::new("test", None);
    let ch = ResilientChannel::new(
        "test-callee",
        inner,
        policy(Duration::from_secs(5), always, 16, 100),
        Some(metrics.clone()),
    );

    let err = check(&ch).await.unwrap_err();

    let text = metrics.encode();
    for attempt in 1..=3 {
        let line = format!(
            "payment_client_attempts_total{{grpc_method=\"Check\",grpc_code=\"{}\",attempt=\"{attempt}\"}} 1",
            platform::metrics::code_label(err.code())
        );
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l == "payment_client_breaker_state{state=\"closed\"} 1"),
        "{text}"
    );
}
