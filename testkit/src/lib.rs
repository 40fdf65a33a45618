//! Test support shared by the service tests and the end-to-end suite. Everything
//! here talks to the real local PostgreSQL and RabbitMQ; each helper gives a test
//! its own database and its own broker names, so tests run in parallel on shared
//! servers without seeing each other.
//!
//! - [`TestDatabase`]: a fresh SQLite file or a fresh PostgreSQL database;
//!   [`PgSessions`]: the server's sessions per database;
//! - [`TestBroker`]: a per-test exchange/queue topology, with reading helpers;
//! - [`BrokerUsers`]: a per-test vhost with one least-privilege user per service;
//! - [`TcpProxy`]: a proxy in front of a server that a test can cut and restore;
//! - [`wait_until`]: poll a condition with a deadline instead of sleeping;
//! - [`spawn()`]: a service in-process from its real settings ([`ServiceFlags`]),
//!   ready, as a [`Spawned`]; a [`Dependency`] is one on a database of its own;
//! - [`on_both_backends!`]: one test per [`Backend`] from one `async fn(Backend)`;
//! - [`ServiceProcess`]: a service binary as a real process, with its logs;
//! - [`health`]: gRPC health checks, and waiting for readiness;
//! - [`TestIdentity`]: a per-test signing key, its JWKS, and clients that send tokens.

mod broker;
mod broker_users;
mod database;
mod errors;
mod identity;
mod process;
mod proxy;
mod spawn;

pub use broker::{ReceivedEvent, TestBroker};
pub use broker_users::{BrokerUsers, USERS_EXCHANGE};
pub use database::{Backend, PgSessions, TestDatabase, postgres_server_url, retry_write};
pub use errors::{Details, details, expect_reason, violated_fields};
pub use identity::{AuthChannel, Bearer, TEST_ONLY_RSA_KEY_PEM, TestIdentity};
pub use process::{ServiceProcess, grpcurl};
pub use proxy::TcpProxy;
pub use spawn::{Dependency, ServiceFlags, Spawned, connect, spawn};

use std::future::Future;
use std::time::Duration;

/// AMQP URL of the test broker (`TEST_AMQP_URL`, default the local RabbitMQ).
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Polls `check` every 25 ms until it returns `Some`, or fails after `timeout` with
/// `what` in the message.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A `http://` URL on which nothing listens: the port was free a moment ago. For
/// a callee that is down from the start.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}

/// gRPC health checks against a running server.
pub mod health {
    use std::time::Duration;

    use tonic::transport::Channel;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    /// How long [`wait_ready`] waits: a service binary migrating a fresh PostgreSQL
    /// database on a busy CI machine needs the most.
    pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

    /// Waits until the readiness of `service` (its gRPC service name) says SERVING.
    ///
    /// # Panics
    /// If it does not within [`READY_TIMEOUT`].
    pub async fn wait_ready(channel: &Channel, service: &str) {
        crate::wait_until(&format!("{service} SERVING"), READY_TIMEOUT, || async {
            (check(channel.clone(), service).await == Ok(ServingStatus::Serving)).then_some(())
        })
        .await;
    }

    /// The status of `service` ("" for liveness), or the error code's name.
    pub async fn check(channel: Channel, service: &str) -> Result<ServingStatus, tonic::Code> {
        let mut client = HealthClient::new(channel);
        client
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(|r| r.into_inner().status())
            .map_err(|s| s.code())
    }
}
