//! order-svc (being written).
