//! The engine traits over [`MemoryEngine`]: every call is made by its
//! synchronous counterpart, then, with a journal, waits for the change to
//! be durable (leases: written) outside every lock.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::{MemoryAttachment, MemoryEngine};
use crate::engine::{
    Consume, Engine, EngineError, EngineStats, JobPage, Operate, Produce, PurgeTarget, QueueInfo,
    QueueUpdate, ScheduleFigures, ScheduleInfo, Schedules, WorkerAttachment,
};
use crate::queue::{
    Delivery, Enqueued, JobId, JobState, JobStatus, LeaseToken, NackOutcome, NackRequest, NewJob,
    QueueConfig, QueueName, ScheduleName,
};
use crate::schedule::{ScheduleSpec, Upserted};

#[async_trait]
impl Produce for MemoryEngine {
    async fn enqueue(
        &self,
        queue: QueueName,
        jobs: Vec<NewJob>,
        wait_for_room: Option<Duration>,
    ) -> Result<Vec<Enqueued>, EngineError> {
        self.check_disk_room(&jobs)?;
        let stored = MemoryEngine::enqueue(self, queue, jobs, wait_for_room).await?;
        self.settle().await?;
        Ok(stored)
    }
}

#[async_trait]
impl Schedules for MemoryEngine {
    async fn set_schedule(
        &self,
        name: ScheduleName,
        spec: ScheduleSpec,
    ) -> Result<(ScheduleInfo, Upserted), EngineError> {
        let set = MemoryEngine::set_schedule(self, name, spec)?;
        self.settle().await?;
        Ok(set)
    }

    async fn schedule_info(&self, name: &ScheduleName) -> Result<ScheduleInfo, EngineError> {
        MemoryEngine::schedule_info(self, name)
    }

    async fn list_schedules(
        &self,
        after: Option<&ScheduleName>,
        limit: usize,
    ) -> Result<Vec<ScheduleInfo>, EngineError> {
        MemoryEngine::list_schedules(self, after, limit)
    }

    async fn delete_schedule(&self, name: &ScheduleName) -> Result<(), EngineError> {
        MemoryEngine::delete_schedule(self, name)?;
        self.settle().await
    }

    async fn set_schedule_paused(
        &self,
        name: &ScheduleName,
        paused: bool,
    ) -> Result<ScheduleInfo, EngineError> {
        let info = MemoryEngine::set_schedule_paused(self, name, paused)?;
        self.settle().await?;
        Ok(info)
    }

    async fn trigger_schedule(&self, name: &ScheduleName) -> Result<Enqueued, EngineError> {
        MemoryEngine::trigger_schedule(self, name).await
    }

    async fn schedule_figures(&self) -> Result<Vec<ScheduleFigures>, EngineError> {
        Ok(MemoryEngine::schedule_figures(self))
    }
}

