//! A queue's settings.

use std::time::Duration;

use super::RetryPolicy;

/// The settings of one queue. New queues take the server's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    /// The most jobs the queue holds at once, counting ready, scheduled,
    /// leased and dead-lettered jobs. Default 100 000.
    pub capacity: usize,
    /// The lease length when a worker asks for none. Default 30 s.
    pub lease_duration: Duration,
    /// Deliveries a job may have before it is dead-lettered, when the job
    /// sets no limit of its own. Default 10.
    pub max_attempts: u32,
    /// How long a nacked job waits when the worker names no delay.
    pub retry: RetryPolicy,
    /// How long an idempotency key is remembered. Default 10 min.
    pub idempotency_window: Duration,
    /// Idempotency keys remembered at most; past this the oldest is
    /// forgotten early. Default 100 000.
    pub idempotency_max_keys: usize,
    /// How long acked and cancelled jobs stay visible to `job_status`.
    /// Default 10 min.
    pub finished_retention: Duration,
    /// Finished jobs remembered at most. Default 10 000.
    pub finished_max: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            lease_duration: Duration::from_secs(30),
            max_attempts: 10,
            retry: RetryPolicy::default(),
            idempotency_window: Duration::from_secs(600),
            idempotency_max_keys: 100_000,
            finished_retention: Duration::from_secs(600),
            finished_max: 10_000,
        }
    }
}
