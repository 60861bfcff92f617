//! The in-memory engine's schedules: the [`ScheduleBook`] behind one lock,
//! and the task that fires it.
//!
//! The task sleeps until the earliest due schedule (one timer, however
//! many schedules), woken early when a schedule changes; it wakes at least
//! once a second while schedules exist, so a step of the wall clock is
//! seen within a second and the misfire rule applies to it. What comes due
//! is enqueued through the engine like any producer's job, with an
//! idempotency key made of the schedule's name and the fire time: the same
//! fire time never makes two jobs, even when a restart repeats a fire
//! whose record was not yet written.
//!
//! With a journal, every change of a schedule (settings, pause, each fire)
//! writes the schedule's whole state in the critical section that makes
//! it; compaction copies forward the schedules whose latest record is in
//! a segment it deletes.

use std::collections::{BTreeMap, HashMap};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;

use super::{MemoryBudget, MemoryEngine};
use crate::engine::journal::Journal;
use crate::engine::journal::schedule::{deleted_record, schedule_record};
use crate::engine::{EngineError, Produce, ScheduleFigures, ScheduleInfo};
use crate::queue::{Enqueued, JobState, ScheduleName};
use crate::schedule::{
    FireResult, Firing, Millis, Overlap, ScheduleBook, ScheduleSpec, ScheduleState, UPCOMING_SHOWN,
    Upserted, WallClock,
};

/// Fires of different schedules enqueued at once.
const CONCURRENT_FIRES: usize = 256;
/// Schedules handed out per hold of the book's lock, so that many coming
/// due at once never hold it long (the loop takes the rest right after).
const FIRINGS_PER_HOLD: usize = 1024;
/// The longest the firing task sleeps while schedules exist.
const LONGEST_SLEEP: Duration = Duration::from_secs(1);

/// Every schedule of the engine.
#[derive(Debug)]
pub(super) struct Schedules {
    // A std lock: held for one synchronous change of the book (and the
    // journal append that records it), never across an `.await`.
    inner: Mutex<Inner>,
    /// Woken when a schedule changes, so the firing task re-reads the
    /// earliest due time.
    changed: Notify,
    clock: Arc<dyn WallClock>,
    max: usize,
}

#[derive(Debug, Default)]
struct Inner {
    book: ScheduleBook,
    /// With a journal: the sequence number of each schedule's latest
    /// record, and the same by number, so compaction finds old ones.
    seq_of: HashMap<ScheduleName, u64>,
    by_seq: BTreeMap<u64, ScheduleName>,
    /// What every schedule held counts against the memory budget, kept as
    /// schedules come and go.
    held: u64,
}

impl Inner {
    /// Writes `name`'s state to the journal, if there is one.
    fn record(&mut self, journal: Option<&Journal>, name: &ScheduleName) {
        let Some(journal) = journal else {
            return;
        };
        let Some(entry) = self.book.get(name) else {
            return;
        };
        let seq = journal.append(&schedule_record(name, &entry.spec, &entry.state));
        self.note(name, seq);
    }

    fn note(&mut self, name: &ScheduleName, seq: u64) {
        if let Some(old) = self.seq_of.insert(name.clone(), seq) {
            self.by_seq.remove(&old);
        }
        self.by_seq.insert(seq, name.clone());
    }

    fn forget(&mut self, name: &ScheduleName) {
        if let Some(old) = self.seq_of.remove(name) {
            self.by_seq.remove(&old);
        }
    }
}

impl Schedules {
    pub(super) fn new(clock: Arc<dyn WallClock>, max: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            clock,
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts back a schedule read from the journal at `seq`, counting it
    /// against `memory` whether or not it fits (it was accepted before).
    pub(super) fn restore(
        &self,
        memory: &MemoryBudget,
        seq: u64,
        name: ScheduleName,
        spec: ScheduleSpec,
        state: ScheduleState,
    ) {
        memory.adjust(0, spec.held_bytes());
        let mut inner = self.lock();
        inner.held += spec.held_bytes();
        inner.book.restore(name.clone(), spec, state);
        inner.note(&name, seq);
    }

    /// Wakes the firing task after schedules were restored.
    pub(super) fn restored(&self) {
        self.changed.notify_one();
    }

    /// Whether a schedule's latest record is before `seq`.
    pub(super) fn holds_live_before(&self, seq: u64) -> bool {
        self.lock()
            .by_seq
            .first_key_value()
            .is_some_and(|(s, _)| *s < seq)
    }

    /// Bytes the schedules' records take, roughly, for compaction's bound:
    /// about what they hold in memory.
    pub(super) fn record_bytes(&self) -> u64 {
        self.lock().held
    }

    /// Writes again every schedule whose latest record is before `seq`.
    pub(super) fn copy_forward(&self, journal: &Journal, seq: u64) -> usize {
        let mut inner = self.lock();
        let old: Vec<ScheduleName> = inner
            .by_seq
            .range(..seq)
            .map(|(_, name)| name.clone())
            .collect();
        for name in &old {
            inner.record(Some(journal), name);
        }
        old.len()
    }
}

impl MemoryEngine {
    fn schedules(&self) -> &Schedules {
        &self.shared.schedules
    }

