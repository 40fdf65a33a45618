//! reservation-svc: talentshare's `ReservationService`, the talent managers' side of
//! a booking. It creates one reservation per paid order from the `payment.approved`
//! event (so ordering never waits for it), lets a manager confirm it (after a unary
//! check that the payment is still approved) or reject it (recorded first, then a
//! unary refund, then REJECTED), cancels it when the order is cancelled, and
//! announces every change through the transactional outbox.
//!
//! - [`domain`]: the pure core (reservation state machine, tombstones, pending
//!   rejections);
//! - [`store`]: sea-orm storage and migrations;
//! - [`grpc`]: the gRPC adapter and the error-to-status `match`;
//! - [`service`]: the use cases (confirm; reject by claim, refund, reject), shared
//!   by the RPCs and the reconciler;
//! - [`reconciler`]: the background task that finishes rejections left pending;
//! - [`anti_entropy`]: the background pass that compares active bookings with their
//!   payments and cancels those whose `order.cancelled` was lost;
//! - [`consumer`]: the handler of `payment.approved` and `order.cancelled`;
//! - [`payment`]: the unary calls to payment-svc;
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
use talentshare_proto::reservation::reservation_service_server::ReservationServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Full gRPC name of the service; also its readiness health-check name.
pub const SERVICE_NAME: &str = "talentshare.reservation.v1.ReservationService";

/// What the platform needs to know about reservation-svc.
pub const SERVICE: ServiceDef = ServiceDef {
    slug: "reservation",
    grpc_service: SERVICE_NAME,
    descriptor_sets: &[talentshare_proto::FILE_DESCRIPTOR_SET],
    access: platform::Access::EndUsers,
    broker: platform::amqp::RESERVATION_SVC,
};

/// reservation-svc settings: flags, each with an environment-variable fallback.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "reservation-svc",
    version,
    about = "talentshare ReservationService: bookings for talent managers to confirm or reject"
)]
pub struct Settings {
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50053")]
    pub grpc_addr: SocketAddr,
    #[command(flatten)]
    pub platform: PlatformSettings,
    #[command(flatten)]
    pub auth: platform::auth::AuthSettings,
    #[command(flatten)]
    pub payments: PaymentCallerSettings,
}

/// Binds, then runs reservation-svc until `shutdown` fires. The event consumer and
/// the rejection reconciler start once migrations have run and stop with the service.
///
/// # Errors
///
/// Settings that disagree, an address that cannot be bound, or a bad database or
/// payment-svc URL. A payment-svc that is merely down is no error.
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
    let payment = payment::PaymentGateway::new(channel);
    let store = store::ReservationStore::new(host.db().clone(), host.outbox_signal().clone());
    let reservations = service::Reservations::new(store.clone(), payment.clone());
    let pass = anti_entropy::task(store, payment, settings.payments.anti_entropy);
    let service = ReservationServiceServer::new(grpc::ReservationApi::new(reservations.clone()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let tasks = vec![
        host.consumer(consumer::QUEUE, consumer::Handler).into(),
        reconciler::task(reservations, settings.payments.reconcile),
        pass,
    ];
    Ok(host.start::<store::Migrator>(Routes::new(service), tasks, shutdown))
}
