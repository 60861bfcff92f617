//! The engine seam: what every store of jobs offers the services above it.
//!
//! The gRPC services, the metrics and anything else that serves queues see
//! only the traits here, never a concrete store. They are async and
//! fallible because a store may have to wait (for an fsync, a database
//! round trip) and may fail (a disk, a connection); the in-memory engine
//! ([`MemoryEngine`]) answers every call at once unless it keeps a
//! [`journal`], whose durability it then awaits (outside every lock).
//! Capabilities are split the way callers use them:
//! - [`Produce`]: storing jobs;
//! - [`Consume`]: leasing them (one call at a time, or through a
//!   [`WorkerAttachment`] that holds leases against a worker's credits) and
//!   settling them (ack, nack, extend);
//! - [`Operate`]: queues, jobs, dead letters and totals, for operators and
//!   for metrics;
//! - [`Schedules`]: recurring jobs, fired into queues;
//! - [`Engine`]: all four, plus the shutdown every engine takes part in.
//!
//! Locks never cross this seam: an engine takes its locks inside one call,
//! releases them, and only then awaits its store.

mod error;
mod info;
pub mod journal;
pub mod memory;
mod observer;
pub mod postgres;
mod starting;

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFutureOwned;

pub use error::EngineError;
pub use info::{
    EngineConfig, EngineStats, InvalidSetting, JobPage, MAX_CAPACITY, PurgeTarget, QueueInfo,
    QueueUpdate, ScheduleFigures, ScheduleInfo,
};
pub use memory::{MemoryAttachment, MemoryBudget, MemoryEngine, RecoveredCounts, Recovery};
pub use observer::{JobObserver, NoObserver, QueueObserver};
pub use starting::Starting;

/// What a schedule's fire is recorded as when its queue refused the job
/// (full, too many queues), said in the log: the same for every store.
pub(crate) fn fire_failed(
    firing: &crate::schedule::Firing,
    error: &EngineError,
) -> crate::schedule::FireResult {
    tracing::warn!(
        schedule = %firing.name,
        queue = %firing.spec.queue,
        %error,
        "schedule fire not enqueued"
    );
    crate::schedule::FireResult::Failed(error.to_string())
}

use crate::queue::{
    Delivery, Enqueued, JobId, JobState, JobStatus, LeaseToken, NackOutcome, NackRequest, NewJob,
    QueueConfig, QueueName, ScheduleName,
};
use crate::schedule::{ScheduleSpec, Upserted};

/// The engine as the services hold it: shared, and chosen at start-up.
pub type SharedEngine = std::sync::Arc<dyn Engine>;

/// Storing jobs.
#[async_trait]
pub trait Produce: Send + Sync {
    /// Stores `jobs` in `queue`, all or nothing, creating the queue if new.
    ///
    /// When the queue is full or the memory budget spent, `wait_for_room`
    /// of `None` fails at once; `Some(d)` waits up to `d` for room.
    async fn enqueue(
        &self,
        queue: QueueName,
        jobs: Vec<NewJob>,
        wait_for_room: Option<Duration>,
    ) -> Result<Vec<Enqueued>, EngineError>;
}

