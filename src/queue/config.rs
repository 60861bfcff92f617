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
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            lease_duration: Duration::from_secs(30),
            max_attempts: 10,
            retry: RetryPolicy::default(),
        }
    }
}
