//! mypage-svc (being written).
