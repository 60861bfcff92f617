//! [`Starting`]: an engine that is still being opened (a journal being
//! replayed). Until [`Starting::ready`] hands it the real engine, every
//! call is refused with UNAVAILABLE, so the port can be served (health
//! saying NOT_SERVING) without any call seeing a half-recovered state;
//! from then on every call goes to the real engine.

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::{
    Consume, Engine, EngineError, EngineStats, JobPage, Operate, Produce, PurgeTarget, QueueInfo,
    QueueUpdate, ScheduleFigures, ScheduleInfo, Schedules, SharedEngine, WorkerAttachment,
};
use crate::queue::{
    Delivery, Enqueued, JobId, JobState, JobStatus, LeaseToken, NackOutcome, NackRequest, NewJob,
    QueueConfig, QueueName, ScheduleName,
};
use crate::schedule::{ScheduleSpec, Upserted};

/// An engine being opened, then the opened engine.
#[derive(Debug)]
pub struct Starting {
    store: &'static str,
    what: String,
    defaults: QueueConfig,
    engine: OnceLock<SharedEngine>,
    shutdown: CancellationToken,
}

impl Starting {
    /// An engine of kind `store` being opened; `what` says what is being
    /// done, for the refusal (`"replaying the journal in /data"`).
    pub fn new(store: &'static str, what: String, defaults: QueueConfig) -> Self {
        Self {
            store,
            what,
            defaults,
            engine: OnceLock::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Hands over the opened engine; every call from now on goes to it. A
    /// shutdown that began meanwhile is passed on.
    pub fn ready(&self, engine: SharedEngine) {
        let engine = self.engine.get_or_init(|| engine);
        if self.shutdown.is_cancelled() {
            engine.shutdown();
        }
    }

    fn engine(&self) -> Result<&SharedEngine, EngineError> {
        self.engine.get().ok_or_else(|| EngineError::StoreUnavailable {
            store: self.store,
            reason: format!(
                "the server is still starting ({}); health reports NOT_SERVING until it is done",
                self.what
            ),
        })
    }
}

#[async_trait]
impl Produce for Starting {
    async fn enqueue(
        &self,
        queue: QueueName,
        jobs: Vec<NewJob>,
        wait_for_room: Option<Duration>,
    ) -> Result<Vec<Enqueued>, EngineError> {
        self.engine()?.enqueue(queue, jobs, wait_for_room).await
    }
}

#[async_trait]
impl Consume for Starting {
    async fn lease(
        &self,
        queue: QueueName,
        max: usize,
        lease_for: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Delivery>, EngineError> {
        self.engine()?.lease(queue, max, lease_for, wait).await
    }

    async fn attach_worker(
        &self,
        queue: QueueName,
    ) -> Result<Box<dyn WorkerAttachment>, EngineError> {
        self.engine()?.attach_worker(queue).await
    }

    async fn ack(&self, queue: &QueueName, tokens: &[LeaseToken]) -> Result<usize, EngineError> {
        self.engine()?.ack(queue, tokens).await
    }

    async fn nack(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, EngineError> {
        self.engine()?.nack(queue, token, request).await
    }

    async fn extend(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        lease_for: Duration,
    ) -> Result<Instant, EngineError> {
        self.engine()?.extend(queue, token, lease_for).await
    }
}

#[async_trait]
impl Operate for Starting {
    async fn list_queues(
        &self,
        after: Option<&QueueName>,
        limit: usize,
    ) -> Result<Vec<QueueInfo>, EngineError> {
        self.engine()?.list_queues(after, limit).await
    }

    async fn queue_figures(&self) -> Result<Vec<QueueInfo>, EngineError> {
        self.engine()?.queue_figures().await
    }

    async fn queue_info(&self, queue: &QueueName) -> Result<QueueInfo, EngineError> {
        self.engine()?.queue_info(queue).await
    }

    async fn update_queue(
        &self,
        queue: &QueueName,
        update: QueueUpdate,
        create: bool,
    ) -> Result<QueueInfo, EngineError> {
        self.engine()?.update_queue(queue, update, create).await
    }

    async fn delete_queue(&self, queue: &QueueName, force: bool) -> Result<usize, EngineError> {
        self.engine()?.delete_queue(queue, force).await
    }

    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<(), EngineError> {
        self.engine()?.set_paused(queue, paused).await
    }

    async fn purge(&self, queue: &QueueName, target: PurgeTarget) -> Result<usize, EngineError> {
        self.engine()?.purge(queue, target).await
    }

    async fn list_jobs(
        &self,
        queue: &QueueName,
        state: Option<JobState>,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage, EngineError> {
        self.engine()?.list_jobs(queue, state, after, limit).await
    }

    async fn find_job(
        &self,
        queue: Option<&QueueName>,
        id: &JobId,
    ) -> Result<(QueueName, JobStatus), EngineError> {
        self.engine()?.find_job(queue, id).await
    }

    async fn cancel_job(&self, queue: Option<&QueueName>, id: &JobId) -> Result<(), EngineError> {
        self.engine()?.cancel_job(queue, id).await
    }

    async fn redrive(
        &self,
        queue: &QueueName,
        ids: Option<&[JobId]>,
    ) -> Result<usize, EngineError> {
        self.engine()?.redrive(queue, ids).await
    }

    async fn stats(&self) -> Result<EngineStats, EngineError> {
        self.engine()?.stats().await
    }
}

#[async_trait]
impl Schedules for Starting {
    async fn set_schedule(
        &self,
        name: ScheduleName,
        spec: ScheduleSpec,
    ) -> Result<(ScheduleInfo, Upserted), EngineError> {
        self.engine()?.set_schedule(name, spec).await
    }

    async fn schedule_info(&self, name: &ScheduleName) -> Result<ScheduleInfo, EngineError> {
        self.engine()?.schedule_info(name).await
    }

    async fn list_schedules(
        &self,
        after: Option<&ScheduleName>,
        limit: usize,
    ) -> Result<Vec<ScheduleInfo>, EngineError> {
        self.engine()?.list_schedules(after, limit).await
    }

    async fn delete_schedule(&self, name: &ScheduleName) -> Result<(), EngineError> {
        self.engine()?.delete_schedule(name).await
    }

    async fn set_schedule_paused(
        &self,
        name: &ScheduleName,
        paused: bool,
    ) -> Result<ScheduleInfo, EngineError> {
        self.engine()?.set_schedule_paused(name, paused).await
    }

    async fn trigger_schedule(&self, name: &ScheduleName) -> Result<Enqueued, EngineError> {
        self.engine()?.trigger_schedule(name).await
    }

    async fn schedule_figures(&self) -> Result<Vec<ScheduleFigures>, EngineError> {
        self.engine()?.schedule_figures().await
    }
}

#[async_trait]
impl Engine for Starting {
    fn store_kind(&self) -> &'static str {
        self.store
    }

    fn queue_defaults(&self) -> &QueueConfig {
        self.engine
            .get()
            .map_or(&self.defaults, |engine| engine.queue_defaults())
    }

    fn shutdown(&self) {
        self.shutdown.cancel();
        if let Some(engine) = self.engine.get() {
            engine.shutdown();
        }
    }

    fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    async fn stopped(&self) {
        if let Some(engine) = self.engine.get() {
            engine.stopped().await;
        }
    }

    fn shutting_down(&self) -> WaitForCancellationFutureOwned {
        self.shutdown.clone().cancelled_owned()
    }

    fn available(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.engine.get().and_then(|engine| engine.available())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::{EngineConfig, MemoryEngine};

    fn queue() -> QueueName {
        QueueName::new("emails").expect("name")
    }

    #[tokio::test]
    async fn refuses_every_call_until_ready_then_passes_them_on() {
        let starting = Starting::new(
            "memory",
            "replaying the journal in /data".into(),
            QueueConfig::default(),
        );
        let refused = starting
            .enqueue(queue(), vec![NewJob::default()], None)
            .await
            .expect_err("not ready");
        assert!(
            matches!(&refused, EngineError::StoreUnavailable { reason, .. }
                if reason.contains("replaying the journal in /data")),
            "{refused}"
        );
        assert!(starting.list_queues(None, 10).await.is_err());
        assert!(starting.attach_worker(queue()).await.is_err());

        let engine = MemoryEngine::new(EngineConfig::default());
        starting.ready(Arc::new(engine.clone()));
        starting
            .enqueue(queue(), vec![NewJob::default()], None)
            .await
            .expect("ready");
        assert_eq!(engine.jobs_held(), 1);
        assert_eq!(starting.list_queues(None, 10).await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn a_shutdown_while_starting_reaches_the_engine_once_ready() {
        let starting = Starting::new("memory", "opening".into(), QueueConfig::default());
        starting.shutdown();
        assert!(starting.is_shutting_down());
        let engine = MemoryEngine::new(EngineConfig::default());
        starting.ready(Arc::new(engine.clone()));
        assert!(engine.is_shutting_down());
        starting.stopped().await;
    }
}
