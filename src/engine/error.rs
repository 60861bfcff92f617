//! What an engine refuses, and how its store can fail.

use crate::queue::{JobId, QueueError, QueueName, ScheduleName};

/// Why an engine operation was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The queue refused the operation.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The jobs' bytes do not fit in the server-wide memory budget.
    #[error(
        "the server's memory budget is spent: {used} of {limit} bytes are in use and {offered} more were offered (a job counts its payload, metadata and {overhead} bytes; its key, finished record and failures count too); ack or purge jobs, or raise --memory-budget-bytes",
        overhead = crate::queue::cost::JOB_OVERHEAD_BYTES
    )]
    MemoryExhausted {
        /// The budget in bytes.
        limit: u64,
        /// Bytes in use.
        used: u64,
        /// Bytes the request tried to add.
        offered: u64,
    },
    /// Creating the queue would pass the server's limit on queues.
    #[error(
        "queue {queue} cannot be created: the server already holds its limit of {limit} queues"
    )]
    TooManyQueues {
        /// The queue that was to be created.
        queue: QueueName,
        /// The limit.
        limit: usize,
    },
    /// No queue holds (or recently finished) a job with this id.
    #[error("no queue holds job {0}, and none finished it within the retention window")]
    JobNotFound(JobId),
    /// No queue has this name.
    #[error("queue {0} does not exist")]
    QueueNotFound(QueueName),
    /// No schedule has this name.
    #[error("schedule {0} does not exist")]
    ScheduleNotFound(ScheduleName),
    /// Creating the schedule would pass the server's limit on schedules.
    #[error(
        "schedule {schedule} cannot be created: the server already holds its limit of {limit} schedules; delete some, or raise --max-schedules"
    )]
    TooManySchedules {
        /// The schedule that was to be created.
        schedule: ScheduleName,
        /// The limit.
        limit: usize,
    },
    /// The queue cannot be deleted while workers hold its jobs.
    #[error("queue {queue} has {leased} leased jobs; wait for their workers or delete with force")]
    QueueBusy {
        /// The queue.
        queue: QueueName,
        /// Jobs leased.
        leased: usize,
    },
    /// The server is shutting down and takes no new work.
    #[error("the server is shutting down; retry once it is back")]
    ShuttingDown,
    /// A queue update would leave the backoff base above its cap.
    #[error("backoff_base: {base:?} would exceed backoff_cap ({cap:?})")]
    BackoffOutOfOrder {
        /// The base after the update.
        base: std::time::Duration,
        /// The cap after the update.
        cap: std::time::Duration,
    },
    /// The data dir has too little room left: new jobs are refused so the
    /// acks, nacks and dead-letters of the jobs held always have room.
    #[error(
        "the data dir is full: {free} bytes free, and {needed} are needed to store this and keep room for settling the {held} jobs held; free disk space or raise the volume"
    )]
    DataDirFull {
        /// Bytes free.
        free: u64,
        /// Bytes this enqueue needs, its reserve included.
        needed: u64,
        /// Jobs held.
        held: usize,
    },
    /// The store cannot be reached now (a database that is down, a
    /// connection lost); the call may succeed if tried again later.
    #[error("the {store} store is unavailable: {reason}; retry later")]
    StoreUnavailable {
        /// Which store: `journal`, `postgres`.
        store: &'static str,
        /// What failed, as the store said it.
        reason: String,
    },
    /// The store broke in a way a retry does not mend (corrupt data, a
    /// failed write); an operator must look.
    #[error("the {store} store failed: {reason}")]
    StoreFailed {
        /// Which store: `journal`, `postgres`.
        store: &'static str,
        /// What failed, as the store said it.
        reason: String,
    },
}
