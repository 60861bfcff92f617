//! The server-wide budget for job bytes held in memory.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Counts the bytes of every job held by every queue against one limit, so a
/// flood into many queues cannot exhaust the process's memory.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
    /// Woken whenever bytes are given back, for enqueues waiting for room.
    pub(super) freed: Notify,
}

/// The budget cannot take the bytes offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    /// The budget.
    pub limit: u64,
    /// Bytes in use when the request came.
    pub used: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, all free.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
            freed: Notify::new(),
        }
    }

    /// The budget.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes in use.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget, or takes nothing if they do not fit.
    pub fn try_reserve(&self, bytes: u64) -> Result<(), OverBudget> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .map(|_| ())
            .map_err(|used| OverBudget {
                limit: self.limit,
                used,
            })
    }

    /// Takes `bytes` whether or not they fit: for jobs recovered at start,
    /// which were accepted before.
    pub fn force_reserve(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives `bytes` back and wakes enqueues waiting for room.
    pub fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_limit_and_no_further() {
        let budget = MemoryBudget::new(100);
        budget.try_reserve(60).expect("fits");
        assert_eq!(
            budget.try_reserve(41),
            Err(OverBudget {
                limit: 100,
                used: 60
            })
        );
        budget.try_reserve(40).expect("fits exactly");
        budget.release(100);
        assert_eq!(budget.used(), 0);
    }
}