#[async_trait]
impl Consume for MemoryEngine {
    async fn lease(
        &self,
        queue: QueueName,
        max: usize,
        lease_for: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Delivery>, EngineError> {
        let leased = MemoryEngine::lease(self, queue, max, lease_for, wait).await?;
        if !leased.is_empty() {
            self.leases_recorded().await?;
        }
        Ok(leased)
    }

    async fn attach_worker(
        &self,
        queue: QueueName,
    ) -> Result<Box<dyn WorkerAttachment>, EngineError> {
        Ok(Box::new(self.attach(queue)?))
    }

    async fn ack(&self, queue: &QueueName, tokens: &[LeaseToken]) -> Result<usize, EngineError> {
        let acked = MemoryEngine::ack(self, queue, tokens)?;
        self.settle().await?;
        Ok(acked)
    }

    async fn nack(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, EngineError> {
        let outcome = MemoryEngine::nack(self, queue, token, request)?;
        self.settle().await?;
        Ok(outcome)
    }

    async fn extend(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        lease_for: Duration,
    ) -> Result<Instant, EngineError> {
        MemoryEngine::extend(self, queue, token, lease_for)
    }
}

#[async_trait]
impl WorkerAttachment for MemoryAttachment {
    fn queue(&self) -> &QueueName {
        MemoryAttachment::queue(self)
    }

    async fn next_leases(
        &self,
        credits: usize,
        max: usize,
        lease_for: Option<Duration>,
    ) -> Result<Vec<Delivery>, EngineError> {
        MemoryAttachment::next_leases(self, credits, max, lease_for).await
    }

    async fn leases_recorded(&self) -> Result<(), EngineError> {
        self.engine().leases_recorded().await
    }

    async fn ack(&self, token: &LeaseToken) -> Result<usize, EngineError> {
        let acked = MemoryAttachment::ack(self, token)?;
        self.engine().settle().await?;
        Ok(acked)
    }

    async fn nack(
        &self,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, EngineError> {
        let outcome = MemoryAttachment::nack(self, token, request)?;
        self.engine().settle().await?;
        Ok(outcome)
    }

    async fn extend(
        &self,
        token: &LeaseToken,
        lease_for: Duration,
    ) -> Result<Instant, EngineError> {
        MemoryAttachment::extend(self, token, lease_for)
    }

    fn paused(&self) -> tokio::sync::watch::Receiver<bool> {
        MemoryAttachment::paused(self)
    }
}

#[async_trait]
impl Operate for MemoryEngine {
    async fn list_queues(
        &self,
        after: Option<&QueueName>,
        limit: usize,
    ) -> Result<Vec<QueueInfo>, EngineError> {
        Ok(self.queue_page(after, limit))
    }

    async fn queue_info(&self, queue: &QueueName) -> Result<QueueInfo, EngineError> {
        MemoryEngine::queue_info(self, queue)
    }

    async fn update_queue(
        &self,
        queue: &QueueName,
        update: QueueUpdate,
        create: bool,
    ) -> Result<QueueInfo, EngineError> {
        let done = MemoryEngine::update_queue(self, queue, update, create)?;
        self.settle().await?;
        Ok(done)
    }

    async fn delete_queue(&self, queue: &QueueName, force: bool) -> Result<usize, EngineError> {
        let done = MemoryEngine::delete_queue(self, queue, force)?;
        self.settle().await?;
        Ok(done)
    }

    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<(), EngineError> {
        let done = MemoryEngine::set_paused(self, queue, paused)?;
        self.settle().await?;
        Ok(done)
    }

    async fn purge(&self, queue: &QueueName, target: PurgeTarget) -> Result<usize, EngineError> {
        let done = MemoryEngine::purge(self, queue, target)?;
        self.settle().await?;
        Ok(done)
    }

    async fn list_jobs(
        &self,
        queue: &QueueName,
        state: Option<JobState>,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage, EngineError> {
        MemoryEngine::list_jobs(self, queue, state, after, limit)
    }

    async fn find_job(
        &self,
        queue: Option<&QueueName>,
        id: &JobId,
    ) -> Result<(QueueName, JobStatus), EngineError> {
        MemoryEngine::find_job(self, queue, id)
    }

    async fn cancel_job(&self, queue: Option<&QueueName>, id: &JobId) -> Result<(), EngineError> {
        let done = MemoryEngine::cancel_job(self, queue, id)?;
        self.settle().await?;
        Ok(done)
    }

    async fn redrive(
        &self,
        queue: &QueueName,
        ids: Option<&[JobId]>,
    ) -> Result<usize, EngineError> {
        let done = MemoryEngine::redrive(self, queue, ids)?;
        self.settle().await?;
        Ok(done)
    }

    async fn stats(&self) -> Result<EngineStats, EngineError> {
        Ok(EngineStats {
            jobs_held: self.jobs_held(),
            memory_used: self.memory_used(),
            memory_budget: self.memory_budget(),
        })
    }
}

#[async_trait]
impl Engine for MemoryEngine {
    fn store_kind(&self) -> &'static str {
        if self.is_durable() {
            "journal"
        } else {
            "memory"
        }
    }

    fn queue_defaults(&self) -> &QueueConfig {
        &self.shared.config.queue_defaults
    }

    fn shutdown(&self) {
        MemoryEngine::shutdown(self);
    }

    fn is_shutting_down(&self) -> bool {
        MemoryEngine::is_shutting_down(self)
    }

    async fn stopped(&self) {
        let tasks = &self.shared.tasks;
        tasks.close();
        tasks.wait().await;
    }

    fn shutting_down(&self) -> WaitForCancellationFutureOwned {
        self.shared.shutdown.clone().cancelled_owned()
    }
}
