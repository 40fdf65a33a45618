//! The mypage-svc binary.
fn main() {}
