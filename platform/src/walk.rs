//! The shape of the anti-entropy passes: a [`Pass`] run every so often as a
//! background task ([`periodic`]), each run checking one batch of a [`Walk`] over
//! records in id order that starts over once it reaches the end. The walk keeps the
//! cursor across batches and the counts of one full pass, tallies each record's
//! outcome ([`Walk::tally`]: a dependency away stops the batch, a record that cannot
//! be checked is reported and passed), and logs each pass's completion once.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::BackgroundTask;

/// A pass run one batch at a time.
pub trait Pass: Send + 'static {
    /// Why a batch stopped.
    type Error: std::error::Error + 'static;

    /// How long to wait before each batch.
    fn interval(&self) -> Duration;

    /// Checks the next batch; returns how many records it repaired. It must return
    /// soon after `stop` is cancelled.
    fn step(
        &mut self,
        stop: &CancellationToken,
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send;
}

/// `pass` as a background task named `name`: a batch every interval until the
/// service stops. A batch that stops (a dependency away) is logged, and the next one
/// retries it.
pub fn periodic<P: Pass>(name: &'static str, mut pass: P) -> BackgroundTask {
    BackgroundTask::new(name, move |stop| async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pass.interval()) => {}
            }
            if let Err(e) = pass.step(&stop).await {
                let error = crate::outcome::chain(&e);
                tracing::warn!(task = name, error, "batch stopped; the next one retries");
            }
        }
    })
}

/// Where a walk stands.
#[derive(Debug)]
pub struct Walk<K> {
    what: &'static str,
    cursor: Option<K>,
    checked: usize,
    repaired: usize,
    /// Repairs in the batch under way.
    batch_repaired: usize,
}

impl<K: Copy + Display> Walk<K> {
    /// A walk from the first record; `what` names it in the log ("bookings").
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            cursor: None,
            checked: 0,
            repaired: 0,
            batch_repaired: 0,
        }
    }

    /// The last record checked: the next batch starts after it. `None` at the start.
    pub fn cursor(&self) -> Option<K> {
        self.cursor
    }

    /// Records that `key` was checked (repaired or not, readable or not), so the
    /// walk moves on past it even if the batch stops early.
    pub fn checked(&mut self, key: K) {
        self.cursor = Some(key);
        self.checked += 1;
    }

    /// Records the outcome of checking the record `key`: `Ok(true)` a repair,
    /// `Ok(false)` nothing to repair. An error that `stops` the batch (a dependency
    /// away) is returned and the record is checked again next batch; any other error
    /// is reported and the walk moves past the record.
    ///
    /// # Errors
    ///
    /// The error, when `stops` says so.
    pub fn tally<E: std::error::Error + 'static>(
        &mut self,
        key: K,
        outcome: Result<bool, E>,
        stops: impl Fn(&E) -> bool,
    ) -> Result<(), E> {
        match outcome {
            Ok(repaired) => self.batch_repaired += usize::from(repaired),
            Err(e) if stops(&e) => return Err(e),
            Err(e) => {
                tracing::error!(walk = self.what, record = %key, error = %crate::outcome::chain(&e),
                    "anti-entropy cannot check this record");
            }
        }
        self.checked(key);
        Ok(())
    }

    /// Ends a batch. `next` is where the following batch starts; `None` means the
    /// records are exhausted: the pass is complete (logged with its counts) and the
    /// next batch starts over from the first record. Returns the batch's repairs.
    pub fn end_batch(&mut self, next: Option<K>) -> usize {
        let repaired = std::mem::take(&mut self.batch_repaired);
        self.repaired += repaired;
        match next {
            Some(last) => self.cursor = Some(last),
            None => {
                if self.checked > 0 {
                    tracing::info!(
                        walk = self.what,
                        checked = self.checked,
                        repaired = self.repaired,
                        "anti-entropy pass complete"
                    );
                }
                self.cursor = None;
                self.checked = 0;
                self.repaired = 0;
            }
        }
        repaired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_moves_past_each_batch_and_starts_over_at_the_end() {
        let mut walk = Walk::new("things");
        assert_eq!(walk.cursor(), None);
        walk.tally(1, Ok::<_, std::io::Error>(true), |_| false)
            .unwrap();
        walk.tally(2, Err(std::io::Error::other("unreadable")), |_| false)
            .unwrap();
        assert_eq!(walk.cursor(), Some(2), "a record that fails is passed");
        assert_eq!(walk.end_batch(Some(3)), 1);
        assert_eq!(
            walk.cursor(),
            Some(3),
            "a skipped unreadable row still moves it"
        );
        assert!(
            walk.tally(4, Err(std::io::Error::other("payment-svc away")), |_| true)
                .is_err(),
            "an outage stops the batch"
        );
        assert_eq!(walk.cursor(), Some(3), "and the record is checked again");
        walk.checked(4);
        assert_eq!(walk.cursor(), Some(4));
        assert_eq!(walk.end_batch(None), 0);
        assert_eq!(walk.cursor(), None, "the next pass starts over");
        assert_eq!((walk.checked, walk.repaired), (0, 0));
    }
}
