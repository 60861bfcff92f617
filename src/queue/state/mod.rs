//! [`Queue`]: one queue's jobs and the operations that move them between
//! states.

mod admin;
mod changes;
mod counts;
mod status;

pub use admin::{MAX_SCAN, Purged};
pub use changes::{JobChange, JobSnapshot, RestoredJob, RestoredPlace, SnapshotPlace};
pub use counts::{Acked, QueueCounts, QueueStats};
pub use status::TEXT_NOT_KEPT;
pub use status::{Enqueued, JobState, JobStatus, LeaseShown};
use status::{record_failure, shown_history, state_of, status_of};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::finished::{Finished, FinishedJobs, Outcome};
use super::idempotency::IdempotencyKeys;
use super::ready::ReadyQueue;
use super::{
    Delivery, HolderId, Job, JobId, LeaseToken, Metadata, NackOutcome, NackRequest, NewJob,
    QueueConfig, QueueError, QueueName, RetryPolicy,
};

/// Order of the deadline set: earliest first; the sequence number breaks ties
/// and makes every key unique.
type TimerKey = (Instant, u64);

/// Where a stored job is. Each variant records its key in the index that
/// holds it, so leaving that index is one O(log n) removal.
#[derive(Debug, Clone)]
enum Place {
    /// The sequence number the job got when it became ready.
    Ready(u64),
    /// Boxed like a lease: the entry of a ready job, the common case,
    /// stays two words.
    Scheduled(Box<TimerKey>),
    /// Boxed: few jobs are leased at once, and the entry of every other
    /// job stays small.
    Leased(Box<LiveLease>),
    Dead,
}

impl Place {
    /// The lease, if the job is leased.
    fn lease(&self) -> Option<LiveLease> {
        match self {
            Self::Leased(lease) => Some(**lease),
            Self::Ready(_) | Self::Scheduled(_) | Self::Dead => None,
        }
    }
}

/// A live lease: which delivery it is, its key in the deadline set, and the
/// stream holding it, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LiveLease {
    delivery: u64,
    expiry: TimerKey,
    holder: Option<HolderId>,
    /// When the delivery was made.
    since: Instant,
}

#[derive(Debug)]
struct Entry {
    job: Arc<Job>,
    /// Deliveries so far.
    attempts: u32,
    /// Of those, the ones whose worker stream ended while it held the job
    /// (see [`DROPS_PER_ATTEMPT`]).
    drops: u32,
    /// Boxed, and only once an attempt fails: most jobs never fail, and a
    /// million queued jobs pay for every byte of their entries.
    failures: Option<Box<Failures>>,
    place: Place,
}

/// Deliveries that failed (nacked, or whose lease ran out), as opposed to
/// those dropped with their worker stream.
fn failed_attempts(entry: &Entry) -> u32 {
    entry.attempts.saturating_sub(entry.drops)
}

/// A job's failed attempts.
#[derive(Debug)]
pub(in crate::queue) struct Failures {
    pub(in crate::queue) last_error: String,
    /// The latest failed attempts, oldest first, at most [`MAX_HISTORY`]
    /// of them.
    pub(in crate::queue) history: Vec<Failure>,
    /// What this history counts against the memory budget.
    pub(in crate::queue) bytes: u64,
}

/// Failed attempts kept per job.
pub const MAX_HISTORY: usize = 16;

/// What failure histories take of the memory budget.
#[derive(Debug)]
struct FailureMemory {
    /// What the histories of held jobs count.
    held: u64,
    /// Room left in the budget, as the caller last said (see
    /// [`Queue::set_room`]).
    room: u64,
}

/// A delivery whose worker stream ended while it held the job (a killed
/// worker pod, a network blip, a rollout) is a drop, not a failure: it does
/// not count against `max_attempts`, so healthy jobs are not dead-lettered
/// by disconnects. A job is dead-lettered once its drops reach this many
/// times `max_attempts`, so one that crashes every worker that takes it
/// still ends in the dead-letter set.
pub const DROPS_PER_ATTEMPT: u32 = 2;

/// One failed attempt of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Which attempt failed.
    pub attempt: u32,
    /// Why: the nack's reason, or how the lease ended.
    pub error: String,
    /// When.
    pub at: Instant,
}

