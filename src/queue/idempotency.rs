//! [`IdempotencyKeys`]: remembers which job each idempotency key made, for a
//! window, in bounded memory.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::JobId;
use super::cost::key_bytes;

/// Keys seen within the window, oldest first. Every key lives exactly
/// `window`, so expiry order is insertion order and a `VecDeque` suffices:
/// O(1) to add, look up, or drop the oldest. When `max_keys` are held, the
/// oldest key is forgotten early to make room.
#[derive(Debug)]
pub(super) struct IdempotencyKeys {
    window: Duration,
    max_keys: usize,
    jobs: HashMap<String, (JobId, Instant)>,
    order: VecDeque<(Instant, String)>,
    /// What the keys held count against the memory budget (see
    /// [`key_bytes`]).
    bytes: u64,
}

impl IdempotencyKeys {
    pub(super) fn new(window: Duration, max_keys: usize) -> Self {
        Self {
            window,
            max_keys,
            jobs: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
        }
    }

    /// The job `key` made, if it was seen within the window.
    pub(super) fn get(&mut self, now: Instant, key: &str) -> Option<JobId> {
        self.expire(now);
        self.jobs.get(key).map(|(id, _)| *id)
    }

    /// The job `key` made and when the key was first seen, if it was seen
    /// within the window.
    pub(super) fn first_seen(&mut self, now: Instant, key: &str) -> Option<(JobId, Instant)> {
        self.expire(now);
        let window = self.window;
        self.jobs
            .get(key)
            .map(|(id, expires)| (*id, expires.checked_sub(window).unwrap_or(*expires)))
    }

    /// Records that `key` made job `id` at `now`.
    pub(super) fn insert(&mut self, now: Instant, key: String, id: JobId) {
        self.expire(now);
        if self.max_keys == 0 {
            return;
        }
        while self.jobs.len() >= self.max_keys {
            self.forget_oldest();
        }
        let expires = now + self.window;
        self.bytes += key_bytes(&key);
        self.jobs.insert(key.clone(), (id, expires));
        self.order.push_back((expires, key));
    }

    /// What the keys held count against the memory budget.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Keys held.
    pub(super) fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Forgets what has outlived its time at `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(at, _)| *at <= now) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((at, key)) = self.order.pop_front() {
            self.bytes -= key_bytes(&key);
            // Only if the map still holds this insertion of the key.
            if self
                .jobs
                .get(&key)
                .is_some_and(|(_, expires)| *expires == at)
            {
                self.jobs.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn remembers_keys_within_the_window_only() {
        let now = Instant::now();
        let mut keys = IdempotencyKeys::new(10 * MIN, 100);
        keys.insert(now, "order-1".into(), JobId::from_u128(1));
        assert_eq!(
            keys.get(now + 9 * MIN, "order-1"),
            Some(JobId::from_u128(1))
        );
        assert_eq!(keys.get(now + 10 * MIN, "order-1"), None);
        assert_eq!(keys.len(), 0);
        assert_eq!(keys.bytes(), 0);
        keys.insert(now + 10 * MIN, "order-1".into(), JobId::from_u128(2));
        assert_eq!(
            keys.get(now + 11 * MIN, "order-1"),
            Some(JobId::from_u128(2))
        );
    }

    #[test]
    fn holds_at_most_max_keys_forgetting_the_oldest() {
        let now = Instant::now();
        let mut keys = IdempotencyKeys::new(10 * MIN, 2);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            keys.insert(now, key.into(), JobId::from_u128(i as u128));
        }
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.bytes(), key_bytes("b") + key_bytes("c"));
        assert_eq!(keys.get(now, "a"), None);
        assert_eq!(keys.get(now, "c"), Some(JobId::from_u128(2)));
    }
}
