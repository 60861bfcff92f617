//! The queue engine's pure core: one queue's jobs and every state change they
//! go through.
//!
//! Nothing here knows about gRPC, protobuf, tasks or the network. Time is
//! passed in as an [`Instant`](tokio::time::Instant) on every operation, so
//! tests move it by hand. Each change of state is one method on [`Queue`]:
//! [`enqueue`](Queue::enqueue), [`lease`](Queue::lease), [`ack`](Queue::ack),
//! [`nack`](Queue::nack), [`extend`](Queue::extend) and
//! [`advance`](Queue::advance) (which promotes due delayed jobs and expires
//! overdue leases, dead-lettering jobs that used their last attempt).
//!
//! Data structures and their costs, for `n` jobs in the queue:
//! - jobs by id: a `BTreeMap` (ids grow with time, so FIFO use stays at
//!   its two edges), O(log n);
//! - ready jobs: one FIFO lane per priority in use, O(1) to push or pop
//!   whatever the number of jobs (see `ready.rs`);
//! - deadlines (delayed jobs, backoff retries, lease expiries): a `BTreeMap`
//!   keyed by (deadline, sequence), O(log n) to insert, remove or pop due;
//! - dead letters: a `BTreeSet` of ids, O(log n);
//! - idempotency keys and finished jobs: bounded, expiring in insertion
//!   order, O(1).

mod config;
pub mod cost;
mod error;
mod finished;
mod idempotency;
mod job;
mod lease;
mod metadata;
mod name;
mod ready;
mod retry;
mod state;

pub use config::QueueConfig;
pub use error::QueueError;
pub use job::{Job, JobId, NewJob};
pub use lease::{Delivery, HolderId, LeaseToken, NackOutcome, NackRequest, ParseLeaseTokenError};
pub use metadata::Metadata;
pub use name::{InvalidName, QueueName, ScheduleName};
pub use retry::RetryPolicy;
pub use state::{
    Acked, DROPS_PER_ATTEMPT, Enqueued, Failure, JobChange, JobSnapshot, JobState, JobStatus,
    LeaseShown, MAX_HISTORY, MAX_SCAN, Purged, Queue, QueueCounts, QueueStats, RestoredJob,
    RestoredPlace, SnapshotPlace, TEXT_NOT_KEPT,
};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod model_tests;
