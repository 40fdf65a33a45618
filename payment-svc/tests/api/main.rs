//! payment-svc integration tests: the real service on port 0, against SQLite and
//! PostgreSQL (a fresh database per test) and the real RabbitMQ (a topology per test).

mod helpers;

mod events;
mod lifecycle;
mod pay;
mod queries;
mod refund;
mod validation;
mod void;
