//! The in-memory engine: every queue of the server in this process's
//! memory, shared between RPC handlers.
//!
//! [`MemoryEngine`] is a cheap `Clone` handle. Each queue sits in its own
//! [`Slot`](slot::Slot) behind its own lock, so work on one queue never waits
//! for another. A timer task per queue applies deadlines as they fall due;
//! long-polling leases and enqueues waiting for room sleep on notifications,
//! not loops. Locks are only ever held for one synchronous queue operation.
//!
//! Built with [`MemoryEngine::durable`], it also writes every change to a
//! journal in the critical section that makes it (`durable.rs`), answers
//! once the change is durable, and keeps the journal compacted
//! (`compaction.rs`).

mod admin;
mod budget;
mod compaction;
mod durable;
mod engine;
mod ids;
mod schedules;
mod slot;
mod timer;
mod worker;

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use budget::MemoryBudget;
pub use ids::IdGenerator;
pub use worker::MemoryAttachment;

use super::journal::Journal;
use super::{EngineConfig, EngineError, JobObserver, NoObserver};
use crate::queue::{
    Delivery, Enqueued, HolderId, JobId, JobStatus, LeaseToken, NackOutcome, NackRequest, NewJob,
    Queue, QueueConfig, QueueCounts, QueueError, QueueName,
};
pub use durable::{RecoveredCounts, Recovery};
use slot::Slot;

/// Jobs ready to store: their queue's slot, the jobs with their ids, and
/// their bytes.
type Prepared = (Arc<Slot>, Vec<(JobId, NewJob)>, u64);

/// A handle to every queue of the server.
#[derive(Clone, Debug)]
pub struct MemoryEngine {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: EngineConfig,
    // A std lock: held only to look up or insert a slot, never across an
    // `.await`. Ordered by name, so a page of queues is a range.
    queues: RwLock<BTreeMap<QueueName, Arc<Slot>>>,
    memory: Arc<MemoryBudget>,
    ids: IdGenerator,
    /// Cancelled when the server begins to shut down.
    shutdown: CancellationToken,
    /// Numbers worker attachments.
    next_holder: AtomicU64,
    observer: Arc<dyn JobObserver>,
    /// The queues' timer tasks.
    tasks: TaskTracker,
    /// Where every change is written down, for a durable engine.
    journal: Option<Journal>,
    /// Where each queue's delivery numbers start: the run's epoch, shifted
    /// past any count of deliveries one run can make.
    seq_base: u64,
    /// Jobs held in every state over all queues, kept as jobs come and go.
    held: AtomicUsize,
    /// Every schedule, fired by a task of its own.
    schedules: schedules::Schedules,
}

/// Bytes a stored job's enqueue record takes beyond its payload and
/// metadata, at most about.
const ENQUEUE_RECORD_BYTES: u64 = 192;
/// Bytes kept free per job held for the record that settles it (an ack,
/// nack or dead-letter), at most about.
const SETTLE_RECORD_BYTES: u64 = 96;

/// Delivery numbers one run can hand out per queue: 2^40, a million a
/// second for twelve days.
const EPOCH_SHIFT: u32 = 40;

/// The error for a journal that cannot make a change durable.
pub(super) fn journal_failed(error: crate::engine::journal::JournalError) -> EngineError {
    EngineError::StoreFailed {
        store: "journal",
        reason: error.to_string(),
    }
}

impl MemoryEngine {
    /// An engine with no queues, observed by no one. Must be created
    /// inside a Tokio runtime's context, since each queue gets a timer task.
    pub fn new(config: EngineConfig) -> Self {
        Self::with_observer(config, Arc::new(NoObserver))
    }

    /// As [`new`](Self::new), telling `observer` how long jobs wait and run.
    pub fn with_observer(config: EngineConfig, observer: Arc<dyn JobObserver>) -> Self {
        Self::build(config, observer, None, 0)
    }

