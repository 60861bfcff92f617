//! A schedule's fires: what the book hands out to be enqueued, and what
//! it keeps of how each one went.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::spec::{FIRE_TIME_KEY, SCHEDULE_KEY, ScheduleSpec, TRIGGERED_KEY, fire_key};
use super::trigger::{Millis, rfc3339};
use crate::queue::{JobId, NewJob, ScheduleName};

/// Fires kept per schedule, newest last.
pub const RECENT_FIRES: usize = 10;

/// Upcoming fire times shown per schedule.
pub const UPCOMING_SHOWN: usize = 5;

/// Fire times of one schedule that came due, to be enqueued in order.
#[derive(Clone, Debug)]
pub struct Firing {
    /// The schedule.
    pub name: ScheduleName,
    /// Its settings when the times came due.
    pub spec: Arc<ScheduleSpec>,
    /// Which version of the schedule this is, so that a result for a
    /// schedule replaced meanwhile is dropped.
    pub generation: u64,
    /// The fire times to enqueue, oldest first; empty when every time that
    /// came due was skipped by the misfire rule.
    pub fire_times: Vec<Millis>,
    /// Whether these came from a manual trigger rather than the trigger.
    pub manual: bool,
}

impl Firing {
    /// The job `fire_time` makes: the template, with metadata naming the
    /// schedule and the fire time, and an idempotency key made of both, so
    /// the same fire time never makes two jobs whatever repeats it. A
    /// manual trigger makes a job each time it is asked.
    pub fn job(&self, fire_time: Millis) -> NewJob {
        let template = &self.spec.template;
        let mut metadata = template.metadata.clone();
        metadata.push((SCHEDULE_KEY.to_string(), self.name.to_string()));
        metadata.push((FIRE_TIME_KEY.to_string(), rfc3339(fire_time)));
        if self.manual {
            metadata.push((TRIGGERED_KEY.to_string(), "true".to_string()));
        }
        NewJob {
            payload: template.payload.clone(),
            metadata,
            priority: template.priority,
            delay: None,
            max_attempts: template.max_attempts,
            idempotency_key: (!self.manual).then(|| fire_key(&self.name, fire_time)),
        }
    }
}

/// How one fire went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FireResult {
    /// A job was enqueued (or had been, by an earlier try of the same fire
    /// time: its idempotency key found it).
    Enqueued(JobId),
    /// Not fired: the previous fire's job was still waiting or running.
    StillRunning(JobId),
    /// Fire times that passed unfired and the misfire rule skipped.
    Misfired {
        /// How many.
        count: u64,
    },
    /// The queue refused the job (full, budget spent, shutting down).
    Failed(String),
}

/// One fire, as kept in a schedule's recent fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fire {
    /// The fire time (for [`FireResult::Misfired`], the latest skipped).
    pub fire_time: Millis,
    /// When jobq handled it.
    pub handled_at: Millis,
    /// How it went.
    pub result: FireResult,
}

/// A schedule's state as it fires.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ScheduleState {
    /// Whether firing is paused.
    pub paused: bool,
    /// Where an interval counts from.
    pub anchor: Millis,
    /// The next fire time not yet handed out; `None` when none is left
    /// (past the end time, or no time matches).
    pub next_fire: Option<Millis>,
    /// Fire times handed out and not yet reported back.
    pub in_flight: BTreeSet<Millis>,
    /// Jobs enqueued.
    pub fired: u64,
    /// Fire times skipped, by the misfire rule or the overlap rule.
    pub skipped: u64,
    /// Fires whose job the queue refused.
    pub failed: u64,
    /// The latest fires, oldest first.
    pub recent: VecDeque<Fire>,
    /// The job the latest fire enqueued, for the overlap rule.
    pub last_job: Option<JobId>,
    /// When the schedule was created.
    pub created: Millis,
    /// When its settings last changed.
    pub updated: Millis,
}

impl ScheduleState {
    /// The earliest fire time not known to be done: where a restart
    /// resumes. Fires handed out but not reported count as not done, so a
    /// crash between enqueue and report repeats them (their idempotency
    /// key keeps a second job from being made).
    pub fn resume_from(&self) -> Option<Millis> {
        self.in_flight.first().copied().or(self.next_fire)
    }

    /// Keeps `fire` among the recent fires.
    pub(super) fn remember(&mut self, fire: Fire) {
        if self.recent.len() == RECENT_FIRES {
            self.recent.pop_front();
        }
        self.recent.push_back(fire);
    }
}
