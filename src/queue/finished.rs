//! [`FinishedJobs`]: what became of jobs that left the queue, kept for a
//! while so producers can poll for completion.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::cost::FINISHED_OVERHEAD_BYTES;
use super::{Job, JobId};

/// How a job left the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// A worker acked it.
    Acked,
    /// An operator cancelled it.
    Cancelled,
}

/// A job that left the queue. Its payload and metadata are not kept (the
/// payload's size is), and the record is held by value: finishing a job
/// allocates nothing for it (its failure history, if it had one, moves in
/// as it was).
#[derive(Debug)]
pub(super) struct Finished {
    pub(super) job: Job,
    pub(super) payload_bytes: u64,
    pub(super) outcome: Outcome,
    pub(super) attempts: u32,
    pub(super) failures: Option<Box<super::state::Failures>>,
    pub(super) at: Instant,
}

/// Finished jobs for `retention`, at most `max` of them; the oldest go first.
/// Finish times only grow, so a `VecDeque` in finish order gives O(1)
/// eviction.
#[derive(Debug)]
pub(super) struct FinishedJobs {
    retention: Duration,
    max: usize,
    // Job ids are the server's own, never a client's: a fast hash is safe.
    by_id: FxHashMap<JobId, Finished>,
    order: VecDeque<JobId>,
    /// What the records held count against the memory budget.
    bytes: u64,
}

/// What a record counts against the memory budget.
fn cost(finished: &Finished) -> u64 {
    FINISHED_OVERHEAD_BYTES + finished.failures.as_ref().map_or(0, |f| f.bytes)
}

impl FinishedJobs {
    pub(super) fn new(retention: Duration, max: usize) -> Self {
        Self {
            retention,
            max,
            by_id: FxHashMap::default(),
            order: VecDeque::new(),
            bytes: 0,
        }
    }

    /// What the records held count against the memory budget.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn record(&mut self, finished: Finished) {
        self.expire(finished.at);
        if self.max == 0 {
            return;
        }
        while self.by_id.len() >= self.max {
            self.drop_oldest();
        }
        let id = finished.job.id;
        self.bytes += cost(&finished);
        self.order.push_back(id);
        self.by_id.insert(id, finished);
    }

    pub(super) fn get(&mut self, now: Instant, id: &JobId) -> Option<&Finished> {
        self.expire(now);
        self.by_id.get(id)
    }

    /// Forgets what has outlived its time at `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(id) = self.order.front() {
            match self.by_id.get(id) {
                Some(f) if f.at + self.retention > now => break,
                _ => self.drop_oldest(),
            }
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(id) = self.order.pop_front()
            && let Some(finished) = self.by_id.remove(&id)
        {
            self.bytes -= cost(&finished);
        }
    }
}
