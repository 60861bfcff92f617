//! What a [`Queue`] reports about its jobs when asked to: every change a
//! restart must reproduce, in the order made, for a journal to write down
//! under the same lock. Off unless [`Queue::record_changes`] was called, so
//! the in-memory engine pays nothing for it.
//!
//! And the way back: [`Queue::restore`] puts a job recovered from a journal
//! into its place.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Entry, Failure, Failures, MAX_HISTORY, Queue};
use crate::queue::{Job, JobId};

/// One change of one job.
#[derive(Clone, Debug)]
pub enum JobChange {
    /// Stored, ready after `delay` (or at once), under an idempotency key.
    Stored {
        /// The job as stored.
        job: Arc<Job>,
        /// How long after its enqueue it becomes leasable.
        delay: Option<Duration>,
        /// Its idempotency key.
        key: Option<String>,
    },
    /// Handed to a worker: its `attempt`th delivery.
    Leased {
        /// The job.
        id: JobId,
        /// The delivery's attempt number.
        attempt: u32,
    },
    /// An attempt failed and the job waits for another, until `due` (or
    /// is ready at once).
    Retried {
        /// The job.
        id: JobId,
        /// The failed attempt.
        failure: Failure,
        /// When it is ready again, if not at once.
        due: Option<Instant>,
    },
    /// A delivery ended with its worker stream (not counted as a failed
    /// attempt); the job is ready again at once.
    Dropped {
        /// The job.
        id: JobId,
        /// How the delivery ended.
        failure: Failure,
    },
    /// An attempt failed and the job is dead-lettered.
    DeadLettered {
        /// The job.
        id: JobId,
        /// The failed attempt.
        failure: Failure,
    },
    /// A dead job is ready again, attempts reset.
    Redriven {
        /// The job.
        id: JobId,
    },
    /// The job left the queue: acked, cancelled or purged.
    Removed {
        /// The job.
        id: JobId,
    },
}

/// A stored job as it is now, for a journal that copies it forward.
#[derive(Clone, Debug)]
pub struct JobSnapshot {
    /// The job.
    pub job: Arc<Job>,
    /// Deliveries so far.
    pub attempts: u32,
    /// Of those, the ones dropped with their worker stream.
    pub drops: u32,
    /// Its failed attempts, oldest first.
    pub failures: Vec<Failure>,
    /// Where it is.
    pub place: SnapshotPlace,
}

/// Where a job is, in a [`JobSnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotPlace {
    /// Ready now.
    Ready,
    /// Ready at this time.
    Scheduled(Instant),
    /// Held by a worker.
    Leased,
    /// In the dead-letter set.
    Dead,
}

/// Where a restored job goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoredPlace {
    /// Ready now.
    Ready,
    /// Ready at this time.
    Scheduled(Instant),
    /// In the dead-letter set.
    Dead,
}

/// A job recovered from a journal.
#[derive(Clone, Debug)]
pub struct RestoredJob {
    /// The job.
    pub job: Job,
    /// Deliveries so far.
    pub attempts: u32,
    /// Of those, the ones dropped with their worker stream.
    pub drops: u32,
    /// Its failed attempts, oldest first (the latest [`MAX_HISTORY`] are
    /// kept).
    pub failures: Vec<Failure>,
    /// Where it goes.
    pub place: RestoredPlace,
}

impl Queue {
    /// From now on, reports every change of its jobs to
    /// [`take_changes`](Self::take_changes).
    pub fn record_changes(&mut self) {
        self.changes.get_or_insert_with(Vec::new);
    }

    /// The changes made since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<JobChange> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Numbers deliveries (and so lease tokens) from `base` on, so that a
    /// restarted server never hands out a token an earlier run made.
    pub fn number_from(&mut self, base: u64) {
        self.next_seq = self.next_seq.max(base);
    }

    /// Records a change, if changes are recorded; `change` is only built
    /// then.
    pub(super) fn note(&mut self, change: impl FnOnce() -> JobChange) {
        if let Some(changes) = &mut self.changes {
            changes.push(change());
        }
    }

    /// A stored job as it is now.
    pub fn snapshot(&self, id: &JobId) -> Option<JobSnapshot> {
        let entry = self.jobs.get(id)?;
        let place = match &entry.place {
            super::Place::Ready(_) => SnapshotPlace::Ready,
            super::Place::Scheduled(key) => SnapshotPlace::Scheduled(key.0),
            super::Place::Leased(_) => SnapshotPlace::Leased,
            super::Place::Dead => SnapshotPlace::Dead,
        };
        Some(JobSnapshot {
            job: Arc::clone(&entry.job),
            attempts: entry.attempts,
            drops: entry.drops,
            failures: entry
                .failures
                .as_ref()
                .map(|f| f.history.clone())
                .unwrap_or_default(),
            place,
        })
    }

    /// Remembers an idempotency key recovered from a journal: `key` made
    /// job `id` at `first_seen` (in the past for a key made before the
    /// restart), and dedupes until its window from then ends, whether or not
    /// the job is still held. Restore keys oldest first.
    pub fn restore_key(&mut self, now: Instant, key: String, id: JobId, first_seen: Instant) {
        self.keys.insert(first_seen.min(now), key, id);
    }

    /// The job an idempotency key made and when the key was first seen, if
    /// it still dedupes at `now`: what a journal copies forward.
    pub fn remembered_key(&mut self, now: Instant, key: &str) -> Option<(JobId, Instant)> {
        self.keys.first_seen(now, key)
    }

    /// Puts a job recovered from a journal in its place, as it was. Reports
    /// no change: the journal already holds it.
    pub fn restore(&mut self, now: Instant, restored: RestoredJob) {
        let id = restored.job.id;
        let priority = restored.job.priority;
        let place = match restored.place {
            RestoredPlace::Ready => self.make_ready(id, priority),
            RestoredPlace::Scheduled(at) if at > now => self.schedule(id, at),
            RestoredPlace::Scheduled(_) => self.make_ready(id, priority),
            RestoredPlace::Dead => {
                self.dead.insert(id);
                super::Place::Dead
            }
        };
        let mut history = restored.failures;
        if history.len() > MAX_HISTORY {
            history.drain(..history.len() - MAX_HISTORY);
        }
        let failures = history
            .last()
            .map(|last| last.error.clone())
            .map(|last_error| {
                let mut failures = Failures {
                    last_error,
                    history,
                    bytes: 0,
                };
                failures.bytes = super::status::history_bytes(&failures);
                Box::new(failures)
            });
        self.failure_memory.held += failures.as_ref().map_or(0, |f| f.bytes);
        self.bytes += restored.job.size;
        self.jobs.insert(
            id,
            Entry {
                job: Arc::new(restored.job),
                attempts: restored.attempts,
                drops: restored.drops,
                failures,
                place,
            },
        );
    }
}
