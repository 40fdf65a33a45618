//! order-svc integration tests: the real service on port 0 in front of a real
//! payment-svc (each on a fresh database, SQLite and PostgreSQL) and the real
//! RabbitMQ (a topology per test).

mod helpers;

mod access;
mod anti_entropy;
mod auth;
mod cancel;
mod grpc_web;
mod interrupted_cancel;
mod late_pay;
mod lifecycle;
mod metrics;
mod place;
mod queries;
mod reconcile;
mod rejected;
mod validation;