/// One queue: its jobs in every state, and the operations that move them.
///
/// Every method takes `now` and first applies what is due by then (see
/// [`advance`](Self::advance)), so results never depend on when a timer task
/// last ran.
#[derive(Debug)]
pub struct Queue {
    name: QueueName,
    config: QueueConfig,
    /// Keyed by id, which grows with time: in FIFO use, enqueues touch
    /// the right edge and leases and acks the left, so both stay in cache
    /// however many jobs wait in between.
    jobs: BTreeMap<JobId, Entry>,
    ready: ReadyQueue,
    /// Deadlines of scheduled jobs and of leases.
    timers: BTreeMap<TimerKey, JobId>,
    /// Dead-lettered jobs, by id.
    dead: BTreeSet<JobId>,
    leased: usize,
    /// A paused queue takes jobs but hands none out.
    paused: bool,
    keys: IdempotencyKeys,
    finished: FinishedJobs,
    bytes: u64,
    failure_memory: FailureMemory,
    next_seq: u64,
    stats: QueueStats,
    /// Jobs that became ready since the last [`take_readied`](Self::take_readied).
    readied: usize,
    /// Jobs leased by each holder (a worker stream), so a closing stream
    /// gives back exactly its own.
    holdings: FxHashMap<HolderId, FxHashSet<JobId>>,
    /// Holders that lost a lease since the last
    /// [`take_released`](Self::take_released).
    released: Vec<HolderId>,
    /// Changes not yet taken, when they are recorded (see `changes.rs`).
    changes: Option<Vec<JobChange>>,
}

