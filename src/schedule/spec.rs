//! What a schedule is: where it puts jobs, what they hold, when it fires,
//! and its rules for missed fires and overlapping runs.

use std::time::Duration;

use bytes::Bytes;
use chrono_tz::Tz;

use super::trigger::{Millis, Trigger};
use crate::queue::QueueName;

/// Metadata key naming the schedule that made a job.
pub const SCHEDULE_KEY: &str = "jobq-schedule";
/// Metadata key holding the fire time a job was made for (RFC 3339, UTC).
pub const FIRE_TIME_KEY: &str = "jobq-fire-time";
/// Metadata key marking a job made by a manual trigger rather than a fire
/// time.
pub const TRIGGERED_KEY: &str = "jobq-triggered";

/// The idempotency key of a schedule's fire time: the same fire time
/// never makes two jobs.
pub fn fire_key(name: &crate::queue::ScheduleName, fire_time: Millis) -> String {
    format!("jobq-schedule:{name}:{fire_time}")
}

/// Missed fire times caught up at most, per gap, under [`Misfire::FireAll`].
pub const MAX_CATCH_UP: usize = 100;
/// Bytes a schedule holds beyond its template and expression, at most
/// about: its name, settings, index entries and ten recent fires (850
/// bytes measured per schedule with `jobq-bench schedules`).
pub const SCHEDULE_OVERHEAD_BYTES: u64 = 1024;
/// The longest jitter.
pub const MAX_JITTER: Duration = Duration::from_secs(24 * 3600);

/// A schedule's settings, as its owner set them.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleSpec {
    /// The queue fired jobs go to.
    pub queue: QueueName,
    /// What each fired job holds.
    pub template: JobTemplate,
    /// When it fires.
    pub trigger: Trigger,
    /// The zone a cron expression is read in.
    pub zone: Tz,
    /// What happens to fire times missed while the server was down, the
    /// schedule paused or the clock stepped.
    pub misfire: Misfire,
    /// Whether a fire waits for the previous fire's job.
    pub overlap: Overlap,
    /// Each fire is moved later by a fixed amount between zero and this,
    /// different per schedule and fire time, so schedules with the same
    /// expression spread out.
    pub jitter: Duration,
    /// No fire time before this.
    pub start: Option<Millis>,
    /// No fire time after this.
    pub end: Option<Millis>,
}

/// The job a schedule makes at each fire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobTemplate {
    /// The payload.
    pub payload: Bytes,
    /// Metadata, to which each fire adds [`SCHEDULE_KEY`] and
    /// [`FIRE_TIME_KEY`].
    pub metadata: Vec<(String, String)>,
    /// Priority: higher is leased first.
    pub priority: i32,
    /// Deliveries before dead-lettering; the queue's setting when `None`.
    pub max_attempts: Option<u32>,
}

/// What to do with fire times that passed unfired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Misfire {
    /// Fire none of them: wait for the next fire time to come.
    #[default]
    Skip,
    /// Fire one job now for the latest of them.
    FireOnce,
    /// Fire every one of them (the latest [`MAX_CATCH_UP`]).
    FireAll,
}

/// What to do when a fire time comes while the previous fire's job is
/// still waiting or running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Fire anyway.
    #[default]
    Allow,
    /// Skip this fire while the previous fire's job is ready, scheduled or
    /// leased.
    SkipIfRunning,
}

impl Misfire {
    /// The rule's name in the API and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::FireOnce => "fire_once",
            Self::FireAll => "fire_all",
        }
    }
}

impl Overlap {
    /// The rule's name in the API and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::SkipIfRunning => "skip_if_running",
        }
    }
}

/// Why a schedule's settings do not hang together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidSpec {
    /// The end is not after the start.
    #[error("end_time must be after start_time")]
    EndBeforeStart,
    /// The jitter is too long.
    #[error("jitter is {0:?}; the limit is 24h")]
    Jitter(Duration),
}

impl ScheduleSpec {
    /// Checks what no single field shows.
    pub fn check(&self) -> Result<(), InvalidSpec> {
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end <= start
        {
            return Err(InvalidSpec::EndBeforeStart);
        }
        if self.jitter > MAX_JITTER {
            return Err(InvalidSpec::Jitter(self.jitter));
        }
        Ok(())
    }

    /// Bytes the schedule's job template holds: its payload and metadata.
    pub fn bytes(&self) -> u64 {
        let metadata: usize = self
            .template
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        (self.template.payload.len() + metadata) as u64
    }

    /// Bytes the schedule holds in memory, at most about: its template,
    /// its expression and [`SCHEDULE_OVERHEAD_BYTES`].
    pub fn held_bytes(&self) -> u64 {
        let expression = self.trigger.expression().map_or(0, str::len) as u64;
        self.bytes() + expression + SCHEDULE_OVERHEAD_BYTES
    }
}

#[cfg(test)]
impl ScheduleSpec {
    /// A schedule for tests: `trigger` in UTC into the queue `reports`,
    /// with a plain `report` job and the default rules.
    pub(crate) fn for_tests(trigger: Trigger) -> Self {
        Self {
            queue: QueueName::new("reports").expect("name"),
            template: JobTemplate {
                payload: Bytes::from_static(b"report"),
                metadata: Vec::new(),
                priority: 0,
                max_attempts: None,
            },
            trigger,
            zone: Tz::UTC,
            misfire: Misfire::Skip,
            overlap: Overlap::Allow,
            jitter: Duration::ZERO,
            start: None,
            end: None,
        }
    }
}
