//! The server-wide budget for what clients make the server hold in memory:
//! jobs, and beside them keys, records, histories and schedules.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Counts the bytes of every job held by every queue against one limit, so a
/// flood into many queues cannot exhaust the process's memory.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
    /// Of `used`, what queues hold beside their jobs (see
    /// [`adjust`](Self::adjust)).
    beside_jobs: AtomicU64,
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
            beside_jobs: AtomicU64::new(0),
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

    /// Bytes left before the limit.
    pub fn room(&self) -> u64 {
        self.limit.saturating_sub(self.used())
    }

    /// Moves what is taken from `before` bytes to `after`: for what a queue
    /// holds beside its jobs, which is never refused (a nack, an expiry)
    /// but kept within the room it was told of.
    pub fn adjust(&self, before: u64, after: u64) {
        match after.cmp(&before) {
            std::cmp::Ordering::Greater => {
                self.beside_jobs.fetch_add(after - before, Ordering::AcqRel);
                self.force_reserve(after - before);
            }
            std::cmp::Ordering::Less => self.release_beside_jobs(before - after),
            std::cmp::Ordering::Equal => {}
        }
    }

    /// Takes `bytes` for something held beside the jobs (a schedule), or
    /// takes nothing if they do not fit.
    pub fn try_reserve_beside_jobs(&self, bytes: u64) -> Result<(), OverBudget> {
        self.try_reserve(bytes)?;
        self.beside_jobs.fetch_add(bytes, Ordering::AcqRel);
        Ok(())
    }

    /// Gives back `bytes` that were taken through [`adjust`](Self::adjust)
    /// or [`try_reserve_beside_jobs`](Self::try_reserve_beside_jobs).
    pub fn release_beside_jobs(&self, bytes: u64) {
        let _ = self
            .beside_jobs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(bytes))
            });
        self.release(bytes);
    }

    /// Bytes in use by jobs themselves (see [`NewJob::size`]).
    ///
    /// [`NewJob::size`]: crate::queue::NewJob::size
    pub fn used_by_jobs(&self) -> u64 {
        self.used()
            .saturating_sub(self.beside_jobs.load(Ordering::Acquire))
    }

    /// Gives `bytes` back and wakes enqueues waiting for room.
    pub fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        // Saturating: a miscount must not wrap the budget into refusing
        // everything.
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
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
