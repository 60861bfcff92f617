//! The in-memory engine's journal, when it has one: how its changes become
//! records, and how records become queues again at start-up.
//!
//! Every change is written down in the critical section that makes it (the
//! queue's lock), so the journal's order is the order of changes; the
//! caller waits for durability after the lock is released.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::engine::journal::record::{
    self, Booted, Change, DeadLettered, Enqueued, Entry, Id, JobRef, Key, QueueRef, QueueSettings,
    Record, Retried, Snapshot,
};
use crate::queue::{
    Failure, Job, JobChange, JobId, JobSnapshot, QueueConfig, QueueName, RestoredJob,
    RestoredPlace, RetryPolicy, ScheduleName, SnapshotPlace,
};
use crate::schedule::{ScheduleSpec, ScheduleState};

/// One moment on both clocks, to turn the core's instants into wall-clock
/// times and back.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clocks {
    instant: Instant,
    wall: SystemTime,
}

impl Clocks {
    pub(super) fn now() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn wall_micros(&self, at: Instant) -> i64 {
        let wall = if at >= self.instant {
            self.wall + (at - self.instant)
        } else {
            self.wall - (self.instant - at)
        };
        micros(wall)
    }

    /// The instant of a wall-clock time: in the past for a time gone by.
    fn instant_of(&self, micros: i64) -> Instant {
        let wall = from_micros(micros);
        match wall.duration_since(self.wall) {
            Ok(ahead) => self.instant + ahead,
            Err(behind) => self
                .instant
                .checked_sub(behind.duration())
                .unwrap_or(self.instant),
        }
    }
}

