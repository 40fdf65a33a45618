//! order-svc: talentshare's `OrderService`. It places an order, pays for it through
//! payment-svc before answering (a booking is complete only with a completed
//! payment), cancels and refunds it, and ends it when the talent's manager rejects
//! the booking. Every state change is announced through the transactional outbox.
//!
//! - [`domain`]: the pure core (order terms, the status state machine, versions);
//! - [`store`]: sea-orm storage, migrations and conditional changes;
//! - [`service`]: the use cases that span storage and payment-svc;
//! - [`payment`]: what payment-svc's answers mean for an order, over the shared
//!   `payment-client` gateway;
//! - [`grpc`]: the gRPC adapter and the error-to-status `match`;
//! - [`consumer`]: the `reservation.rejected` event handler;
//! - [`reconciler`]: the background task that settles orders left PENDING_PAYMENT
//!   and finishes cancellations interrupted after their refund;
//! - [`anti_entropy`]: the background pass that compares decided orders with their
//!   payments and repairs what a lost event left wrong;
//! - [`events`]: domain events to `talentshare.events.v1` payloads.
//!
//! [`start`] runs the service from [`Settings`]; the binary, `talentshare` and the
//! tests all use it.

pub mod anti_entropy;
pub mod consumer;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod payment;
pub mod reconciler;
pub mod service;
pub mod store;

use std::net::SocketAddr;

use clap::Parser;
use payment_client::PaymentCallerSettings;
use platform::{Host, PlatformSettings, RunningService, ServiceDef};
use talentshare_proto::order::order_service_server::OrderServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Full gRPC name of the service; also its readiness health-check name.
pub const SERVICE_NAME: &str = "talentshare.order.v1.OrderService";

/// What the platform needs to know about order-svc.
pub const SERVICE: ServiceDef = ServiceDef {
    slug: "order",
    grpc_service: SERVICE_NAME,
    descriptor_sets: &[talentshare_proto::FILE_DESCRIPTOR_SET],
    access: platform::Access::EndUsers,
    broker: platform::amqp::ORDER_SVC,
};

/// order-svc settings: flags, each with an environment-variable fallback.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "order-svc",
    version,
    about = "talentshare OrderService: places orders, pays them through payment-svc, cancels and refunds them"
)]
pub struct Settings {
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,
    #[command(flatten)]
    pub platform: PlatformSettings,
    #[command(flatten)]
    pub auth: platform::auth::AuthSettings,
    #[command(flatten)]
    pub payments: PaymentCallerSettings,
}

/// Binds, then runs order-svc until `shutdown` fires.
///
/// # Errors
///
/// Settings that disagree, an address that cannot be bound, or a bad database or
/// payment-svc URL. A database or payment-svc that is merely down is no error: the
/// service starts, and readiness waits for the database only.
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    settings.payments.validate()?;
    let max_message = settings.platform.server.max_message_bytes as usize;
    let host = Host::bind(
        SERVICE,
        settings.grpc_addr,
        settings.platform,
        Some(&settings.auth),
    )
    .await?;
    let channel = settings
        .payments
        .payment
        .channel(Some(host.metrics().clone()))?;
    let payments = payment::PaymentGateway::new(channel);
    let store = store::OrderStore::new(host.db().clone(), host.outbox_signal().clone());
    let orders = service::Orders::new(store, payments, settings.payments.reconcile.reconcile_after);
    let service = OrderServiceServer::new(grpc::OrderApi::new(orders.clone()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let tasks = vec![
        host.consumer(consumer::QUEUE, consumer::Handler).into(),
        reconciler::task(
            orders.clone(),
            settings.payments.reconcile.reconcile_interval,
        ),
        anti_entropy::task(orders, settings.payments.anti_entropy),
    ];
    Ok(host.start::<store::Migrator>(Routes::new(service), tasks, shutdown))
}
