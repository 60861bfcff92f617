//! How an engine reports how long jobs wait and run (and how late
//! schedules fire), without knowing who listens: the metrics implement
//! these traits, tests may leave them out.

use std::sync::Arc;
use std::time::Duration;

use crate::queue::QueueName;

/// Told about every queue an engine creates and deletes.
pub trait JobObserver: Send + Sync + std::fmt::Debug {
    /// The observer of one new queue's jobs. Called once per queue, when it
    /// is created, so that observing a job needs no lookup.
    fn queue_created(&self, queue: &QueueName) -> Arc<dyn QueueObserver>;

    /// The queue is gone: whatever was kept for it can go too.
    fn queue_deleted(&self, queue: &QueueName);

    /// A schedule's fire was enqueued `lag` after its fire time.
    fn schedule_fired(&self, lag: Duration) {
        let _ = lag;
    }
}

/// Told about one queue's jobs as they move.
pub trait QueueObserver: Send + Sync + std::fmt::Debug {
    /// A job was delivered for the first time, `waited` after its enqueue.
    fn first_lease(&self, waited: Duration);

    /// A job was acked `held` after it was leased.
    fn acked(&self, held: Duration);
}

/// Observes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl JobObserver for NoObserver {
    fn queue_created(&self, _queue: &QueueName) -> Arc<dyn QueueObserver> {
        Arc::new(NoObserver)
    }

    fn queue_deleted(&self, _queue: &QueueName) {}
}

impl QueueObserver for NoObserver {
    fn first_lease(&self, _waited: Duration) {}

    fn acked(&self, _held: Duration) {}
}
