//! The outcome layer on a real server: a handler's INTERNAL answer reaches the client
//! as "internal error" only, and the server logs one line with the method, the code
//! and the whole cause chain.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tonic::Code;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse, health_client::HealthClient};

#[derive(Debug, thiserror::Error)]
#[error("stored row is corrupt")]
struct Corrupt(#[source] std::io::Error);

struct Failing;

#[tonic::async_trait]
impl Health for Failing {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        if request.get_ref().service == "slow" {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
        Err(platform::status::internal(&Corrupt(std::io::Error::other(
            "disk gone",
        ))))
    }

    type WatchStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send>,
    >;

    // A failing callee fails every call: Watch gets the same answer as Check.
    async fn watch(
        &self,
        _: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(platform::status::internal(&Corrupt(std::io::Error::other(
            "disk gone",
        ))))
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_is_logged_once_with_its_cause_and_the_client_sees_none_of_it() {
    // One test: the log subscriber is global to the test binary.
    let logs = Captured::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(platform::outcome::OutcomeLayer)
            .add_service(HealthServer::new(Failing))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = testkit::connect(addr).await;

    let err = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();

    assert_eq!(err.code(), Code::Internal);
    assert_eq!(
        err.message(),
        "internal error",
        "no cause reaches the client"
    );
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("call failed")).collect();
    assert_eq!(lines.len(), 1, "one line per failed call: {text}");
    let line = lines[0];
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("/grpc.health.v1.Health/Check"), "{line}");
    assert!(
        line.contains("stored row is corrupt: disk gone"),
        "the whole chain: {line}"
    );

    // A call its deadline cuts never answers; the server drops it, and says so once.
    let mut slow = tonic::Request::new(HealthCheckRequest {
        service: "slow".into(),
    });
    slow.set_timeout(std::time::Duration::from_millis(200));
    let err = HealthClient::new(channel).check(slow).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{err:?}"
    );
    let dropped = testkit::wait_until(
        "the dropped call is logged",
        std::time::Duration::from_secs(5),
        || {
            let logs = logs.clone();
            async move {
                let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
                let lines: Vec<String> = text
                    .lines()
                    .filter(|l| l.contains("call dropped"))
                    .map(str::to_owned)
                    .collect();
                (!lines.is_empty()).then_some(lines)
            }
        },
    )
    .await;
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(dropped[0].contains("WARN"), "{dropped:?}");
}