impl Queue {
    /// An empty queue.
    pub fn new(name: QueueName, config: QueueConfig) -> Self {
        Self {
            name,
            jobs: BTreeMap::new(),
            ready: ReadyQueue::default(),
            timers: BTreeMap::new(),
            dead: BTreeSet::new(),
            leased: 0,
            paused: false,
            keys: IdempotencyKeys::new(config.idempotency_window, config.idempotency_max_keys),
            finished: FinishedJobs::new(config.finished_retention, config.finished_max),
            bytes: 0,
            failure_memory: FailureMemory {
                held: 0,
                room: u64::MAX,
            },
            next_seq: 0,
            stats: QueueStats::default(),
            readied: 0,
            holdings: FxHashMap::default(),
            released: Vec::new(),
            changes: None,
            config,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &QueueName {
        &self.name
    }

    /// The queue's settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Jobs held in every state.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether the queue holds no job at all.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Bytes held by the queue's jobs (payloads and metadata).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// What the queue holds beside its jobs, as the memory budget counts
    /// it: failure histories, idempotency keys, finished-job records.
    /// Changes only inside the queue's operations, so the caller compares
    /// it before and after each.
    pub fn extra_bytes(&self) -> u64 {
        self.failure_memory.held + self.keys.bytes() + self.finished.bytes()
    }

    /// Tells the queue how much room is left in the memory budget: a
    /// failure whose error text does not fit is recorded without it (see
    /// [`TEXT_NOT_KEPT`]). A nack or an expired lease is never refused, so
    /// this is how failure histories stay within the budget.
    pub fn set_room(&mut self, room: u64) {
        self.failure_memory.room = room;
    }

    /// Jobs in each state.
    pub fn counts(&self) -> QueueCounts {
        QueueCounts {
            ready: self.ready.len(),
            scheduled: self.timers.len() - self.leased,
            leased: self.leased,
            dead: self.dead.len(),
        }
    }

    /// Totals since creation.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// The earliest time at which [`advance`](Self::advance) has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|((at, _), _)| *at)
    }

    /// How many jobs became ready since the last call, for waking waiting
    /// workers.
    pub fn take_readied(&mut self) -> usize {
        std::mem::take(&mut self.readied)
    }

    /// Stores a batch of jobs, all or nothing. Jobs with a delay wait in the
    /// scheduled set until `now` plus their delay. A job whose idempotency key was seen
    /// within the window is not stored: its entry in the result names the
    /// job the key made first. The batch is taken on success and left as it
    /// was on refusal, so the caller can try it again.
    pub fn enqueue(
        &mut self,
        now: Instant,
        enqueued_at: SystemTime,
        batch: &mut Vec<(JobId, NewJob)>,
    ) -> Result<Vec<Enqueued>, QueueError> {
        self.advance(now);
        // Which jobs are duplicates, of earlier jobs or of each other.
        let mut outcome = Vec::with_capacity(batch.len());
        let mut in_batch: HashMap<&str, JobId> = HashMap::new();
        for (id, new) in batch.iter() {
            let earlier = new.idempotency_key.as_deref().and_then(|key| {
                self.keys
                    .get(now, key)
                    .or_else(|| in_batch.get(key).copied())
            });
            if let (None, Some(key)) = (earlier, new.idempotency_key.as_deref()) {
                in_batch.insert(key, *id);
            }
            outcome.push(match earlier {
                Some(first) => Enqueued {
                    id: first,
                    duplicate: true,
                },
                None => Enqueued {
                    id: *id,
                    duplicate: false,
                },
            });
        }
        self.check_room(outcome.iter().filter(|e| !e.duplicate).count())?;
        for ((id, mut new), result) in batch.drain(..).zip(&outcome) {
            if result.duplicate {
                continue;
            }
            let key = new.idempotency_key.take();
            // A copy only for a change report; the key itself moves in.
            let reported_key = self.changes.as_ref().and_then(|_| key.clone());
            if let Some(key) = key {
                self.keys.insert(now, key, id);
            }
            let size = new.size();
            let job = Arc::new(Job {
                id,
                priority: new.priority,
                max_attempts: new.max_attempts.unwrap_or(self.config.max_attempts),
                enqueued_at,
                size,
                payload: new.payload,
                metadata: Metadata::from(new.metadata),
            });
            let place = match new.delay {
                Some(delay) if !delay.is_zero() => self.schedule(id, now + delay),
                _ => self.make_ready(id, job.priority),
            };
            let delay = new.delay;
            self.note(|| JobChange::Stored {
                job: Arc::clone(&job),
                delay,
                key: reported_key,
            });
            self.jobs.insert(
                id,
                Entry {
                    job,
                    attempts: 0,
                    drops: 0,
                    failures: None,
                    place,
                },
            );
            self.bytes += size;
            self.stats.enqueued += 1;
        }
        Ok(outcome)
    }

    /// Whether `offered` more jobs fit within the queue's capacity.
    pub fn check_room(&self, offered: usize) -> Result<(), QueueError> {
        if self.jobs.len() + offered > self.config.capacity {
            return Err(QueueError::Full {
                queue: self.name.clone(),
                capacity: self.config.capacity,
                held: self.jobs.len(),
                offered,
            });
        }
        Ok(())
    }

    /// Leases up to `max` ready jobs, highest priority first, for
    /// `lease_for` (or the queue's default lease).
    pub fn lease(
        &mut self,
        now: Instant,
        max: usize,
        lease_for: Option<Duration>,
    ) -> Vec<Delivery> {
        self.lease_as(now, max, lease_for, None)
    }

    /// As [`lease`](Self::lease), on behalf of `holder` (a worker stream),
    /// whose leases can then be counted and given back together.
    pub fn lease_as(
        &mut self,
        now: Instant,
        max: usize,
        lease_for: Option<Duration>,
        holder: Option<HolderId>,
    ) -> Vec<Delivery> {
        self.advance(now);
        if self.paused {
            return Vec::new();
        }
        let deadline = now + lease_for.unwrap_or(self.config.lease_duration);
        let mut out = Vec::with_capacity(max.min(self.ready.len()));
        while out.len() < max {
            let jobs = &self.jobs;
            let Some(id) = self.ready.pop(|seq, id| {
                matches!(jobs.get(&id).map(|e| &e.place), Some(Place::Ready(s)) if *s == seq)
            }) else {
                break;
            };
            let delivery = self.seq();
            let expiry = (deadline, self.seq());
            let Some(entry) = self.jobs.get_mut(&id) else {
                debug_assert!(false, "ready job {id} has no entry");
                continue;
            };
            entry.attempts += 1;
            let attempt = entry.attempts;
            entry.place = Place::Leased(Box::new(LiveLease {
                delivery,
                expiry,
                holder,
                since: now,
            }));
            out.push(Delivery {
                job: Arc::clone(&entry.job),
                token: LeaseToken { job: id, delivery },
                attempt: entry.attempts,
                // Drops do not use up attempts: each one adds a delivery.
                max_attempts: entry.job.max_attempts.saturating_add(entry.drops),
                deadline,
            });
            self.timers.insert(expiry, id);
            self.leased += 1;
            self.stats.leased += 1;
            self.note(|| JobChange::Leased { id, attempt });
            if let Some(holder) = holder {
                self.holdings.entry(holder).or_default().insert(id);
            }
        }
        out
    }

    /// Live leases held by `holder`.
    pub fn held_by(&self, holder: HolderId) -> usize {
        self.holdings.get(&holder).map_or(0, FxHashSet::len)
    }

    /// Holders that lost a lease (acked, nacked, expired, by any path) since
    /// the last call, for waking their streams to lease again.
    pub fn take_released(&mut self) -> Vec<HolderId> {
        std::mem::take(&mut self.released)
    }

    /// Ends every lease `holder` has, as a failed attempt: each job is ready
    /// again at once, or dead-lettered if that was its last attempt. For a
    /// worker stream that closed. Returns how many leases were given back.
    pub fn release_holder(&mut self, now: Instant, holder: HolderId, reason: &str) -> usize {
        self.advance(now);
        let ids = self.holdings.remove(&holder).unwrap_or_default();
        for id in &ids {
            let Some(lease) = self.jobs.get(id).and_then(|e| e.place.lease()) else {
                debug_assert!(false, "held job {id} is not leased");
                continue;
            };
            self.end_lease(*id, lease);
            self.stats.expired += 1;
            self.drop_attempt(now, *id, reason.to_string());
        }
        self.released.retain(|h| *h != holder);
        ids.len()
    }

    /// Acks leases, all or none: if any token is not live, nothing changes.
    pub fn ack(&mut self, now: Instant, tokens: &[LeaseToken]) -> Result<Acked, QueueError> {
        self.advance(now);
        for token in tokens {
            self.live_lease(token)?;
        }
        let mut acked = Acked {
            jobs: 0,
            bytes: 0,
            held: Vec::with_capacity(tokens.len()),
        };
        for token in tokens {
            // A token repeated in the same call is acked once.
            let Ok(lease) = self.live_lease(token) else {
                continue;
            };
            self.end_lease(token.job, lease);
            if let Some(entry) = self.jobs.remove(&token.job) {
                let id = token.job;
                self.note(|| JobChange::Removed { id });
                acked.jobs += 1;
                acked.bytes += entry.job.size;
                acked.held.push(now.saturating_duration_since(lease.since));
                self.finish(now, entry, Outcome::Acked);
            }
        }
        self.bytes -= acked.bytes;
        self.stats.acked += acked.jobs as u64;
        Ok(acked)
    }

    /// Gives a leased job back: dead-lettered when asked or when its
    /// attempts are used up, otherwise scheduled for a retry.
    pub fn nack(
        &mut self,
        now: Instant,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, QueueError> {
        self.advance(now);
        let lease = self.live_lease(token)?;
        self.end_lease(token.job, lease);
        self.stats.nacked += 1;
        let id = token.job;
        let Some(entry) = self.jobs.get_mut(&id) else {
            return Err(self.lease_not_found(token));
        };
        let reason = if request.reason.is_empty() {
            "nacked without a reason".to_string()
        } else {
            request.reason
        };
        let report = self.changes.is_some();
        let failure = record_failure(entry, now, reason, &mut self.failure_memory, report);
        let attempts = entry.attempts;
        let priority = entry.job.priority;
        if request.dead_letter || failed_attempts(entry) >= entry.job.max_attempts {
            self.dead_letter(id);
            self.note_failure(id, failure, None, true);
            return Ok(NackOutcome::DeadLettered);
        }
        let delay = match request.retry_delay {
            Some(delay) => delay,
            None => self
                .config
                .retry
                .delay(attempts, RetryPolicy::jitter_unit(id, attempts)),
        };
        let at = now + delay;
        let place = if delay.is_zero() {
            self.make_ready(id, priority)
        } else {
            self.schedule(id, at)
        };
        self.set_place(id, place);
        self.note_failure(id, failure, (!delay.is_zero()).then_some(at), false);
        Ok(NackOutcome::RetryAt(at))
    }

    /// Moves a live lease's deadline to `lease_for` from `now`. The token
    /// stays the same.
    pub fn extend(
        &mut self,
        now: Instant,
        token: &LeaseToken,
        lease_for: Duration,
    ) -> Result<Instant, QueueError> {
        self.advance(now);
        let old = self.live_lease(token)?;
        self.timers.remove(&old.expiry);
        let deadline = now + lease_for;
        let expiry = (deadline, self.seq());
        self.timers.insert(expiry, token.job);
        self.set_place(
            token.job,
            Place::Leased(Box::new(LiveLease { expiry, ..old })),
        );
        Ok(deadline)
    }

    /// Applies every deadline up to `now`: scheduled jobs become ready, and
    /// expired leases put their job back (or dead-letter it when that was its
    /// last attempt). Each step costs O(log n); nothing else is visited.
    pub fn advance(&mut self, now: Instant) {
        // Keys and finished records past their time are forgotten whenever
        // the queue is used, so their memory comes back without waiting
        // for a lookup of them: O(1) each, paid once.
        self.keys.expire(now);
        self.finished.expire(now);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (_, id) = entry.remove_entry();
            let Some(entry) = self.jobs.get_mut(&id) else {
                debug_assert!(false, "timer for unknown job {id}");
                continue;
            };
            match &entry.place {
                Place::Scheduled(_) => {
                    let priority = entry.job.priority;
                    let place = self.make_ready(id, priority);
                    self.set_place(id, place);
                }
                Place::Leased(lease) => {
                    let holder = lease.holder;
                    let error = format!(
                        "lease expired before attempt {} was acked or nacked",
                        entry.attempts
                    );
                    // The timer entry is already gone; end the rest.
                    self.leased -= 1;
                    self.forget_holding(id, holder);
                    self.stats.expired += 1;
                    self.fail_attempt(now, id, error);
                }
                Place::Ready(_) | Place::Dead => {
                    debug_assert!(false, "timer for job {id} that is not waiting");
                }
            }
        }
    }

    /// Removes a job that no worker holds (ready, scheduled or dead) and
    /// returns it. A leased job is refused: its worker may be acking it.
    pub fn cancel(&mut self, now: Instant, id: &JobId) -> Result<Arc<Job>, QueueError> {
        self.advance(now);
        let place = match self.jobs.get(id) {
            None => {
                return Err(QueueError::JobNotFound {
                    queue: self.name.clone(),
                    job: *id,
                });
            }
            Some(entry) => entry.place.clone(),
        };
        match place {
            Place::Ready(_) => self.ready.forget(),
            Place::Scheduled(key) => {
                self.timers.remove(&*key);
            }
            Place::Dead => {
                self.dead.remove(id);
            }
            Place::Leased(_) => {
                return Err(QueueError::JobLeased {
                    queue: self.name.clone(),
                    job: *id,
                });
            }
        }
        let entry = self
            .jobs
            .remove(id)
            .ok_or_else(|| QueueError::JobNotFound {
                queue: self.name.clone(),
                job: *id,
            })?;
        self.bytes -= entry.job.size;
        let job = Arc::clone(&entry.job);
        let id = *id;
        self.note(|| JobChange::Removed { id });
        self.finish(now, entry, Outcome::Cancelled);
        Ok(job)
    }

    /// A job's state, attempts and failures, for inspection: a job the
    /// queue holds, or one that left it (acked, cancelled) within the
    /// retention window.
    pub fn job_status(&mut self, now: Instant, id: &JobId) -> Option<JobStatus> {
        if let Some(entry) = self.jobs.get(id) {
            return Some(status_of(entry));
        }
        self.finished.get(now, id).map(|f| {
            let (last_error, history) = shown_history(f.failures.as_deref());
            JobStatus {
                job: Arc::new(f.job.clone()),
                payload_bytes: f.payload_bytes,
                state: match f.outcome {
                    Outcome::Acked => JobState::Acked,
                    Outcome::Cancelled => JobState::Cancelled,
                },
                attempts: f.attempts,
                last_error,
                history,
                finished_at: Some(f.at),
                lease: None,
            }
        })
    }

    /// Keeps a record of a job that left the queue, with its failure
    /// history and its payload's size but not the payload or metadata.
    fn finish(&mut self, now: Instant, entry: Entry, outcome: Outcome) {
        self.forget_failures(&entry);
        let payload_bytes = entry.job.payload.len() as u64;
        let job = Job {
            payload: bytes::Bytes::new(),
            metadata: Metadata::default(),
            ..*entry.job
        };
        self.finished.record(Finished {
            job,
            payload_bytes,
            outcome,
            attempts: entry.attempts,
            failures: entry.failures,
            at: now,
        });
    }

    /// Stops counting the failure history of a job that leaves.
    fn forget_failures(&mut self, entry: &Entry) {
        self.failure_memory.held -= entry.failures.as_ref().map_or(0, |f| f.bytes);
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn make_ready(&mut self, id: JobId, priority: i32) -> Place {
        let seq = self.seq();
        self.ready.push(priority, seq, id);
        self.readied += 1;
        Place::Ready(seq)
    }

    fn schedule(&mut self, id: JobId, at: Instant) -> Place {
        let key = (at, self.seq());
        self.timers.insert(key, id);
        Place::Scheduled(Box::new(key))
    }

    fn dead_letter(&mut self, id: JobId) {
        self.dead.insert(id);
        self.set_place(id, Place::Dead);
        self.stats.dead_lettered += 1;
    }

    fn set_place(&mut self, id: JobId, place: Place) {
        if let Some(entry) = self.jobs.get_mut(&id) {
            entry.place = place;
        }
    }

    /// The live lease `token` names.
    fn live_lease(&self, token: &LeaseToken) -> Result<LiveLease, QueueError> {
        match self.jobs.get(&token.job).and_then(|e| e.place.lease()) {
            Some(lease) if lease.delivery == token.delivery => Ok(lease),
            _ => Err(self.lease_not_found(token)),
        }
    }

    /// Takes a lease out of the deadline set and its holder's count. The
    /// caller then moves the job on.
    fn end_lease(&mut self, id: JobId, lease: LiveLease) {
        self.timers.remove(&lease.expiry);
        self.leased -= 1;
        self.forget_holding(id, lease.holder);
    }

    fn forget_holding(&mut self, id: JobId, holder: Option<HolderId>) {
        let Some(holder) = holder else {
            return;
        };
        if let Some(held) = self.holdings.get_mut(&holder) {
            held.remove(&id);
            self.released.push(holder);
        }
    }

    /// A delivery failed without a nack (its lease ran out): the job is
    /// ready again, or dead if that was its last attempt.
    fn fail_attempt(&mut self, now: Instant, id: JobId, error: String) {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return;
        };
        let report = self.changes.is_some();
        let failure = record_failure(entry, now, error, &mut self.failure_memory, report);
        let exhausted = failed_attempts(entry) >= entry.job.max_attempts;
        self.ready_or_dead(id, exhausted);
        self.note_failure(id, failure, None, exhausted);
    }

    /// A delivery ended because its worker stream did: the job is ready
    /// again, the attempt not counted as failed (see
    /// [`DROPS_PER_ATTEMPT`]), unless it has been dropped too often.
    fn drop_attempt(&mut self, now: Instant, id: JobId, error: String) {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return;
        };
        entry.drops += 1;
        let report = self.changes.is_some();
        let failure = record_failure(entry, now, error, &mut self.failure_memory, report);
        let exhausted = entry.drops >= entry.job.max_attempts.saturating_mul(DROPS_PER_ATTEMPT);
        self.ready_or_dead(id, exhausted);
        if let Some(failure) = failure {
            self.note(|| match exhausted {
                true => JobChange::DeadLettered { id, failure },
                false => JobChange::Dropped { id, failure },
            });
        }
    }

    /// Puts a job whose delivery just ended back in line, or in the
    /// dead-letter set when `exhausted`.
    fn ready_or_dead(&mut self, id: JobId, exhausted: bool) {
        if exhausted {
            self.dead_letter(id);
            return;
        }
        let Some(priority) = self.jobs.get(&id).map(|e| e.job.priority) else {
            return;
        };
        let place = self.make_ready(id, priority);
        self.set_place(id, place);
    }

    /// Reports the outcome of a failed attempt whose failure was just
    /// recorded.
    fn note_failure(
        &mut self,
        id: JobId,
        failure: Option<Failure>,
        due: Option<Instant>,
        dead: bool,
    ) {
        let Some(failure) = failure else {
            return;
        };
        self.note(|| match dead {
            true => JobChange::DeadLettered { id, failure },
            false => JobChange::Retried { id, failure, due },
        });
    }

    fn lease_not_found(&self, token: &LeaseToken) -> QueueError {
        QueueError::LeaseNotFound {
            queue: self.name.clone(),
            token: *token,
        }
    }
}
