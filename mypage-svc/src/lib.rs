//! mypage-svc: talentshare's `MyPageService`, the customer's view of their
//! bookings. A read model (CQRS) built only from the events on the bus: it calls
//! no other service, so it keeps answering while they are down, and one row per
//! order converges to the same state whatever the order and repetition of the
//! events that built it.
//!
//! - [`domain`]: the pure core (an entry and how an event folds into it);
//! - [`store`]: sea-orm storage, migrations, and the fold inside a transaction;
//! - [`consumer`]: the event handler, and ([`consumer::decode`]) the edge where
//!   `talentshare.events.v1` envelopes become domain events;
//! - [`changes`]: the fan-out of committed changes to watchers on every replica
//!   (through PostgreSQL NOTIFY/LISTEN, or in process on SQLite);
//! - [`service`]: the use cases (a page, an entry, opening a watch);
//! - [`grpc`]: the gRPC adapter and the error-to-status `match`;
//! - [`watch`]: the `WatchMyPage` stream.
//!
//! [`start`] runs the service from [`Settings`]; the binary, `talentshare` and the
//! tests all use it.

pub mod changes;
pub mod consumer;
pub mod domain;
pub mod grpc;
pub mod service;
pub mod store;
pub mod watch;

use std::net::SocketAddr;

use clap::Parser;
use platform::{Host, PlatformSettings, RunningService, ServiceDef};
use talentshare_proto::mypage::my_page_service_server::MyPageServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Full gRPC name of the service; also its readiness health-check name.
pub const SERVICE_NAME: &str = "talentshare.mypage.v1.MyPageService";

/// What the platform needs to know about mypage-svc.
pub const SERVICE: ServiceDef = ServiceDef {
    slug: "mypage",
    grpc_service: SERVICE_NAME,
    descriptor_sets: &[talentshare_proto::FILE_DESCRIPTOR_SET],
    access: platform::Access::EndUsers,
    broker: platform::amqp::MYPAGE_SVC,
};

/// How many committed changes the fan-out to WatchMyPage streams keeps for a
/// stream that is busy sending; a stream further behind ends with ABORTED.
pub const CHANGES_BACKLOG: usize = 1024;

/// mypage-svc settings: flags, each with an environment-variable fallback.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "mypage-svc",
    version,
    about = "talentshare MyPageService: the customer's read model of their bookings, built only from events"
)]
pub struct Settings {
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50054")]
    pub grpc_addr: SocketAddr,
    /// Most WatchMyPage streams open at once on this instance; more are refused
    /// with RESOURCE_EXHAUSTED.
    #[arg(long, env = "MAX_WATCHERS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_watchers: u32,
    #[command(flatten)]
    pub platform: PlatformSettings,
    #[command(flatten)]
    pub auth: platform::auth::AuthSettings,
}

/// Binds, then runs mypage-svc until `shutdown` fires.
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    let max_message = settings.platform.server.max_message_bytes as usize;
    let host = Host::bind(
        SERVICE,
        settings.grpc_addr,
        settings.platform,
        Some(&settings.auth),
    )
    .await?;
    // Replicas share the queue, so on PostgreSQL changes reach every replica's
    // watchers through the database; SQLite is one process.
    let (changes, listener) = if platform::db::is_postgres(host.db()) {
        let changes = changes::Changes::via_database(CHANGES_BACKLOG);
        let url = host.settings().database.url_for(SERVICE.slug)?;
        let listener = changes::listener(url, changes.clone());
        (changes, Some(listener))
    } else {
        (changes::Changes::in_process(CHANGES_BACKLOG), None)
    };
    let store = store::MyPageStore::new(host.db().clone());
    let handler = consumer::Handler::new(changes.clone());
    let tasks = std::iter::once(host.consumer(consumer::QUEUE, handler).into())
        .chain(listener)
        .collect();
    let my_page = service::MyPage::new(
        store,
        changes,
        settings.max_watchers as usize,
        shutdown.clone(),
    );
    let api = grpc::MyPageApi::new(my_page);
    let service = MyPageServiceServer::new(api)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    Ok(host.start::<store::Migrator>(Routes::new(service), tasks, shutdown))
}
