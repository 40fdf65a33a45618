//! The runtime every talentshare service stands on, with no business rules:
//!
//! - [`settings`]: clap settings with environment fallbacks, validated at start;
//! - [`auth`]: end-user JWT authentication (one tower layer) and the typed caller;
//! - [`telemetry`]: tracing set-up, human or JSON;
//! - [`host`] and [`server`]: the gRPC server with health, reflection, limits, a
//!   readiness gate and graceful shutdown ([`shutdown`] turns signals into a token);
//! - [`db`] and [`migrations`]: sea-orm connection, migrations, platform tables;
//! - [`store`]: the persistence steps every service's store shares (row lock,
//!   insert-once, version-checked update, keyset paging, background batches);
//! - [`outbox`]: the transactional outbox and its relay to RabbitMQ;
//! - [`consumer`]: the event consumer with an idempotent inbox and dead-lettering;
//! - [`amqp`] and [`envelope`]: broker topology and the event envelope codec;
//! - [`status`]: error-to-gRPC-status helpers (field violations, database outages);
//! - [`outcome`]: one log line per failed call, with its cause chain;
//! - [`metrics`]: Prometheus metric families, the per-call layer, `GET /metrics`;
//! - [`walk`]: the cursor of a periodic pass over records (the anti-entropy passes);
//! - [`values`], [`time`], [`paging`]: re-exported from the pure `values` crate
//!   (validated ids, money, cards; timestamps; page tokens), which domain cores use
//!   directly;
//! - [`paging`] and [`backoff`]: small shared helpers.

pub mod amqp;
pub mod auth;
pub mod backoff;
pub mod consumer;
pub mod db;
pub mod envelope;
pub mod host;
pub mod metrics;
pub mod migrations;
pub mod outbox;
pub mod outcome;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod walk;

pub use ::values;
pub use ::values::{paging, time};
pub use host::{
    Access, BackgroundTask, Host, RunningService, ServiceDef, run_together, service_main,
};
pub use settings::{PlatformSettings, SecretUrl};
