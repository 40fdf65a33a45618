//! The order-svc binary.
fn main() {}
