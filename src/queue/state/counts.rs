//! What a queue reports about itself and its operations.

use std::time::Duration;

/// How many jobs a queue holds in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Leasable now.
    pub ready: usize,
    /// Waiting for a delay or a retry backoff to pass.
    pub scheduled: usize,
    /// Held by workers.
    pub leased: usize,
    /// In the dead-letter set.
    pub dead: usize,
}

/// Totals since the queue was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Jobs accepted.
    pub enqueued: u64,
    /// Deliveries made.
    pub leased: u64,
    /// Jobs acked.
    pub acked: u64,
    /// Nacks accepted.
    pub nacked: u64,
    /// Leases that ran out.
    pub expired: u64,
    /// Jobs moved to the dead-letter set.
    pub dead_lettered: u64,
}

/// What an ack removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    /// Jobs removed.
    pub jobs: usize,
    /// Their bytes, now free.
    pub bytes: u64,
    /// How long each job was leased before its ack.
    pub held: Vec<Duration>,
}