    fn wall_now(&self) -> Millis {
        self.schedules().clock.now()
    }

    /// Creates or updates a schedule.
    pub fn set_schedule(
        &self,
        name: ScheduleName,
        spec: ScheduleSpec,
    ) -> Result<(ScheduleInfo, Upserted), EngineError> {
        let schedules = self.schedules();
        let now = self.wall_now();
        let memory = &self.shared.memory;
        let upserted = {
            let mut inner = schedules.lock();
            let old = inner.book.get(&name).map(|e| e.spec.held_bytes());
            if old.is_none() && inner.book.len() >= schedules.max {
                return Err(EngineError::TooManySchedules {
                    schedule: name,
                    limit: schedules.max,
                });
            }
            // Schedules count against the memory budget beside the jobs:
            // a hundred thousand templates of a megabyte must not exhaust
            // the process.
            let (old, new) = (old.unwrap_or(0), spec.held_bytes());
            if new > old {
                memory.try_reserve_beside_jobs(new - old).map_err(|over| {
                    EngineError::MemoryExhausted {
                        limit: over.limit,
                        used: over.used,
                        offered: new - old,
                    }
                })?;
            } else {
                memory.release_beside_jobs(old - new);
            }
            inner.held = inner.held - old + new;
            let upserted = inner.book.upsert(name.clone(), spec, now);
            if upserted != Upserted::Unchanged {
                inner.record(self.shared.journal.as_ref(), &name);
            }
            upserted
        };
        match upserted {
            Upserted::Created => tracing::info!(schedule = %name, "schedule created"),
            Upserted::Updated => tracing::info!(schedule = %name, "schedule updated"),
            Upserted::Unchanged => {}
        }
        schedules.changed.notify_one();
        Ok((self.schedule_info(&name)?, upserted))
    }

    /// One schedule, with its next fire times and how its recent fires'
    /// jobs stand.
    pub fn schedule_info(&self, name: &ScheduleName) -> Result<ScheduleInfo, EngineError> {
        let (spec, state, upcoming) = {
            let inner = self.schedules().lock();
            let entry = inner
                .book
                .get(name)
                .ok_or_else(|| EngineError::ScheduleNotFound(name.clone()))?;
            (
                entry.spec.clone(),
                entry.state.clone(),
                inner.book.upcoming(name, UPCOMING_SHOWN),
            )
        };
        // Each job is looked up in its queue after the book's lock is
        // released: the book never waits for a queue.
        let outcomes = state
            .recent
            .iter()
            .map(|fire| match fire.result {
                FireResult::Enqueued(id) => self.job_status(&spec.queue, &id).map(|s| s.state),
                _ => None,
            })
            .collect();
        Ok(ScheduleInfo {
            name: name.clone(),
            spec,
            state,
            upcoming,
            outcomes,
        })
    }

    /// Schedules whose names sort after `after`, at most `limit`.
    pub fn list_schedules(
        &self,
        after: Option<&ScheduleName>,
        limit: usize,
    ) -> Result<Vec<ScheduleInfo>, EngineError> {
        let names: Vec<ScheduleName> = {
            let inner = self.schedules().lock();
            inner
                .book
                .page(after, limit)
                .map(|(name, _)| name.clone())
                .collect()
        };
        // A schedule deleted between the two steps is left out.
        Ok(names
            .iter()
            .filter_map(|name| self.schedule_info(name).ok())
            .collect())
    }

    /// Deletes a schedule. Jobs it already made stay in their queue.
    pub fn delete_schedule(&self, name: &ScheduleName) -> Result<(), EngineError> {
        let mut inner = self.schedules().lock();
        let held = inner.book.get(name).map(|e| e.spec.held_bytes());
        let Some(held) = held else {
            return Err(EngineError::ScheduleNotFound(name.clone()));
        };
        inner.book.remove(name);
        inner.held -= held;
        self.shared.memory.release_beside_jobs(held);
        inner.forget(name);
        if let Some(journal) = &self.shared.journal {
            journal.append(&deleted_record(name));
        }
        drop(inner);
        tracing::info!(schedule = %name, "schedule deleted");
        self.schedules().changed.notify_one();
        Ok(())
    }

    /// Pauses or resumes a schedule.
    pub fn set_schedule_paused(
        &self,
        name: &ScheduleName,
        paused: bool,
    ) -> Result<ScheduleInfo, EngineError> {
        let now = self.wall_now();
        {
            let mut inner = self.schedules().lock();
            let changed = inner
                .book
                .set_paused(name, paused, now)
                .ok_or_else(|| EngineError::ScheduleNotFound(name.clone()))?;
            if changed {
                inner.record(self.shared.journal.as_ref(), name);
            }
        }
        self.schedules().changed.notify_one();
        self.schedule_info(name)
    }

