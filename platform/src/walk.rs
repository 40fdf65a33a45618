//! A walk over records in id order, a batch at a time, that starts over once it
//! reaches the end: the shape of the anti-entropy passes. It keeps the cursor across
//! batches and the counts of one full pass, and logs each pass's completion once.

/// Where a walk stands.
#[derive(Debug)]
pub struct Walk<K> {
    what: &'static str,
    cursor: Option<K>,
    checked: usize,
    repaired: usize,
}

impl<K: Copy> Walk<K> {
    /// A walk from the first record; `what` names it in the log ("bookings").
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            cursor: None,
            checked: 0,
            repaired: 0,
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

    /// Ends a batch that made `repaired` repairs. `next` is where the following batch
    /// starts; `None` means the records are exhausted: the pass is complete (logged
    /// with its counts) and the next batch starts over from the first record.
    pub fn end_batch(&mut self, next: Option<K>, repaired: usize) {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_moves_past_each_batch_and_starts_over_at_the_end() {
        let mut walk = Walk::new("things");
        assert_eq!(walk.cursor(), None);
        walk.checked(1);
        walk.checked(2);
        walk.end_batch(Some(3), 1);
        assert_eq!(
            walk.cursor(),
            Some(3),
            "a skipped unreadable row still moves it"
        );
        walk.checked(4);
        assert_eq!(walk.cursor(), Some(4));
        walk.end_batch(None, 0);
        assert_eq!(walk.cursor(), None, "the next pass starts over");
        assert_eq!((walk.checked, walk.repaired), (0, 0));
    }
}
