//! [`Slot`]: one queue behind its lock, with the notifications that wake
//! tasks waiting on it.

use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::MemoryBudget;
use super::durable::{self, Clocks};
use crate::engine::QueueObserver;
use crate::engine::journal::Journal;
use crate::queue::{Delivery, HolderId, JobChange, JobId, Queue};

/// How many waiting workers one change wakes at most; each woken worker that
/// leaves jobs behind wakes the next, so none is missed.
const MAX_WAKE: usize = 64;

/// One queue and its wake-ups.
#[derive(Debug)]
pub(super) struct Slot {
    // A std mutex, not tokio's: it is never held across an `.await`, only
    // for one synchronous queue operation.
    state: Mutex<SlotState>,
    /// Woken when jobs become ready, for long-polling leases.
    pub(super) ready: Notify,
    /// Woken when jobs leave the queue, for enqueues waiting for room.
    pub(super) room: Notify,
    /// Woken when the earliest deadline moves earlier than the timer task's.
    pub(super) timer: Notify,
    /// Cancelled when the queue is deleted or the server shuts down: ends
    /// the timer task, long-polls and worker streams on it.
    pub(super) closed: CancellationToken,
    /// Told how long the queue's jobs wait and run.
    pub(super) observer: Arc<dyn QueueObserver>,
    /// Unary leases waiting for a job now.
    polling: AtomicUsize,
    /// Where the queue's changes are written down, if anywhere.
    journal: Option<Journal>,
    /// Whether the queue is paused, for worker streams to tell their
    /// workers (see [`Slot::note_paused`]).
    pub(super) paused: tokio::sync::watch::Sender<bool>,
    /// The server's memory budget, which what the queue holds beside its
    /// jobs (failure histories, idempotency keys, finished records, and
    /// with a journal its record of keys) is counted in as it changes.
    budget: Arc<MemoryBudget>,
}

/// Counts one long-poll while it lives (see [`Slot::long_poll`]).
#[derive(Debug)]
pub(super) struct LongPoll<'a>(&'a AtomicUsize);

impl Drop for LongPoll<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct SlotState {
    queue: Queue,
    /// The deadline the timer task sleeps until, if any.
    armed: Option<Instant>,
    /// Each open worker stream's wake-up for when one of its leases ends
    /// outside the stream (a unary ack, an expiry).
    holders: HashMap<HolderId, Arc<Notify>>,
    /// With a journal: the sequence number of the record each live job's
    /// state starts from (its enqueue, or its latest copy), both ways, so
    /// compaction finds the jobs an old segment holds in O(log n) each.
    bases: BTreeMap<u64, JobId>,
    base_of: FxHashMap<JobId, u64>,
    /// With a journal: the record that last wrote each idempotency key, so
    /// compaction copies forward the keys an old segment holds that still
    /// dedupe. An entry whose key has since expired is dropped when
    /// compaction reaches it.
    keys: BTreeMap<u64, (String, JobId)>,
    /// Bytes of the keys in `keys`.
    key_bytes: u64,
}

impl SlotState {
    /// What the queue holds beside its jobs, as the memory budget counts
    /// it (see [`crate::queue::cost`]).
    fn extra_bytes(&self) -> u64 {
        self.queue.extra_bytes()
            + self.key_bytes
            + self.keys.len() as u64 * crate::queue::cost::KEY_OVERHEAD_BYTES
    }
}

impl Slot {
    pub(super) fn new(
        mut queue: Queue,
        closed: CancellationToken,
        observer: Arc<dyn QueueObserver>,
        journal: Option<Journal>,
        budget: Arc<MemoryBudget>,
    ) -> Self {
        if journal.is_some() {
            queue.record_changes();
        }
        Self {
            state: Mutex::new(SlotState {
                queue,
                armed: None,
                holders: HashMap::new(),
                bases: BTreeMap::new(),
                base_of: FxHashMap::default(),
                keys: BTreeMap::new(),
                key_bytes: 0,
            }),
            ready: Notify::new(),
            room: Notify::new(),
            timer: Notify::new(),
            closed,
            observer,
            polling: AtomicUsize::new(0),
            journal,
            paused: tokio::sync::watch::Sender::new(false),
            budget,
        }
    }

    /// Tells worker streams whether the queue is paused, after a change
    /// that may have paused or resumed it.
    pub(super) fn note_paused(&self) {
        let paused = self.lock().queue.is_paused();
        self.paused.send_if_modified(|was| {
            let changed = *was != paused;
            *was = paused;
            changed
        });
    }