fn micros(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

fn from_micros(micros: i64) -> SystemTime {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

pub(super) fn id_of(id: JobId) -> Id {
    Id::of(id)
}

fn job_ref(queue: &QueueName, id: JobId) -> Option<JobRef> {
    Some(JobRef {
        queue: queue.to_string(),
        id: Some(id_of(id)),
    })
}

fn failure(failure: &Failure, clocks: &Clocks) -> Option<record::Failure> {
    Some(record::Failure {
        attempt: failure.attempt,
        error: failure.error.clone(),
        at_micros: clocks.wall_micros(failure.at),
    })
}

fn record(change: Change) -> Record {
    Record {
        change: Some(change),
    }
}

/// The record of one job change in `queue`.
pub(super) fn change_record(queue: &QueueName, change: JobChange, clocks: &Clocks) -> Record {
    record(match change {
        JobChange::Stored { job, delay, key } => {
            let due = delay
                .filter(|d| !d.is_zero())
                .map_or(0, |d| micros(job.enqueued_at + d));
            Change::Enqueued(enqueued_of(queue, &job, due, key.unwrap_or_default()))
        }
        JobChange::Leased { id, attempt } => Change::Leased(record::Leased {
            job: job_ref(queue, id),
            attempt,
        }),
        JobChange::Retried {
            id,
            failure: f,
            due,
        } => Change::Retried(Retried {
            job: job_ref(queue, id),
            failure: failure(&f, clocks),
            due_micros: due.map_or(0, |at| clocks.wall_micros(at)),
            dropped: false,
        }),
        JobChange::Dropped { id, failure: f } => Change::Retried(Retried {
            job: job_ref(queue, id),
            failure: failure(&f, clocks),
            due_micros: 0,
            dropped: true,
        }),
        JobChange::DeadLettered { id, failure: f } => Change::DeadLettered(DeadLettered {
            job: job_ref(queue, id),
            failure: failure(&f, clocks),
        }),
        JobChange::Redriven { id } => Change::Redriven(JobRef {
            queue: queue.to_string(),
            id: Some(id_of(id)),
        }),
        JobChange::Removed { id } => Change::Removed(JobRef {
            queue: queue.to_string(),
            id: Some(id_of(id)),
        }),
    })
}

/// A job as stored, with a due time (0 for none).
fn enqueued_of(queue: &QueueName, job: &Job, due_micros: i64, key: String) -> Enqueued {
    Enqueued {
        job: job_ref(queue, job.id),
        payload: job.payload.clone(),
        metadata: job
            .metadata
            .iter()
            .map(|(key, value)| Entry {
                key: key.to_string(),
                value: value.to_string(),
            })
            .collect(),
        priority: job.priority,
        max_attempts: job.max_attempts,
        enqueued_at_micros: micros(job.enqueued_at),
        due_micros,
        idempotency_key: key,
    }
}

/// The record that copies a job forward, as it is now. Its idempotency
/// key, if still in its window, is copied on its own (see [`key_record`]):
/// a key outlives its job.
pub(super) fn snapshot_record(
    queue: &QueueName,
    snapshot: &JobSnapshot,
    clocks: &Clocks,
) -> Record {
    let due = match snapshot.place {
        SnapshotPlace::Scheduled(at) => clocks.wall_micros(at),
        SnapshotPlace::Ready | SnapshotPlace::Leased | SnapshotPlace::Dead => 0,
    };
    record(Change::Snapshot(Snapshot {
        job: Some(enqueued_of(queue, &snapshot.job, due, String::new())),
        attempts: snapshot.attempts,
        drops: snapshot.drops,
        failures: snapshot
            .failures
            .iter()
            .filter_map(|f| failure(f, clocks))
            .collect(),
        leased: snapshot.place == SnapshotPlace::Leased,
        dead: snapshot.place == SnapshotPlace::Dead,
    }))
}

/// The record that copies an idempotency key forward: `key` made job `id`
/// at `first_seen`.
pub(super) fn key_record(
    queue: &QueueName,
    key: &str,
    id: JobId,
    first_seen: Instant,
    clocks: &Clocks,
) -> Record {
    record(Change::Key(Key {
        job: job_ref(queue, id),
        key: key.to_owned(),
        stored_at_micros: clocks.wall_micros(first_seen),
    }))
}

/// The record of a queue's settings.
pub(super) fn settings_record(queue: &QueueName, config: &QueueConfig, paused: bool) -> Record {
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    record(Change::QueueSettings(QueueSettings {
        queue: queue.to_string(),
        capacity: config.capacity as u64,
        lease_micros: us(config.lease_duration),
        max_attempts: config.max_attempts,
        backoff_base_micros: us(config.retry.base),
        backoff_cap_micros: us(config.retry.cap),
        backoff_jitter: config.retry.jitter,
        paused,
    }))
}

/// The record of a queue's deletion.
pub(super) fn deleted_record(queue: &QueueName) -> Record {
    record(Change::QueueDeleted(QueueRef {
        queue: queue.to_string(),
    }))
}

/// The record of a start.
pub(super) fn booted_record(epoch: u64) -> Record {
    record(Change::Booted(Booted { epoch }))
}

/// Where a job was when the journal ended.
#[derive(Clone, Debug)]
enum Place {
    Ready,
    Due(i64),
    Leased,
    Dead,
}

#[derive(Clone, Debug)]
struct Recovering {
    /// The record its state starts from (its enqueue or latest copy).
    base: u64,
    job: Job,
    attempts: u32,
    drops: u32,
    failures: Vec<record::Failure>,
    place: Place,
}

/// A queue as records so far describe it.
#[derive(Debug, Default)]
struct Held {
    settings: Option<QueueSettings>,
    jobs: BTreeMap<JobId, Recovering>,
    /// Each idempotency key seen: the job it made, when it was first seen
    /// (wall clock), and the record that says so. Kept whether or not the
    /// job is: a key dedupes for its whole window.
    keys: HashMap<String, (JobId, i64, u64)>,
}

/// An idempotency key still inside its window.
#[derive(Debug)]
pub(super) struct RecoveredKey {
    /// The record that last wrote it.
    pub(super) seq: u64,
    pub(super) key: String,
    pub(super) id: JobId,
    pub(super) first_seen: Instant,
}

/// A queue as the journal left it.
#[derive(Debug, Default)]
pub(super) struct RecoveredQueue {
    /// Its settings, if it had any recorded.
    pub(super) settings: Option<(QueueConfig, bool)>,
    /// Its jobs, in id order, each with the sequence number of the record
    /// its state starts from.
    pub(super) jobs: Vec<(u64, RestoredJob)>,
    /// Its idempotency keys still inside their window, oldest first.
    pub(super) keys: Vec<RecoveredKey>,
}

/// What a journal held, queue by queue.
#[derive(Debug, Default)]
pub struct Recovery {
    queues: BTreeMap<String, Held>,
    /// Each schedule's latest record, with its sequence number.
    schedules: BTreeMap<String, (u64, record::Schedule)>,
    /// The last run's epoch.
    pub(super) epoch: u64,
}

/// Counts of what was recovered, for the start-up log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveredCounts {
    /// Queues.
    pub queues: usize,
    /// Jobs ready (including those due while the server was down, and
    /// those that were leased when it stopped).
    pub ready: usize,
    /// Jobs waiting for a later time.
    pub scheduled: usize,
    /// Jobs that were leased when the server stopped.
    pub were_leased: usize,
    /// Dead-lettered jobs.
    pub dead: usize,
    /// Schedules.
    pub schedules: usize,
}

impl Recovery {
    /// Applies record `seq`, read back from the journal.
    pub fn apply(&mut self, seq: u64, record: Record) {
        let Some(change) = record.change else {
            return;
        };
        match change {
            Change::Booted(booted) => self.epoch = self.epoch.max(booted.epoch),
            Change::Schedule(schedule) => {
                self.schedules
                    .insert(schedule.name.clone(), (seq, schedule));
            }
            Change::ScheduleDeleted(schedule) => {
                self.schedules.remove(&schedule.name);
            }
            Change::QueueSettings(settings) => {
                let queue = settings.queue.clone();
                self.queues.entry(queue).or_default().settings = Some(settings);
            }
            Change::QueueDeleted(queue) => {
                self.queues.remove(&queue.queue);
            }
            Change::Enqueued(enqueued) => self.enqueued(seq, enqueued),
            Change::Snapshot(snapshot) => self.snapshot(seq, snapshot),
            Change::Key(key) => {
                if let Some((job, id)) = key.job.and_then(|j| j.id.map(|id| (j, job_id(id)))) {
                    self.queues
                        .entry(job.queue)
                        .or_default()
                        .keys
                        .insert(key.key, (id, key.stored_at_micros, seq));
                }
            }
            Change::Leased(leased) => self.with_job(leased.job.as_ref(), |job| {
                job.attempts = leased.attempt;
                job.place = Place::Leased;
            }),
            Change::Retried(retried) => self.with_job(retried.job.as_ref(), |job| {
                job.drops += u32::from(retried.dropped);
                job.failures.extend(retried.failure.clone());
                job.place = match retried.due_micros {
                    0 => Place::Ready,
                    due => Place::Due(due),
                };
            }),
            Change::DeadLettered(dead) => self.with_job(dead.job.as_ref(), |job| {
                job.failures.extend(dead.failure.clone());
                job.place = Place::Dead;
            }),
            Change::Redriven(job) => self.with_job(Some(&job), |job| {
                job.attempts = 0;
                job.drops = 0;
                job.place = Place::Ready;
            }),
            Change::Removed(job) => {
                if let (Some(queue), Some(id)) = (self.queues.get_mut(&job.queue), job.id) {
                    queue.jobs.remove(&job_id(id));
                }
            }
        }
    }

    /// The schedules recorded, each with the sequence number of its
    /// record. One this version cannot read is left out, with an error in
    /// the log naming it.
    pub(super) fn take_schedules(
        &mut self,
    ) -> Vec<(u64, ScheduleName, ScheduleSpec, ScheduleState)> {
        std::mem::take(&mut self.schedules)
            .into_iter()
            .filter_map(|(name, (seq, record))| {
                match crate::engine::journal::schedule::from_record(record) {
                    Ok((name, spec, state)) => Some((seq, name, spec, state)),
                    Err(why) => {
                        tracing::error!(schedule = %name, %why, "a recorded schedule cannot be restored; it is dropped");
                        None
                    }
                }
            })
            .collect()
    }

    fn enqueued(&mut self, seq: u64, mut enqueued: Enqueued) {
        let key = std::mem::take(&mut enqueued.idempotency_key);
        let stored_at = enqueued.enqueued_at_micros;
        if let Some((queue, id, job)) = recovering(seq, enqueued) {
            let held = self.queues.entry(queue).or_default();
            held.jobs.insert(id, job);
            if !key.is_empty() {
                held.keys.insert(key, (id, stored_at, seq));
            }
        }
    }

    /// A job copied forward: its whole state, replacing what came before.
    fn snapshot(&mut self, seq: u64, snapshot: Snapshot) {
        let Some((queue, id, mut job)) = snapshot.job.and_then(|j| recovering(seq, j)) else {
            return;
        };
        job.attempts = snapshot.attempts;
        job.drops = snapshot.drops;
        job.failures = snapshot.failures;
        if snapshot.dead {
            job.place = Place::Dead;
        } else if snapshot.leased {
            job.place = Place::Leased;
        }
        self.queues.entry(queue).or_default().jobs.insert(id, job);
    }

    fn with_job(&mut self, job: Option<&JobRef>, change: impl FnOnce(&mut Recovering)) {
        let Some(job) = job else {
            return;
        };
        let Some(id) = job.id.map(job_id) else {
            return;
        };
        if let Some(found) = self
            .queues
            .get_mut(&job.queue)
            .and_then(|held| held.jobs.get_mut(&id))
        {
            change(found);
        }
    }

    /// The queues to rebuild, with their jobs where they belong now: due
    /// times that passed while the server was down are ready at once; a job
    /// that was leased has used that attempt, and is dead if it was its
    /// last. `defaults` fills settings no record gave, and says how long
    /// idempotency keys live.
    pub(super) fn finish(
        self,
        defaults: &QueueConfig,
        counts: &mut RecoveredCounts,
    ) -> HashMap<QueueName, RecoveredQueue> {
        let clocks = Clocks::now();
        let mut out = HashMap::new();
        for (name, held) in self.queues {
            let Ok(queue) = QueueName::new(&name) else {
                continue;
            };
            counts.queues += 1;
            let settings = held.settings.map(|s| (config_of(&s, defaults), s.paused));
            let mut restored = Vec::with_capacity(held.jobs.len());
            for (_, job) in held.jobs {
                let base = job.base;
                restored.push((base, restore(job, &clocks, counts)));
            }
            // A key first seen longer ago than the window is forgotten, as
            // it would have been without the restart.
            let mut keys: Vec<RecoveredKey> = held
                .keys
                .into_iter()
                .map(|(key, (id, at, seq))| RecoveredKey {
                    seq,
                    key,
                    id,
                    first_seen: clocks.instant_of(at),
                })
                .filter(|k| {
                    clocks.instant.saturating_duration_since(k.first_seen)
                        < defaults.idempotency_window
                })
                .collect();
            keys.sort_by_key(|k| (k.first_seen, k.seq));
            out.insert(
                queue,
                RecoveredQueue {
                    settings,
                    jobs: restored,
                    keys,
                },
            );
        }
        out
    }
}

/// A job as an `Enqueued` record describes it, with its queue and id.
fn recovering(seq: u64, enqueued: Enqueued) -> Option<(String, JobId, Recovering)> {
    let job_ref = enqueued.job?;
    let id = job_ref.id.map(job_id)?;
    let metadata: Vec<(String, String)> = enqueued
        .metadata
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect();
    let size = crate::queue::cost::job_bytes(enqueued.payload.len(), &metadata);
    let job = Job {
        id,
        payload: enqueued.payload,
        metadata: metadata.into(),
        priority: enqueued.priority,
        max_attempts: enqueued.max_attempts,
        enqueued_at: from_micros(enqueued.enqueued_at_micros),
        size,
    };
    let place = match enqueued.due_micros {
        0 => Place::Ready,
        due => Place::Due(due),
    };
    Some((
        job_ref.queue,
        id,
        Recovering {
            base: seq,
            job,
            attempts: 0,
            drops: 0,
            failures: Vec::new(),
            place,
        },
    ))
}

fn restore(job: Recovering, clocks: &Clocks, counts: &mut RecoveredCounts) -> RestoredJob {
    let mut failures: Vec<Failure> = job
        .failures
        .iter()
        .map(|f| Failure {
            attempt: f.attempt,
            error: f.error.clone(),
            at: clocks.instant_of(f.at_micros),
        })
        .collect();
    let place = match job.place {
        Place::Ready => RestoredPlace::Ready,
        Place::Due(due) => RestoredPlace::Scheduled(clocks.instant_of(due)),
        Place::Dead => RestoredPlace::Dead,
        Place::Leased => {
            counts.were_leased += 1;
            failures.push(Failure {
                attempt: job.attempts,
                error: format!(
                    "the server stopped while attempt {} was leased",
                    job.attempts
                ),
                at: clocks.instant,
            });
            if job.attempts.saturating_sub(job.drops) >= job.job.max_attempts {
                RestoredPlace::Dead
            } else {
                RestoredPlace::Ready
            }
        }
    };
    match place {
        RestoredPlace::Ready => counts.ready += 1,
        RestoredPlace::Scheduled(at) if at <= clocks.instant => counts.ready += 1,
        RestoredPlace::Scheduled(_) => counts.scheduled += 1,
        RestoredPlace::Dead => counts.dead += 1,
    }
    RestoredJob {
        job: job.job,
        attempts: job.attempts,
        drops: job.drops,
        failures,
        place,
    }
}

pub(super) fn job_id(id: Id) -> JobId {
    id.job()
}

fn config_of(s: &QueueSettings, defaults: &QueueConfig) -> QueueConfig {
    QueueConfig {
        capacity: usize::try_from(s.capacity).unwrap_or(usize::MAX),
        lease_duration: Duration::from_micros(s.lease_micros),
        max_attempts: s.max_attempts,
        retry: RetryPolicy {
            base: Duration::from_micros(s.backoff_base_micros),
            cap: Duration::from_micros(s.backoff_cap_micros),
            jitter: s.backoff_jitter,
        },
        ..defaults.clone()
    }
}