    /// Fires a schedule now, outside its trigger and its overlap rule.
    pub async fn trigger_schedule(&self, name: &ScheduleName) -> Result<Enqueued, EngineError> {
        let firing = self
            .schedules()
            .lock()
            .book
            .trigger(name, self.wall_now())
            .ok_or_else(|| EngineError::ScheduleNotFound(name.clone()))?;
        let fire_time = firing.fire_times[0];
        let stored = self.enqueue_fire(&firing, fire_time).await;
        let result = match &stored {
            Ok(stored) => FireResult::Enqueued(stored.id),
            Err(error) => FireResult::Failed(error.to_string()),
        };
        self.report(&firing, fire_time, result);
        self.settle().await?;
        stored
    }

    /// Enqueues the job of one fire time.
    async fn enqueue_fire(
        &self,
        firing: &Firing,
        fire_time: Millis,
    ) -> Result<Enqueued, EngineError> {
        let job = firing.job(fire_time);
        let mut stored = Produce::enqueue(self, firing.spec.queue.clone(), vec![job], None).await?;
        Ok(stored.remove(0))
    }

    /// Every schedule's counts and next due time, in name order.
    pub fn schedule_figures(&self) -> Vec<ScheduleFigures> {
        let now = self.wall_now();
        let inner = self.schedules().lock();
        inner
            .book
            .page(None, usize::MAX)
            .map(|(name, entry)| ScheduleFigures {
                name: name.clone(),
                fired: entry.state.fired,
                skipped: entry.state.skipped,
                failed: entry.state.failed,
                until_next: inner
                    .book
                    .due_at(name)
                    .map(|due| Duration::from_millis(u64::try_from(due - now).unwrap_or(0))),
            })
            .collect()
    }

    /// Records how one fire went.
    fn report(&self, firing: &Firing, fire_time: Millis, result: FireResult) {
        let now = self.wall_now();
        let mut inner = self.schedules().lock();
        if inner
            .book
            .fired(&firing.name, firing.generation, fire_time, result, now)
        {
            inner.record(self.shared.journal.as_ref(), &firing.name);
        }
    }

    /// Enqueues one fire time of `firing`, or skips it by the overlap rule.
    /// `None` when the server began to shut down: the fire stays in flight,
    /// so a restart on the journal fires it then.
    async fn fire_once(&self, firing: &Firing, fire_time: Millis) -> Option<FireResult> {
        if firing.spec.overlap == Overlap::SkipIfRunning {
            let previous = self
                .schedules()
                .lock()
                .book
                .get(&firing.name)
                .and_then(|entry| entry.state.last_job);
            if let Some(previous) = previous {
                let running =
                    self.job_status(&firing.spec.queue, &previous)
                        .is_some_and(|status| {
                            matches!(
                                status.state,
                                JobState::Ready | JobState::Scheduled | JobState::Leased
                            )
                        });
                if running {
                    return Some(FireResult::StillRunning(previous));
                }
            }
        }
        match self.enqueue_fire(firing, fire_time).await {
            Ok(stored) => {
                let lag = self.wall_now().saturating_sub(fire_time);
                self.shared
                    .observer
                    .schedule_fired(Duration::from_millis(u64::try_from(lag).unwrap_or(0)));
                Some(FireResult::Enqueued(stored.id))
            }
            Err(EngineError::ShuttingDown) => None,
            Err(error) => Some(crate::engine::fire_failed(firing, &error)),
        }
    }

    /// Enqueues a firing's times in order and records each.
    async fn fire(&self, firing: Firing) {
        for &fire_time in &firing.fire_times {
            let Some(result) = self.fire_once(&firing, fire_time).await else {
                return;
            };
            self.report(&firing, fire_time, result);
        }
    }
}

/// Fires schedules as they come due, until the engine shuts down.
pub(super) async fn run(engine: MemoryEngine) {
    let schedules = engine.schedules();
    loop {
        let mut changed = pin!(schedules.changed.notified());
        changed.as_mut().enable();
        let now = engine.wall_now();
        let (firings, next_due, any) = {
            let mut inner = schedules.lock();
            let firings = inner.book.take_due(now, FIRINGS_PER_HOLD);
            for firing in &firings {
                inner.record(engine.shared.journal.as_ref(), &firing.name);
            }
            (firings, inner.book.next_due(), !inner.book.is_empty())
        };
        if !firings.is_empty() {
            futures_util::stream::iter(firings)
                .for_each_concurrent(CONCURRENT_FIRES, |firing| engine.fire(firing))
                .await;
            if let Err(error) = engine.settle().await {
                tracing::error!(%error, "schedule fires could not be made durable");
            }
            continue;
        }
        let sleep = match next_due {
            Some(at) => {
                Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(LONGEST_SLEEP)
            }
            None => LONGEST_SLEEP,
        };
        tokio::select! {
            () = engine.shared.shutdown.cancelled() => return,
            () = &mut changed => {}
            () = tokio::time::sleep(sleep), if any => {}
        }
    }
}