    fn build(
        config: EngineConfig,
        observer: Arc<dyn JobObserver>,
        journal: Option<Journal>,
        seq_base: u64,
    ) -> Self {
        let schedules = schedules::Schedules::new(config.clock.clone(), config.max_schedules);
        let engine = Self {
            shared: Arc::new(Shared {
                schedules,
                memory: Arc::new(MemoryBudget::new(config.memory_budget)),
                config,
                queues: RwLock::new(BTreeMap::new()),
                ids: IdGenerator::default(),
                shutdown: CancellationToken::new(),
                next_holder: AtomicU64::new(1),
                observer,
                tasks: TaskTracker::new(),
                journal,
                seq_base,
                held: AtomicUsize::new(0),
            }),
        };
        engine.shared.tasks.spawn(schedules::run(engine.clone()));
        engine
    }

    /// Stores `jobs` in `queue`, all or nothing, creating the queue if new.
    ///
    /// When the queue is full or the memory budget spent, `wait_for_room`
    /// of `None` fails at once (see [`try_enqueue`](Self::try_enqueue));
    /// `Some(d)` waits up to `d` for room.
    pub async fn enqueue(
        &self,
        queue: QueueName,
        jobs: Vec<NewJob>,
        wait_for_room: Option<Duration>,
    ) -> Result<Vec<Enqueued>, EngineError> {
        let Some(wait) = wait_for_room else {
            return self.try_enqueue(&queue, jobs);
        };
        let (slot, mut batch, bytes) = self.prepare(&queue, jobs)?;
        let deadline = Instant::now() + wait;
        loop {
            let room = pin!(slot.room.notified());
            let freed = pin!(self.shared.memory.freed.notified());
            let (mut room, mut freed) = (room, freed);
            room.as_mut().enable();
            freed.as_mut().enable();

            let error = match self.try_store(&slot, &mut batch, bytes) {
                Ok(stored) => return Ok(stored),
                Err(error) => error,
            };
            // Wait only for what refused us: a full queue for its room, a
            // spent budget for freed bytes (a refused store gives its own
            // reservation back, which must not wake itself).
            let (queue_full, over_budget) = match &error {
                EngineError::Queue(QueueError::Full { capacity, .. }) => {
                    (batch.len() <= *capacity, false)
                }
                EngineError::MemoryExhausted { limit, .. } => (false, bytes <= *limit),
                _ => (false, false),
            };
            if !(queue_full || over_budget) {
                return Err(error);
            }
            tokio::select! {
                () = room, if queue_full => {}
                () = freed, if over_budget => {}
                () = sleep_until(deadline) => return Err(error),
                () = self.shared.shutdown.cancelled() => return Err(EngineError::ShuttingDown),
            }
        }
    }

