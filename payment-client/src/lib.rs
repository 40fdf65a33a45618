//! The client side of payment-svc, shared by order-svc and reservation-svc.
//!
//! - [`PaymentGateway`] and [`PaymentError`]: the calls, with plain values in and out,
//!   and one error type that says what the caller may do next;
//! - [`ResilientChannel`]: the channel under the gateway, built from tower layers
//!   (breaker, deadline, concurrency limit, budgeted retries, time-left per attempt;
//!   see [`channel`]);
//! - [`PaymentCallerSettings`] ([`PaymentClientSettings`], [`ReconcileSettings`],
//!   [`AntiEntropySettings`]): the settings of a caller.
//!
//! The deadline rule, which the callers' reconcilers rely on: a call ends by its
//! deadline (PAYMENT_TIMEOUT, or the caller's shorter `grpc-timeout`) on the caller's
//! clock, retries included, and every attempt tells payment-svc only the time left.
//! payment-svc's clock for `grpc-timeout` starts when the request arrives, so a
//! request held on a slow link can still run after the caller's deadline: nothing
//! that must be safe rests on deadlines alone (giving up an unpaid order rests on a
//! Void at payment-svc).

pub mod attempt;
pub mod breaker;
pub mod channel;
pub mod deadline;
pub mod gateway;
pub mod retry;
pub mod settings;
mod verdict;

pub use breaker::{BreakerSettings, BreakerState};
pub use channel::{CallPolicy, ResilientChannel, lazy_channel};
pub use gateway::{Charge, Closing, Lookup, Payment, PaymentError, PaymentGateway, PaymentStatus};
pub use retry::RetrySettings;
pub use settings::{
    AntiEntropySettings, PaymentCallerSettings, PaymentClientSettings, ReconcileSettings,
};

/// The error type of the layers: a transport error or a body error, boxed as tonic
/// expects.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
