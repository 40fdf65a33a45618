//! Jittered exponential backoff shared by every retry loop in the platform
//! (migrations, outbox relay, consumer reconnects, transient handler failures).

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with "full jitter": each delay is uniform in
/// `[base/2, base]` where `base` doubles per attempt up to `max`. The jitter keeps
/// replicas that lost the same dependency from retrying in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial` and never exceeding `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The delay before retry number `attempt` (0-based), without advancing.
    pub fn delay_for(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        let base = self.initial.saturating_mul(factor).min(self.max);
        let half = base / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// The next delay; each call doubles the base until `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delay_for(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Retries made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut last_base = Duration::ZERO;
        for attempt in 0..30 {
            let d = b.next_delay();
            let base = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(2));
            assert!(
                d >= base / 2 && d <= base + Duration::from_millis(1),
                "attempt {attempt}: {d:?}"
            );
            assert!(base >= last_base);
            last_base = base;
        }
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= Duration::from_millis(101));
    }
}
