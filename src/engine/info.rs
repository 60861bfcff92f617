//! The values that cross the engine seam besides jobs themselves: settings,
//! what operators read and what they change.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::queue::{
    JobId, JobState, JobStatus, QueueConfig, QueueCounts, QueueName, QueueStats, ScheduleName,
};
use crate::schedule::{Millis, ScheduleSpec, ScheduleState, SystemClock, WallClock};
use jobq_proto::limits::{MAX_ATTEMPTS_LIMIT, MAX_DELAY, MIN_LEASE};

/// Server-wide settings of an engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Settings for queues created on first use.
    pub queue_defaults: QueueConfig,
    /// Bytes of job payloads and metadata held at most, over all queues.
    pub memory_budget: u64,
    /// Queues at most.
    pub max_queues: usize,
    /// Schedules at most.
    pub max_schedules: usize,
    /// The wall clock schedules fire by.
    pub clock: Arc<dyn WallClock>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            queue_defaults: QueueConfig::default(),
            memory_budget: 1 << 30,
            max_queues: 10_000,
            max_schedules: 100_000,
            clock: Arc::new(SystemClock),
        }
    }
}

/// A queue's settings, counts and totals.
#[derive(Clone, Debug)]
pub struct QueueInfo {
    /// Its name.
    pub name: QueueName,
    /// Its settings.
    pub config: QueueConfig,
    /// Whether leasing is paused.
    pub paused: bool,
    /// Jobs per state now.
    pub counts: QueueCounts,
    /// Totals since it was created.
    pub stats: QueueStats,
    /// When the longest-waiting ready job was enqueued.
    pub oldest_ready: Option<SystemTime>,
    /// Worker attachments open on it.
    pub workers: usize,
}

/// Settings to change; `None` leaves one as it is.
#[derive(Clone, Debug, Default)]
pub struct QueueUpdate {
    /// Jobs held at most.
    pub capacity: Option<usize>,
    /// Default lease.
    pub lease_duration: Option<Duration>,
    /// Default deliveries before dead-lettering.
    pub max_attempts: Option<u32>,
    /// Backoff after the first failure.
    pub backoff_base: Option<Duration>,
    /// Longest backoff.
    pub backoff_cap: Option<Duration>,
    /// Pause or resume leasing.
    pub paused: Option<bool>,
}

/// Most jobs a queue may be set to hold.
pub const MAX_CAPACITY: usize = 100_000_000;

/// A setting of a [`QueueUpdate`] out of its range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidSetting {
    /// The setting, as the protocol names it (`capacity`).
    pub field: &'static str,
    /// What is wrong and what would be right.
    pub problem: String,
}

impl QueueUpdate {
    /// Checks each value on its own: a capacity from 1 to
    /// [`MAX_CAPACITY`], a lease from `MIN_LEASE` to `max_lease`, attempts
    /// from 1 to `MAX_ATTEMPTS_LIMIT`, backoffs up to `MAX_DELAY`.
    /// (Whether the base stays below the cap once merged with the queue's
    /// settings is the engine's to check.)
    pub fn check(&self, max_lease: Duration) -> Result<(), InvalidSetting> {
        let invalid = |field, problem: String| Err(InvalidSetting { field, problem });
        if let Some(c) = self.capacity
            && (c == 0 || c > MAX_CAPACITY)
        {
            return invalid(
                "capacity",
                format!("is {c}; it must be from 1 to {MAX_CAPACITY}"),
            );
        }
        if let Some(d) = self.lease_duration
            && (d < MIN_LEASE || d > max_lease)
        {
            return invalid(
                "lease_duration",
                format!("is {d:?}; it must be from {MIN_LEASE:?} to {max_lease:?}"),
            );
        }
        if let Some(n) = self.max_attempts
            && (n == 0 || n > MAX_ATTEMPTS_LIMIT)
        {
            return invalid(
                "max_attempts",
                format!("is {n}; it must be from 1 to {MAX_ATTEMPTS_LIMIT}"),
            );
        }
        for (field, d) in [
            ("backoff_base", self.backoff_base),
            ("backoff_cap", self.backoff_cap),
        ] {
            if d.is_some_and(|d| d > MAX_DELAY) {
                return invalid(field, "is more than 365 days".to_string());
            }
        }
        Ok(())
    }
}

/// Which jobs a purge removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurgeTarget {
    /// Ready jobs.
    Ready,
    /// Dead-lettered jobs.
    Dead,
}

/// One page of a queue's jobs.
#[derive(Clone, Debug, Default)]
pub struct JobPage {
    /// The jobs, in id order.
    pub jobs: Vec<JobStatus>,
    /// Where the next page starts, if more jobs may follow.
    pub next: Option<JobId>,
}

/// Server-wide figures of an engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Jobs held in every state, over all queues.
    pub jobs_held: usize,
    /// Bytes of jobs counted against the memory budget.
    pub memory_used: u64,
    /// The memory budget.
    pub memory_budget: u64,
}

/// One schedule's figures, for metrics: cheap to read for every schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleFigures {
    /// Its name.
    pub name: ScheduleName,
    /// Jobs enqueued.
    pub fired: u64,
    /// Fire times skipped.
    pub skipped: u64,
    /// Fires the queue refused.
    pub failed: u64,
    /// How long until its next fire is due (jitter included; zero when
    /// overdue); `None` when paused or none is left.
    pub until_next: Option<Duration>,
}

/// A schedule as operators see it.
#[derive(Clone, Debug)]
pub struct ScheduleInfo {
    /// Its name.
    pub name: ScheduleName,
    /// Its settings.
    pub spec: Arc<ScheduleSpec>,
    /// How it is firing.
    pub state: ScheduleState,
    /// Its next fire times, earliest first (up to five).
    pub upcoming: Vec<Millis>,
    /// Beside each of `state.recent`: the state of the job that fire
    /// enqueued, while its queue still knows it.
    pub outcomes: Vec<Option<JobState>>,
}
