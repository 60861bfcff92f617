//! What the queue core refuses.

use super::{JobId, LeaseToken, QueueName};

/// Why a queue operation was refused. Nothing changed in the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Storing the jobs would take the queue past its capacity.
    #[error(
        "queue {queue} is full: it holds {held} of its {capacity} jobs and {offered} more were offered"
    )]
    Full {
        /// The queue.
        queue: QueueName,
        /// Its capacity.
        capacity: usize,
        /// Jobs it holds now.
        held: usize,
        /// Jobs the request tried to add.
        offered: usize,
    },
    /// The token names no live lease: it expired, was acked or nacked, or
    /// the job has been delivered again since.
    #[error(
        "lease {token} is not live in queue {queue}: it expired, was already acked or nacked, or the job was delivered again"
    )]
    LeaseNotFound {
        /// The queue.
        queue: QueueName,
        /// The token.
        token: LeaseToken,
    },
    /// No job with this id is in the queue.
    #[error("job {job} is not in queue {queue}")]
    JobNotFound {
        /// The queue.
        queue: QueueName,
        /// The job.
        job: JobId,
    },
    /// The job is leased, so it cannot be changed until its worker is done.
    #[error("job {job} in queue {queue} is leased by a worker; wait for its ack, nack or expiry")]
    JobLeased {
        /// The queue.
        queue: QueueName,
        /// The job.
        job: JobId,
    },
    /// The job is not in the dead-letter set.
    #[error("job {job} in queue {queue} is not dead-lettered")]
    JobNotDead {
        /// The queue.
        queue: QueueName,
        /// The job.
        job: JobId,
    },
}
