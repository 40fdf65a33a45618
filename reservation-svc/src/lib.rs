//! reservation-svc (being written).
