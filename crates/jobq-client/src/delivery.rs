//! A leased job as a worker's handler sees it, and how a handler fails.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use jobq_proto::v1 as pb;

/// One delivery of a job to a worker.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The job's id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// The data the producer sent.
    pub payload: Bytes,
    /// The headers the producer sent.
    pub metadata: HashMap<String, String>,
    /// Its priority.
    pub priority: i32,
    /// Which delivery this is, from 1.
    pub attempt: u32,
    /// Deliveries allowed before it is dead-lettered.
    pub max_attempts: u32,
    /// When the producer's enqueue was accepted.
    pub enqueue_time: Option<SystemTime>,
    /// Names this delivery in ack, nack and extend.
    pub lease_token: String,
    /// When the lease runs out unless extended, on the server's clock: for
    /// display. Do not compare it with this machine's clock.
    pub lease_deadline: Option<SystemTime>,
    /// How long the lease had left when the server sent it; time anything
    /// that must happen before it runs out from when the job arrived.
    pub lease_duration: Option<std::time::Duration>,
}

impl Delivery {
    /// Whether this is the job's last allowed attempt.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

impl From<pb::Lease> for Delivery {
    fn from(lease: pb::Lease) -> Self {
        let job = lease.job.unwrap_or_default();
        Self {
            id: job.id,
            queue: job.queue,
            payload: job.payload,
            metadata: job.metadata,
            priority: job.priority,
            attempt: lease.attempt,
            max_attempts: job.max_attempts,
            enqueue_time: job.enqueue_time.and_then(|t| SystemTime::try_from(t).ok()),
            lease_token: lease.lease_token,
            lease_deadline: lease
                .lease_deadline
                .and_then(|t| SystemTime::try_from(t).ok()),
            lease_duration: lease
                .lease_duration
                .and_then(|d| std::time::Duration::try_from(d).ok()),
        }
    }
}

/// Why a handler failed, and so what becomes of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    message: String,
    disposition: Disposition,
}

/// What a failed job's nack asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Retry after the queue's backoff.
    Retry,
    /// Retry after this delay.
    RetryAfter(Duration),
    /// Give up: move the job to the dead-letter set.
    DeadLetter,
}

impl JobError {
    /// A failure worth retrying (a timeout, a flaky dependency): the job is
    /// nacked and retried after the queue's exponential backoff.
    pub fn retry(reason: impl fmt::Display) -> Self {
        Self {
            message: reason.to_string(),
            disposition: Disposition::Retry,
        }
    }

    /// A failure worth retrying after a delay the handler knows (a
    /// `Retry-After` header, say).
    pub fn retry_after(reason: impl fmt::Display, delay: Duration) -> Self {
        Self {
            message: reason.to_string(),
            disposition: Disposition::RetryAfter(delay),
        }
    }

    /// A failure that retrying cannot fix (bad input): the job goes straight
    /// to the dead-letter set, with the reason as its last error.
    pub fn permanent(reason: impl fmt::Display) -> Self {
        Self {
            message: reason.to_string(),
            disposition: Disposition::DeadLetter,
        }
    }

    /// The reason, as kept with the job.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the nack asks for.
    pub fn disposition(&self) -> Disposition {
        self.disposition
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Any error can be returned with `?` from a handler: it is retried.
impl<E: std::error::Error> From<E> for JobError {
    fn from(error: E) -> Self {
        Self::retry(error)
    }
}