/// Leasing jobs and settling leases.
#[async_trait]
pub trait Consume: Send + Sync {
    /// Leases up to `max` jobs from `queue`, creating the queue if new.
    /// When none is ready, waits up to `wait` for one; returns early, empty,
    /// when the server starts to shut down. Cancel-safe: a call dropped
    /// before it returns has leased nothing.
    async fn lease(
        &self,
        queue: QueueName,
        max: usize,
        lease_for: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Delivery>, EngineError>;

    /// Attaches a worker to `queue` (creating the queue if new). Leases
    /// taken through the attachment count against its credits; when it is
    /// dropped, every lease it still holds goes back to the queue.
    async fn attach_worker(
        &self,
        queue: QueueName,
    ) -> Result<Box<dyn WorkerAttachment>, EngineError>;

    /// Acks leases in `queue`, all or none. Returns how many jobs were
    /// acked (a token repeated in one call counts once).
    async fn ack(&self, queue: &QueueName, tokens: &[LeaseToken]) -> Result<usize, EngineError>;

    /// Gives a leased job back for a retry or to the dead-letter set.
    async fn nack(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, EngineError>;

    /// Moves a lease's deadline to `lease_for` from now, and returns it.
    async fn extend(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        lease_for: Duration,
    ) -> Result<Instant, EngineError>;
}

/// A worker's hold on one queue: leases pushed to it against its credits,
/// and its acks, nacks and extends, without looking the queue up again.
#[async_trait]
pub trait WorkerAttachment: Send + Sync + std::fmt::Debug {
    /// The queue.
    fn queue(&self) -> &QueueName;

    /// Waits until this attachment holds fewer than `credits` leases and a
    /// job is ready, then leases up to `max` of them (never more than the
    /// credits left). Fails with [`EngineError::QueueNotFound`] once the
    /// queue is deleted and with [`EngineError::ShuttingDown`] once the
    /// server shuts down. Cancel-safe: a call dropped before it returns has
    /// leased nothing.
    async fn next_leases(
        &self,
        credits: usize,
        max: usize,
        lease_for: Option<Duration>,
    ) -> Result<Vec<Delivery>, EngineError>;

    /// Completes once the leases [`next_leases`](Self::next_leases) just
    /// took are on record where a restart finds them (at once for an engine
    /// that keeps no record), so that a delivery's attempt is counted even
    /// if the server dies right after handing it out. Call it before
    /// sending them.
    async fn leases_recorded(&self) -> Result<(), EngineError>;

    /// Acks one of this queue's leases.
    async fn ack(&self, token: &LeaseToken) -> Result<usize, EngineError>;

    /// Nacks one of this queue's leases.
    async fn nack(
        &self,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, EngineError>;

    /// Extends one of this queue's leases.
    async fn extend(&self, token: &LeaseToken, lease_for: Duration)
    -> Result<Instant, EngineError>;

    /// Whether the queue is paused, now and as it changes.
    fn paused(&self) -> tokio::sync::watch::Receiver<bool>;
}

/// What operators do with queues and jobs, and what metrics read.
#[async_trait]
pub trait Operate: Send + Sync {
    /// The queues whose names sort after `after` (all with `None`), in
    /// name order, at most `limit` of them.
    async fn list_queues(
        &self,
        after: Option<&QueueName>,
        limit: usize,
    ) -> Result<Vec<QueueInfo>, EngineError>;

    /// Every queue's settings, counts and totals, for metrics. An engine
    /// that must not count every queue's jobs per scrape may answer with
    /// figures a few seconds old.
    async fn queue_figures(&self) -> Result<Vec<QueueInfo>, EngineError> {
        self.list_queues(None, usize::MAX).await
    }

    /// One queue's settings, counts and totals.
    async fn queue_info(&self, queue: &QueueName) -> Result<QueueInfo, EngineError>;

    /// As [`list_queues`](Self::list_queues), for pages that refresh
    /// themselves every second: an engine that must count jobs to answer
    /// may give the counts [`queue_figures`](Self::queue_figures) gives, a
    /// few seconds old.
    async fn list_queue_figures(
        &self,
        after: Option<&QueueName>,
        limit: usize,
    ) -> Result<Vec<QueueInfo>, EngineError> {
        self.list_queues(after, limit).await
    }

    /// As [`queue_info`](Self::queue_info), for pages that refresh
    /// themselves, with counts as [`list_queue_figures`](Self::list_queue_figures)
    /// gives them.
    async fn queue_figures_of(&self, queue: &QueueName) -> Result<QueueInfo, EngineError> {
        self.queue_info(queue).await
    }

    /// Changes a queue's settings, creating the queue first if `create`.
    /// The caller has checked each value on its own; the engine refuses a
    /// backoff base above the cap once merged with the current settings.
    async fn update_queue(
        &self,
        queue: &QueueName,
        update: QueueUpdate,
        create: bool,
    ) -> Result<QueueInfo, EngineError>;

    /// Deletes a queue and every job in it. Refused while workers hold
    /// leases, unless `force`. Returns how many jobs were dropped.
    async fn delete_queue(&self, queue: &QueueName, force: bool) -> Result<usize, EngineError>;

    /// Pauses or resumes leasing from a queue.
    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<(), EngineError>;

    /// Removes a queue's ready or dead jobs; returns how many.
    async fn purge(&self, queue: &QueueName, target: PurgeTarget) -> Result<usize, EngineError>;

    /// A page of a queue's jobs in id order, after `after`, in `state` (any
    /// with `None`). A page may hold fewer than `limit` jobs while more
    /// remain: the caller continues while [`JobPage::next`] is set.
    async fn list_jobs(
        &self,
        queue: &QueueName,
        state: Option<JobState>,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage, EngineError>;

    /// Finds a job by id: in `queue` if given, else in every queue.
    async fn find_job(
        &self,
        queue: Option<&QueueName>,
        id: &JobId,
    ) -> Result<(QueueName, JobStatus), EngineError>;

    /// Cancels a job no worker holds.
    async fn cancel_job(&self, queue: Option<&QueueName>, id: &JobId) -> Result<(), EngineError>;

    /// Moves dead jobs back to ready with attempts reset: those named, or
    /// all when `ids` is `None`. Returns how many moved.
    async fn redrive(&self, queue: &QueueName, ids: Option<&[JobId]>)
    -> Result<usize, EngineError>;

    /// Server-wide figures: jobs held and budget used.
    async fn stats(&self) -> Result<EngineStats, EngineError>;
}

/// Recurring jobs: schedules that enqueue a job into a queue at each fire
/// time, once per fire time whatever restarts happen.
#[async_trait]
pub trait Schedules: Send + Sync {
    /// Creates a schedule, or gives an existing one new settings (the same
    /// settings change nothing). Says which it did.
    async fn set_schedule(
        &self,
        name: ScheduleName,
        spec: ScheduleSpec,
    ) -> Result<(ScheduleInfo, Upserted), EngineError>;

    /// One schedule, with its next fire times and recent fires.
    async fn schedule_info(&self, name: &ScheduleName) -> Result<ScheduleInfo, EngineError>;

    /// The schedules whose names sort after `after` (all with `None`), in
    /// name order, at most `limit` of them.
    async fn list_schedules(
        &self,
        after: Option<&ScheduleName>,
        limit: usize,
    ) -> Result<Vec<ScheduleInfo>, EngineError>;

    /// Deletes a schedule; the jobs it made stay.
    async fn delete_schedule(&self, name: &ScheduleName) -> Result<(), EngineError>;

    /// Pauses or resumes a schedule. Fire times that pass while it is
    /// paused are missed: its misfire rule decides on resume.
    async fn set_schedule_paused(
        &self,
        name: &ScheduleName,
        paused: bool,
    ) -> Result<ScheduleInfo, EngineError>;

    /// Enqueues a schedule's job now, outside its trigger and its overlap
    /// rule.
    async fn trigger_schedule(&self, name: &ScheduleName) -> Result<Enqueued, EngineError>;

    /// Every schedule's counts and next due time, in name order, for
    /// metrics.
    async fn schedule_figures(&self) -> Result<Vec<ScheduleFigures>, EngineError>;
}

/// A whole engine: producing, consuming, operating and scheduling, and the
/// shutdown every engine takes part in.
#[async_trait]
pub trait Engine: Produce + Consume + Operate + Schedules + std::fmt::Debug {
    /// What stores the jobs, for logs and status pages: `"memory"`.
    fn store_kind(&self) -> &'static str;

    /// The settings a queue gets when it is created on first use.
    fn queue_defaults(&self) -> &QueueConfig;

    /// Starts shutting down: new enqueues and leases are refused, waiting
    /// leases return at once, worker attachments end. Acks, nacks and
    /// extends keep working so in-flight work can finish.
    fn shutdown(&self);

    /// Whether [`shutdown`](Self::shutdown) was called.
    fn is_shutting_down(&self) -> bool;

    /// Completes once every task the engine runs (timers, store writers)
    /// has ended, after [`shutdown`](Self::shutdown).
    async fn stopped(&self);

    /// Completes when the server begins to shut down, as an owned future
    /// that can be stored in a stream.
    fn shutting_down(&self) -> WaitForCancellationFutureOwned;

    /// Whether the store can be reached, now and as it changes, for an
    /// engine whose store is elsewhere (`None`: always, as in memory).
    fn available(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }

    /// Fails with [`EngineError::ShuttingDown`] once shutdown has begun.
    fn refuse_if_shutting_down(&self) -> Result<(), EngineError> {
        if self.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        Ok(())
    }
}