    /// Stores `jobs` in `queue` now, all or nothing, creating the queue if
    /// new; a full queue or a spent memory budget fails at once. The same
    /// as [`enqueue`](Self::enqueue) with no wait, without a suspension
    /// point.
    pub fn try_enqueue(
        &self,
        queue: &QueueName,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Enqueued>, EngineError> {
        let (slot, mut batch, bytes) = self.prepare(queue, jobs)?;
        self.try_store(&slot, &mut batch, bytes)
    }

    /// The queue's slot (made if new), the jobs with their ids, and their
    /// bytes: what both enqueue paths start from.
    fn prepare(&self, queue: &QueueName, jobs: Vec<NewJob>) -> Result<Prepared, EngineError> {
        self.refuse_if_shutting_down()?;
        let slot = self.slot_or_create(queue)?;
        // Idempotency keys too: the room they need is checked with the
        // jobs', and the queue counts them itself once stored.
        let bytes: u64 = jobs.iter().map(|j| j.size() + j.key_bytes()).sum();
        let ids = self.shared.ids.next_n(jobs.len());
        Ok((slot, ids.iter().copied().zip(jobs).collect(), bytes))
    }

    fn try_store(
        &self,
        slot: &Slot,
        batch: &mut Vec<(JobId, NewJob)>,
        bytes: u64,
    ) -> Result<Vec<Enqueued>, EngineError> {
        let memory = &self.shared.memory;
        memory
            .try_reserve(bytes)
            .map_err(|over| EngineError::MemoryExhausted {
                limit: over.limit,
                used: over.used,
                offered: bytes,
            })?;
        let sizes: Vec<u64> = batch.iter().map(|(_, job)| job.size()).collect();
        let keys: u64 = batch.iter().map(|(_, job)| job.key_bytes()).sum();
        let stored = slot.with(|q| q.enqueue(Instant::now(), SystemTime::now(), batch));
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                memory.release(bytes);
                return Err(error.into());
            }
        };
        // Duplicates stored nothing: their bytes go back; so do the keys'
        // (the queue counted those it keeps).
        let unused: u64 = stored
            .iter()
            .zip(&sizes)
            .filter(|(e, _)| e.duplicate)
            .map(|(_, size)| size)
            .sum();
        memory.release(unused + keys);
        let added = stored.iter().filter(|e| !e.duplicate).count();
        self.shared.held.fetch_add(added, Ordering::Relaxed);
        Ok(stored)
    }

    /// Leases up to `max` jobs from `queue`, creating the queue if new.
    /// When none is ready, waits up to `wait` for one; returns early, empty,
    /// when the server starts to shut down.
    pub async fn lease(
        &self,
        queue: QueueName,
        max: usize,
        lease_for: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Delivery>, EngineError> {
        self.refuse_if_shutting_down()?;
        let slot = self.slot_or_create(&queue)?;
        let deadline = Instant::now() + wait;
        // Counted while it waits, however it ends (a dropped call included).
        let _polling = slot.long_poll();
        loop {
            let mut notified = pin!(slot.ready.notified());
            notified.as_mut().enable();
            // One synchronous step after the last await: the jobs leave the
            // ready set and reach the caller without a cancellation point
            // in between.
            let (leased, more_ready) = slot.with(|q| {
                let leased = q.lease(Instant::now(), max, lease_for);
                (leased, q.counts().ready > 0)
            });
            if !leased.is_empty() {
                if more_ready {
                    // Pass the wake-up on to the next waiting worker.
                    slot.ready.notify_one();
                }
                slot.observe_leases(&leased);
                return Ok(leased);
            }
            if Instant::now() >= deadline || self.shared.shutdown.is_cancelled() {
                return Ok(Vec::new());
            }
            tokio::select! {
                () = notified => {}
                () = sleep_until(deadline) => {}
                // Shutdown, or the queue was deleted.
                () = slot.closed.cancelled() => return Ok(Vec::new()),
            }
        }
    }

    /// Attaches a worker to `queue`, creating the queue if new.
    pub fn attach(&self, queue: QueueName) -> Result<MemoryAttachment, EngineError> {
        self.refuse_if_shutting_down()?;
        let slot = self.slot_or_create(&queue)?;
        let holder = HolderId(self.shared.next_holder.fetch_add(1, Ordering::Relaxed));
        Ok(MemoryAttachment::new(self.clone(), slot, queue, holder))
    }

    /// Unary leases waiting on `queue` for a job (long-polls).
    pub fn long_polls(&self, queue: &QueueName) -> usize {
        self.slot(queue).map_or(0, |slot| slot.long_polls())
    }

    /// Worker attachments open on `queue`.
    pub fn workers(&self, queue: &QueueName) -> usize {
        self.slot(queue).map_or(0, |slot| slot.holders())
    }

    /// Acks leases in `queue`, all or none.
    pub fn ack(&self, queue: &QueueName, tokens: &[LeaseToken]) -> Result<usize, EngineError> {
        let Some(first) = tokens.first() else {
            return Ok(0);
        };
        let slot = self.slot_for_lease(queue, first)?;
        let acked = slot.with(|q| q.ack(Instant::now(), tokens))?;
        self.shared.memory.release(acked.bytes);
        self.shared.held.fetch_sub(acked.jobs, Ordering::Relaxed);
        for held in &acked.held {
            slot.observer.acked(*held);
        }
        Ok(acked.jobs)
    }

    /// Gives a leased job back for a retry or to the dead-letter set.
    pub fn nack(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, EngineError> {
        let slot = self.slot_for_lease(queue, token)?;
        Ok(slot.with(|q| q.nack(Instant::now(), token, request))?)
    }

    /// Moves a lease's deadline to `lease_for` from now.
    pub fn extend(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        lease_for: Duration,
    ) -> Result<Instant, EngineError> {
        let slot = self.slot_for_lease(queue, token)?;
        Ok(slot.with(|q| q.extend(Instant::now(), token, lease_for))?)
    }

    /// A job's state, if `queue` holds it.
    pub fn job_status(&self, queue: &QueueName, id: &JobId) -> Option<JobStatus> {
        self.slot(queue)?.with(|q| q.job_status(Instant::now(), id))
    }

    /// Jobs per state in `queue`, if it exists.
    pub fn counts(&self, queue: &QueueName) -> Option<QueueCounts> {
        Some(self.slot(queue)?.with(|q| q.counts()))
    }

    /// Bytes the memory budget counts as in use, over all queues.
    pub fn memory_used(&self) -> u64 {
        self.shared.memory.used()
    }

    /// Of those, the bytes of the jobs themselves.
    pub fn job_bytes(&self) -> u64 {
        self.shared.memory.used_by_jobs()
    }

    /// The memory budget, in bytes.
    pub fn memory_budget(&self) -> u64 {
        self.shared.memory.limit()
    }

    /// Jobs held in memory, over all queues.
    pub fn jobs_held(&self) -> usize {
        self.shared.held.load(Ordering::Relaxed)
    }

    /// Refuses `jobs` when the data dir lacks room for them plus the
    /// records that settle every job held: an ack, nack or dead-letter must
    /// never find the disk full.
    pub(super) fn check_disk_room(&self, jobs: &[NewJob]) -> Result<(), EngineError> {
        let Some(journal) = &self.shared.journal else {
            return Ok(());
        };
        let held = self.jobs_held();
        let new: u64 = jobs.iter().map(|j| j.size() + ENQUEUE_RECORD_BYTES).sum();
        let settle = (held + jobs.len()) as u64 * SETTLE_RECORD_BYTES;
        // Two segments' room for compaction to copy forward into.
        let needed = new + settle + 2 * journal.segment_bytes();
        let free = journal.free_bytes();
        if free < needed {
            return Err(EngineError::DataDirFull { free, needed, held });
        }
        Ok(())
    }

    /// Starts shutting down: new enqueues and leases are refused, waiting
    /// leases return at once, timer tasks stop. Acks, nacks and extends keep
    /// working so in-flight work can finish.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    fn refuse_if_shutting_down(&self) -> Result<(), EngineError> {
        if self.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        Ok(())
    }

    fn slot(&self, queue: &QueueName) -> Option<Arc<Slot>> {
        self.read_queues().get(queue).cloned()
    }

    /// The queue a lease token is presented to; an unknown queue holds no
    /// lease, so it answers as the queue would.
    fn slot_for_lease(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
    ) -> Result<Arc<Slot>, EngineError> {
        self.slot(queue).ok_or_else(|| {
            QueueError::LeaseNotFound {
                queue: queue.clone(),
                token: *token,
            }
            .into()
        })
    }

    fn slot_or_create(&self, queue: &QueueName) -> Result<Arc<Slot>, EngineError> {
        if let Some(slot) = self.slot(queue) {
            return Ok(slot);
        }
        let mut queues = self
            .shared
            .queues
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = queues.get(queue) {
            return Ok(Arc::clone(slot));
        }
        let limit = self.shared.config.max_queues;
        if queues.len() >= limit {
            return Err(EngineError::TooManyQueues {
                queue: queue.clone(),
                limit,
            });
        }
        let config = self.shared.config.queue_defaults.clone();
        let slot = self.new_slot(queue, config);
        // Its settings are written down before any job of it.
        slot.write_settings();
        queues.insert(queue.clone(), Arc::clone(&slot));
        tracing::info!(queue = %queue, "queue created");
        Ok(slot)
    }

    /// A queue's slot with its timer task, not yet in the registry.
    fn new_slot(&self, queue: &QueueName, config: QueueConfig) -> Arc<Slot> {
        let closed = self.shared.shutdown.child_token();
        let observer = self.shared.observer.queue_created(queue);
        let mut core = Queue::new(queue.clone(), config);
        core.number_from(self.shared.seq_base);
        let slot = Arc::new(Slot::new(
            core,
            closed,
            observer,
            self.shared.journal.clone(),
            Arc::clone(&self.shared.memory),
        ));
        self.shared.tasks.spawn(timer::run(Arc::clone(&slot)));
        slot
    }

    /// An engine whose every change is written to `journal`, holding what
    /// `recovery` read back from it, and the counts of what that was. Lease
    /// tokens of this run carry an epoch one past the last run's, so none
    /// from before matches.
    pub fn durable(
        config: EngineConfig,
        observer: Arc<dyn JobObserver>,
        journal: Journal,
        mut recovery: Recovery,
    ) -> (Self, RecoveredCounts) {
        let epoch = recovery.epoch + 1;
        journal.append(&durable::booted_record(epoch));
        let defaults = config.queue_defaults.clone();
        let engine = Self::build(
            config,
            observer,
            Some(journal.clone()),
            epoch << EPOCH_SHIFT,
        );
        let mut counts = RecoveredCounts::default();
        let schedules = recovery.take_schedules();
        counts.schedules = schedules.len();
        let now = Instant::now();
        let mut queues = engine
            .shared
            .queues
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for (name, recovered) in recovery.finish(&defaults, &mut counts) {
            let (config, paused) = recovered
                .settings
                .unwrap_or_else(|| (defaults.clone(), false));
            let slot = engine.new_slot(&name, config);
            let bytes: u64 = recovered.jobs.iter().map(|(_, j)| j.job.size).sum();
            engine.shared.memory.force_reserve(bytes);
            engine
                .shared
                .held
                .fetch_add(recovered.jobs.len(), Ordering::Relaxed);
            let bases: Vec<(u64, JobId)> = recovered
                .jobs
                .iter()
                .map(|(base, job)| (*base, job.job.id))
                .collect();
            let keys: Vec<(u64, String, JobId)> = recovered
                .keys
                .iter()
                .map(|k| (k.seq, k.key.clone(), k.id))
                .collect();
            slot.with(|q| {
                for (_, job) in recovered.jobs {
                    q.restore(now, job);
                }
                for key in recovered.keys {
                    q.restore_key(now, key.key, key.id, key.first_seen);
                }
                q.set_paused(paused);
            });
            slot.set_bases(bases, keys);
            slot.note_paused();
            queues.insert(name, slot);
        }
        drop(queues);
        for (seq, name, spec, state) in schedules {
            engine
                .shared
                .schedules
                .restore(&engine.shared.memory, seq, name, spec, state);
        }
        engine.shared.schedules.restored();
        engine
            .shared
            .tasks
            .spawn(compaction::run(engine.clone(), journal, epoch));
        (engine, counts)
    }

    /// Every queue's slot, for work over all of them.
    fn slots(&self) -> Vec<Arc<Slot>> {
        self.read_queues().values().cloned().collect()
    }

    /// Whether every change is written to a journal.
    pub fn is_durable(&self) -> bool {
        self.shared.journal.is_some()
    }

    /// Waits until every change made so far is durable, when there is a
    /// journal.
    pub(super) async fn settle(&self) -> Result<(), EngineError> {
        let Some(journal) = &self.shared.journal else {
            return Ok(());
        };
        journal
            .durable(journal.last_appended())
            .await
            .map_err(journal_failed)
    }

    /// Waits until every change made so far is written (not necessarily
    /// synced), when there is a journal: a lease's attempt is on file
    /// before the job reaches a worker.
    pub(super) async fn leases_recorded(&self) -> Result<(), EngineError> {
        let Some(journal) = &self.shared.journal else {
            return Ok(());
        };
        journal
            .written(journal.last_appended())
            .await
            .map_err(journal_failed)
    }

    fn read_queues(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<QueueName, Arc<Slot>>> {
        self.shared.queues.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod power_loss;
#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod tests;