    /// Writes the queue's job changes down, in the critical section that
    /// made them.
    fn write_changes(&self, state: &mut SlotState) {
        let Some(journal) = &self.journal else {
            return;
        };
        let changes = state.queue.take_changes();
        if changes.is_empty() {
            return;
        }
        let clocks = Clocks::now();
        for change in changes {
            let mut key = None;
            let stored = match &change {
                JobChange::Stored { job, key: k, .. } => {
                    key = k.clone();
                    Some(job.id)
                }
                JobChange::Removed { id } => {
                    if let Some(seq) = state.base_of.remove(id) {
                        state.bases.remove(&seq);
                    }
                    None
                }
                _ => None,
            };
            let seq = journal.append(&durable::change_record(state.queue.name(), change, &clocks));
            if let Some(id) = stored {
                state.bases.insert(seq, id);
                state.base_of.insert(id, seq);
                if let Some(key) = key {
                    state.key_bytes += key.len() as u64;
                    state.keys.insert(seq, (key, id));
                }
            }
        }
    }

    /// Records where the state of each recovered job starts in the
    /// journal.
    pub(super) fn set_bases(&self, bases: Vec<(u64, JobId)>, keys: Vec<(u64, String, JobId)>) {
        let mut state = self.lock();
        let extra = state.extra_bytes();
        for (seq, id) in bases {
            state.bases.insert(seq, id);
            state.base_of.insert(id, seq);
        }
        for (seq, key, id) in keys {
            state.key_bytes += key.len() as u64;
            state.keys.insert(seq, (key, id));
        }
        self.count_extra(extra, state.extra_bytes());
    }

    /// Counts in the budget a change in what the queue holds beside its
    /// jobs, from `before` bytes to `after`; not once the queue is deleted
    /// (deleting gave back all it held), or shutting down.
    fn count_extra(&self, before: u64, after: u64) {
        if !self.closed.is_cancelled() {
            self.budget.adjust(before, after);
        }
    }

    /// Whether a live job's state, or an idempotency key, starts before
    /// record `boundary`: whether the segments before it still matter.
    pub(super) fn holds_live_before(&self, boundary: u64) -> bool {
        let state = self.lock();
        state.bases.range(..boundary).next().is_some()
            || state.keys.range(..boundary).next().is_some()
    }

    /// What the queue holds beside its jobs, as the memory budget counts
    /// it: what deleting the queue gives back with its jobs' bytes.
    pub(super) fn extra_bytes(&self) -> u64 {
        self.lock().extra_bytes()
    }

    /// Idempotency keys this queue has on record, and their bytes.
    pub(super) fn keys_on_record(&self) -> (usize, u64) {
        let state = self.lock();
        (state.keys.len(), state.key_bytes)
    }

    /// Copies forward up to `max` live jobs whose state starts before
    /// record `boundary` (in a segment about to be deleted), each as a
    /// snapshot of how it is now, and then up to `max` idempotency keys
    /// written before it that still dedupe; returns how many it looked at.
    /// Bounded, so the queue's lock is held briefly; call it again until it
    /// returns 0.
    pub(super) fn copy_forward(&self, boundary: u64, max: usize) -> usize {
        let jobs = self.copy_jobs_forward(boundary, max);
        if jobs > 0 {
            return jobs;
        }
        self.copy_keys_forward(boundary, max)
    }

    fn copy_keys_forward(&self, boundary: u64, max: usize) -> usize {
        let Some(journal) = &self.journal else {
            return 0;
        };
        let mut state = self.lock();
        let extra = state.extra_bytes();
        let old: Vec<u64> = state
            .keys
            .range(..boundary)
            .take(max)
            .map(|(seq, _)| *seq)
            .collect();
        let clocks = Clocks::now();
        let now = Instant::now();
        for old_seq in &old {
            let Some((key, id)) = state.keys.remove(old_seq) else {
                continue;
            };
            match state.queue.remembered_key(now, &key) {
                Some((holder, first_seen)) if holder == id => {
                    let seq = journal.append_copy(&durable::key_record(
                        state.queue.name(),
                        &key,
                        id,
                        first_seen,
                        &clocks,
                    ));
                    state.keys.insert(seq, (key, id));
                }
                // Expired, or the key was used again later (its newer
                // record is the one that counts).
                _ => state.key_bytes -= key.len() as u64,
            }
        }
        self.count_extra(extra, state.extra_bytes());
        old.len()
    }

