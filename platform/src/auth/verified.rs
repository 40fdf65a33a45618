//! Tokens already verified, so a client that sends the same token on every call pays
//! the signature check once. Keyed by the token's exact text (never a hash that two
//! tokens could share), held in memory only, bounded in size, and each entry ends
//! when its token expires; the authenticator forgets everything whenever it re-reads
//! the key set.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{Caller, TokenExpiry};

/// Most tokens remembered at once.
pub(crate) const CAPACITY: usize = 2048;
/// Longest token remembered (a usual JWT is under 1 KiB); a longer one is verified on
/// every call, so the memory stays under `CAPACITY` × 2 KiB, about 4 MiB, whatever
/// callers send.
const LONGEST: usize = 2048;

pub(crate) struct Verified {
    capacity: usize,
    tokens: Mutex<HashMap<Box<str>, (Caller, TokenExpiry)>>,
}

impl Verified {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The caller `token` was verified as, while it has not expired at `now`. No
    /// leeway here: the leeway is for clocks that disagree at the first check, not a
    /// reason to keep a token alive past its `exp` on this clock.
    pub(crate) fn get(&self, token: &str, now: SystemTime) -> Option<(Caller, TokenExpiry)> {
        let tokens = self.tokens.lock().expect("verified tokens lock poisoned");
        let (caller, expiry) = tokens.get(token)?;
        (now < expiry.0).then(|| (caller.clone(), *expiry))
    }

    /// Remembers a token that passed every check. When full, expired entries go
    /// first, and if none had expired, all of them (a flood of distinct tokens then
    /// costs what it would cost without this memory, never unbounded memory).
    pub(crate) fn insert(&self, token: &str, verified: (Caller, TokenExpiry)) {
        if token.len() > LONGEST {
            return;
        }
        let mut tokens = self.tokens.lock().expect("verified tokens lock poisoned");
        if tokens.len() >= self.capacity {
            let now = SystemTime::now();
            tokens.retain(|_, (_, expiry)| now < expiry.0);
            if tokens.len() >= self.capacity {
                tokens.clear();
            }
        }
        tokens.insert(token.into(), verified);
    }

    pub(crate) fn forget_all(&self) {
        self.tokens
            .lock()
            .expect("verified tokens lock poisoned")
            .clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tokens.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::values::ExternalId;

    fn entry(expires_in: Duration) -> (Caller, TokenExpiry) {
        let id = ExternalId::try_from("cust-1".to_owned()).unwrap();
        let caller = Caller::Customer { id };
        (caller, TokenExpiry(SystemTime::now() + expires_in))
    }

    #[test]
    fn a_token_is_known_until_it_expires_and_only_by_its_exact_text() {
        let v = Verified::new(4);
        v.insert("a.b.c", entry(Duration::from_secs(60)));
        let now = SystemTime::now();
        assert!(v.get("a.b.c", now).is_some());
        assert!(v.get("a.b.C", now).is_none());
        assert!(v.get("a.b.c", now + Duration::from_secs(61)).is_none());
    }

    #[test]
    fn it_never_holds_more_than_its_capacity_and_drops_expired_entries_first() {
        let v = Verified::new(3);
        v.insert("old", entry(Duration::ZERO));
        v.insert("t1", entry(Duration::from_secs(60)));
        v.insert("t2", entry(Duration::from_secs(60)));
        v.insert("t3", entry(Duration::from_secs(60)));
        assert_eq!(v.len(), 3, "the expired one made room");
        assert!(v.get("t1", SystemTime::now()).is_some());
        v.insert("t4", entry(Duration::from_secs(60)));
        assert!(v.len() <= 3);
        assert!(v.get("t4", SystemTime::now()).is_some());
        v.forget_all();
        assert_eq!(v.len(), 0);
        let long = "x".repeat(LONGEST + 1);
        v.insert(&long, entry(Duration::from_secs(60)));
        assert!(
            v.get(&long, SystemTime::now()).is_none(),
            "too long to remember"
        );
    }
}
