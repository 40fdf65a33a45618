//! payment-svc: talentshare's `PaymentService`. It charges a card once per order
//! (idempotent on the order id, also under concurrent calls), refunds once, and
//! announces every state change through the transactional outbox.
//!
//! - [`domain`]: the pure core (charge decision, refund transition);
//! - [`service`]: the use cases (charge, void, refund, reads);
//! - [`store`]: sea-orm storage and migrations, persistence only;
//! - [`grpc`]: the gRPC adapter and the error-to-status `match`;
//! - [`events`]: domain events to `talentshare.events.v1` payloads.
//!
//! [`start`] runs the service from [`Settings`]; the binary, `talentshare` and the
//! tests all use it.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod service;
pub mod store;

use std::net::SocketAddr;

use clap::Parser;
use platform::{Host, PlatformSettings, RunningService, ServiceDef};
use talentshare_proto::payment::payment_service_server::PaymentServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Full gRPC name of the service; also its readiness health-check name.
pub const SERVICE_NAME: &str = "talentshare.payment.v1.PaymentService";

/// What the platform needs to know about payment-svc.
pub const SERVICE: ServiceDef = ServiceDef {
    slug: "payment",
    grpc_service: SERVICE_NAME,
    descriptor_sets: &[talentshare_proto::FILE_DESCRIPTOR_SET],
    access: platform::Access::Internal,
    broker: platform::amqp::PAYMENT_SVC,
};

/// payment-svc settings: flags, each with an environment-variable fallback.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "payment-svc",
    version,
    about = "talentshare PaymentService: charges and refunds, idempotent per order"
)]
pub struct Settings {
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50052")]
    pub grpc_addr: SocketAddr,
    #[command(flatten)]
    pub platform: PlatformSettings,
}

/// Binds, then runs payment-svc until `shutdown` fires.
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    let max_message = settings.platform.server.max_message_bytes as usize;
    let host = Host::bind(SERVICE, settings.grpc_addr, settings.platform, None).await?;
    let store = store::PaymentStore::new(host.db().clone(), host.outbox_signal().clone());
    let payments = service::Payments::new(store);
    let service = PaymentServiceServer::new(grpc::PaymentApi::new(payments))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    Ok(host.start::<store::Migrator>(Routes::new(service), Vec::new(), shutdown))
}
