//! An engine whose stores must wait, and may fail: the in-memory engine
//! behind a gate that holds every enqueue until the test opens it, then
//! lets each take its own time, as a store that awaits an fsync or a
//! database would. Payloads `"down"` and
//! `"broken"` fail with the store errors, so the statuses they map to can
//! be seen end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jobq::engine::{
    Consume, Engine, EngineError, EngineStats, JobPage, MemoryEngine, Operate, Produce,
    PurgeTarget, QueueInfo, QueueUpdate, ScheduleFigures, ScheduleInfo, Schedules,
    WorkerAttachment,
};
use jobq::queue::{
    Delivery, Enqueued, JobId, JobState, JobStatus, LeaseToken, NackOutcome, NackRequest, NewJob,
    QueueConfig, QueueName, ScheduleName,
};
use jobq::schedule::{ScheduleSpec, Upserted};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFutureOwned;

#[derive(Debug, Clone)]
pub(crate) struct Gated {
    pub(crate) inner: MemoryEngine,
    gate: Arc<Semaphore>,
    /// Enqueue calls that have begun (and are held or done).
    pub(crate) begun: Arc<AtomicUsize>,
}

impl Gated {
    /// Holds every enqueue until [`open`](Self::open).
    pub(crate) fn closed(inner: MemoryEngine) -> Self {
        Self {
            inner,
            gate: Arc::new(Semaphore::new(0)),
            begun: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Lets every enqueue through, now and from now on.
    pub(crate) fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// Enqueue calls begun so far.
    pub(crate) fn begun(&self) -> usize {
        self.begun.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Produce for Gated {
    async fn enqueue(
        &self,
        queue: QueueName,
        jobs: Vec<NewJob>,
        wait_for_room: Option<Duration>,
    ) -> Result<Vec<Enqueued>, EngineError> {
        let nth = self.begun.fetch_add(1, Ordering::SeqCst);
        let _pass = self.gate.acquire().await.expect("the gate is never closed");
        // Stores take 0 to 2 ms, varying from call to call, so they finish
        // in another order than they began.
        let spread = (nth as u64 * 7919) % 5;
        tokio::time::sleep(Duration::from_micros(spread * 500)).await;
        match jobs.first().map(|job| &job.payload[..]) {
            Some(b"down") => Err(EngineError::StoreUnavailable {
                store: "test",
                reason: "the store is down".into(),
            }),
            Some(b"broken") => Err(EngineError::StoreFailed {
                store: "test",
                reason: "a record failed its checksum".into(),
            }),
            _ => Produce::enqueue(&self.inner, queue, jobs, wait_for_room).await,
        }
    }
}

#[async_trait]
impl Consume for Gated {
    async fn lease(
        &self,
        queue: QueueName,
        max: usize,
        lease_for: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Delivery>, EngineError> {
        Consume::lease(&self.inner, queue, max, lease_for, wait).await
    }

    async fn attach_worker(
        &self,
        queue: QueueName,
    ) -> Result<Box<dyn WorkerAttachment>, EngineError> {
        self.inner.attach_worker(queue).await
    }

    async fn ack(&self, queue: &QueueName, tokens: &[LeaseToken]) -> Result<usize, EngineError> {
        Consume::ack(&self.inner, queue, tokens).await
    }

    async fn nack(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, EngineError> {
        Consume::nack(&self.inner, queue, token, request).await
    }

    async fn extend(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        lease_for: Duration,
    ) -> Result<Instant, EngineError> {
        Consume::extend(&self.inner, queue, token, lease_for).await
    }
}

#[async_trait]
impl Operate for Gated {
    async fn list_queues(
        &self,
        after: Option<&QueueName>,
        limit: usize,
    ) -> Result<Vec<QueueInfo>, EngineError> {
        self.inner.list_queues(after, limit).await
    }

    async fn queue_info(&self, queue: &QueueName) -> Result<QueueInfo, EngineError> {
        Operate::queue_info(&self.inner, queue).await
    }

    async fn update_queue(
        &self,
        queue: &QueueName,
        update: QueueUpdate,
        create: bool,
    ) -> Result<QueueInfo, EngineError> {
        Operate::update_queue(&self.inner, queue, update, create).await
    }

    async fn delete_queue(&self, queue: &QueueName, force: bool) -> Result<usize, EngineError> {
        Operate::delete_queue(&self.inner, queue, force).await
    }

    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<(), EngineError> {
        Operate::set_paused(&self.inner, queue, paused).await
    }

    async fn purge(&self, queue: &QueueName, target: PurgeTarget) -> Result<usize, EngineError> {
        Operate::purge(&self.inner, queue, target).await
    }

    async fn list_jobs(
        &self,
        queue: &QueueName,
        state: Option<JobState>,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage, EngineError> {
        Operate::list_jobs(&self.inner, queue, state, after, limit).await
    }

    async fn find_job(
        &self,
        queue: Option<&QueueName>,
        id: &JobId,
    ) -> Result<(QueueName, JobStatus), EngineError> {
        Operate::find_job(&self.inner, queue, id).await
    }

    async fn cancel_job(&self, queue: Option<&QueueName>, id: &JobId) -> Result<(), EngineError> {
        Operate::cancel_job(&self.inner, queue, id).await
    }

    async fn redrive(
        &self,
        queue: &QueueName,
        ids: Option<&[JobId]>,
    ) -> Result<usize, EngineError> {
        Operate::redrive(&self.inner, queue, ids).await
    }

    async fn stats(&self) -> Result<EngineStats, EngineError> {
        self.inner.stats().await
    }
}

#[async_trait]
impl Schedules for Gated {
    async fn set_schedule(
        &self,
        name: ScheduleName,
        spec: ScheduleSpec,
    ) -> Result<(ScheduleInfo, Upserted), EngineError> {
        Schedules::set_schedule(&self.inner, name, spec).await
    }

    async fn schedule_info(&self, name: &ScheduleName) -> Result<ScheduleInfo, EngineError> {
        Schedules::schedule_info(&self.inner, name).await
    }

    async fn list_schedules(
        &self,
        after: Option<&ScheduleName>,
        limit: usize,
    ) -> Result<Vec<ScheduleInfo>, EngineError> {
        Schedules::list_schedules(&self.inner, after, limit).await
    }

    async fn delete_schedule(&self, name: &ScheduleName) -> Result<(), EngineError> {
        Schedules::delete_schedule(&self.inner, name).await
    }

    async fn set_schedule_paused(
        &self,
        name: &ScheduleName,
        paused: bool,
    ) -> Result<ScheduleInfo, EngineError> {
        Schedules::set_schedule_paused(&self.inner, name, paused).await
    }

    async fn trigger_schedule(&self, name: &ScheduleName) -> Result<Enqueued, EngineError> {
        Schedules::trigger_schedule(&self.inner, name).await
    }

    async fn schedule_figures(&self) -> Result<Vec<ScheduleFigures>, EngineError> {
        Schedules::schedule_figures(&self.inner).await
    }
}

#[async_trait]
impl Engine for Gated {
    fn store_kind(&self) -> &'static str {
        "test"
    }

    fn queue_defaults(&self) -> &QueueConfig {
        self.inner.queue_defaults()
    }

    fn shutdown(&self) {
        Engine::shutdown(&self.inner);
    }

    fn is_shutting_down(&self) -> bool {
        Engine::is_shutting_down(&self.inner)
    }

    async fn stopped(&self) {
        self.inner.stopped().await;
    }

    fn shutting_down(&self) -> WaitForCancellationFutureOwned {
        self.inner.shutting_down()
    }
}
