//! Time at the edges: `google.protobuf.Timestamp` to and from `chrono`, and "now",
//! all at microsecond precision — what PostgreSQL stores — so a value a service
//! computes, stores, returns and announces is the same on every backend.

use chrono::{DateTime, SubsecRound, Utc};

/// Why a wire timestamp was refused; the text is shown to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeError {
    #[error("is required")]
    Missing,
    #[error("nanos must be between 0 and 999999999")]
    Nanos,
    #[error("must be between 0001-01-01 and 9999-12-31")]
    OutOfRange,
}

/// Seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range the
/// Timestamp type documents.
const SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// The current time, truncated to microseconds.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A wire timestamp as a `DateTime`, truncated to microseconds.
pub fn from_proto(ts: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, TimeError> {
    let ts = ts.ok_or(TimeError::Missing)?;
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or(TimeError::Nanos)?;
    if !SECONDS.contains(&ts.seconds) {
        return Err(TimeError::OutOfRange);
    }
    DateTime::from_timestamp(ts.seconds, nanos)
        .map(|t| t.trunc_subsecs(6))
        .ok_or(TimeError::OutOfRange)
}

/// A `DateTime` on the wire. Sub-second nanos of a `DateTime` stay below 2·10⁹ (a
/// leap second at most), so the cast cannot wrap.
pub fn to_proto(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_at_microsecond_precision() {
        let t = now();
        assert_eq!(from_proto(Some(to_proto(t))), Ok(t));
    }

    #[test]
    fn bad_timestamps_are_refused() {
        assert_eq!(from_proto(None), Err(TimeError::Missing));
        let ts = |seconds, nanos| Some(prost_types::Timestamp { seconds, nanos });
        assert_eq!(from_proto(ts(0, -1)), Err(TimeError::Nanos));
        assert_eq!(from_proto(ts(0, 1_000_000_000)), Err(TimeError::Nanos));
        assert_eq!(from_proto(ts(i64::MAX, 0)), Err(TimeError::OutOfRange));
        assert_eq!(
            from_proto(ts(0, 1_999)).map(|t| t.timestamp_subsec_nanos()),
            Ok(1_000)
        );
    }

    proptest! {
        #[test]
        fn never_panics(seconds in any::<i64>(), nanos in any::<i32>()) {
            let _ = from_proto(Some(prost_types::Timestamp { seconds, nanos }));
        }
    }
}
