//! End-to-end: the four real binaries as separate processes, the real RabbitMQ and
//! PostgreSQL, each test on its own databases and broker names.

mod access;
mod broker_users;
mod flows;
mod pgbouncer;
mod pool;
mod resilience;
mod tracing;

use talentshare_proto::order::PlaceOrderRequest;

pub const GOOD_CARD: &str = "4242 4242 4242 4242";
pub const DECLINING_CARD: &str = "4000000000000002";
/// The manager of `coach-kim`, the talent every story books.
pub const MANAGER: &str = "manager-lee";

/// A PlaceOrder for a session a month from now.
pub fn place_order(customer: &str, card: &str) -> PlaceOrderRequest {
    let start = std::time::SystemTime::now() + std::time::Duration::from_secs(30 * 24 * 3600);
    let seconds = start
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs() as i64;
    PlaceOrderRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        customer_id: customer.into(),
        talent_id: "coach-kim".into(),
        session_start_time: Some(prost_types::Timestamp { seconds, nanos: 0 }),
        session_minutes: 60,
        amount_minor: 50_000,
        currency: "KRW".into(),
        card_number: card.into(),
    }
}
