//! reservation-svc integration tests: the real service on port 0, against SQLite and
//! PostgreSQL (a fresh database per test), the real RabbitMQ (a topology per test)
//! and a real payment-svc started in-process on the same exchange.

mod helpers;

mod access;
mod anti_entropy;
mod cancel;
mod confirm;
mod lifecycle;
mod payment_down;
mod pending_rejection;
mod queries;
mod reject;
mod requested;
mod validation;
