//! mypage-svc integration tests: the real service on port 0, against SQLite and
//! PostgreSQL (a fresh database per test) and the real RabbitMQ (a topology per
//! test), fed with real event envelopes.

mod helpers;

mod access;
mod consume;
mod lifecycle;
mod queries;
mod replicas;
mod validation;
mod watch;