    fn copy_jobs_forward(&self, boundary: u64, max: usize) -> usize {
        let Some(journal) = &self.journal else {
            return 0;
        };
        let mut state = self.lock();
        let old: Vec<(u64, JobId)> = state
            .bases
            .range(..boundary)
            .take(max)
            .map(|(seq, id)| (*seq, *id))
            .collect();
        let clocks = Clocks::now();
        for (old_seq, id) in &old {
            state.bases.remove(old_seq);
            let Some(snapshot) = state.queue.snapshot(id) else {
                state.base_of.remove(id);
                continue;
            };
            let seq = journal.append_copy(&durable::snapshot_record(
                state.queue.name(),
                &snapshot,
                &clocks,
            ));
            state.bases.insert(seq, *id);
            state.base_of.insert(*id, seq);
        }
        old.len()
    }

    /// Writes the queue's settings down, as they are now.
    pub(super) fn write_settings(&self) {
        let Some(journal) = &self.journal else {
            return;
        };
        let state = self.lock();
        let queue = &state.queue;
        journal.append(&durable::settings_record(
            queue.name(),
            queue.config(),
            queue.is_paused(),
        ));
    }

    /// Counts a long-poll until the returned guard is dropped.
    pub(super) fn long_poll(&self) -> LongPoll<'_> {
        self.polling.fetch_add(1, Ordering::Relaxed);
        LongPoll(&self.polling)
    }

    /// Long-polls waiting now.
    pub(super) fn long_polls(&self) -> usize {
        self.polling.load(Ordering::Relaxed)
    }

    /// Runs one operation on the queue, then wakes whoever it concerns:
    /// workers for newly ready jobs, producers for freed room, and the timer
    /// task for an earlier deadline.
    pub(super) fn with<R>(&self, op: impl FnOnce(&mut Queue) -> R) -> R {
        let mut state = self.lock();
        let held = state.queue.len();
        let extra = state.extra_bytes();
        state.queue.set_room(self.budget.room());
        let result = op(&mut state.queue);
        self.write_changes(&mut state);
        self.count_extra(extra, state.extra_bytes());
        let readied = state.queue.take_readied();
        let released = self.released_holders(&mut state);
        let freed = state.queue.len() < held;
        let next = state.queue.next_deadline();
        let rearm = match (next, state.armed) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if rearm {
            state.armed = next;
        }
        drop(state);
        self.wake(readied, freed, rearm, released);
        result
    }

    /// Registers a worker stream; its notification is woken whenever one
    /// of its leases ends.
    pub(super) fn add_holder(&self, holder: HolderId) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.lock().holders.insert(holder, Arc::clone(&notify));
        notify
    }

    /// Records how long first deliveries waited after their enqueue.
    pub(super) fn observe_leases(&self, leased: &[Delivery]) {
        let now = SystemTime::now();
        for delivery in leased.iter().filter(|d| d.attempt == 1) {
            let waited = now
                .duration_since(delivery.job.enqueued_at)
                .unwrap_or_default();
            self.observer.first_lease(waited);
        }
    }

    /// Worker streams registered.
    pub(super) fn holders(&self) -> usize {
        self.lock().holders.len()
    }

    /// Forgets a worker stream and gives back every lease it still holds.
    pub(super) fn remove_holder(&self, holder: HolderId, reason: &str) -> usize {
        let released = self.with(|q| q.release_holder(Instant::now(), holder, reason));
        self.lock().holders.remove(&holder);
        released
    }

    fn released_holders(&self, state: &mut SlotState) -> Vec<Arc<Notify>> {
        let released = state.queue.take_released();
        released
            .iter()
            .filter_map(|holder| state.holders.get(holder).cloned())
            .collect()
    }

    /// The timer task's step: applies what is due now and records the next
    /// deadline, which the task then sleeps until.
    pub(super) fn advance(&self) -> Option<Instant> {
        let mut state = self.lock();
        state.queue.advance(Instant::now());
        self.write_changes(&mut state);
        let readied = state.queue.take_readied();
        let released = self.released_holders(&mut state);
        let next = state.queue.next_deadline();
        state.armed = next;
        drop(state);
        self.wake(readied, false, false, released);
        next
    }

    fn wake(&self, readied: usize, freed: bool, rearm: bool, released: Vec<Arc<Notify>>) {
        for holder in released {
            holder.notify_one();
        }
        for _ in 0..readied.min(MAX_WAKE) {
            self.ready.notify_one();
        }
        if freed {
            self.room.notify_waiters();
        }
        if rearm {
            self.timer.notify_one();
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while locked cannot leave the queue half-changed in a way
        // that matters more than stopping the whole server would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
