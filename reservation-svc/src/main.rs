//! The reservation-svc binary.
fn main() {}
