//! Operator actions over the in-memory engine's queues.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::slot::Slot;
use super::{EngineError, MemoryEngine};
use crate::engine::{JobPage, PurgeTarget, QueueInfo, QueueUpdate};
use crate::queue::{JobId, JobState, JobStatus, Purged, QueueName};

impl MemoryEngine {
    /// The queues whose names sort after `after`, at most `limit`, with
    /// their settings, counts and totals.
    pub fn queue_page(&self, after: Option<&QueueName>, limit: usize) -> Vec<QueueInfo> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let slots: Vec<(QueueName, Arc<Slot>)> = self
            .read_queues()
            .range::<QueueName, _>((start, Bound::Unbounded))
            .take(limit)
            .map(|(name, slot)| (name.clone(), Arc::clone(slot)))
            .collect();
        // Each queue's own lock is taken after the registry's is released.
        slots.iter().map(|(name, slot)| info(name, slot)).collect()
    }

    /// One queue's settings, counts and totals.
    pub fn queue_info(&self, queue: &QueueName) -> Result<QueueInfo, EngineError> {
        let slot = self.existing(queue)?;
        Ok(info(queue, &slot))
    }

    /// Changes a queue's settings, creating the queue first if `create`.
    /// The caller has checked each value; a backoff base above the cap once
    /// merged with the current settings is refused, changing nothing.
    pub fn update_queue(
        &self,
        queue: &QueueName,
        update: QueueUpdate,
        create: bool,
    ) -> Result<QueueInfo, EngineError> {
        let slot = if create {
            self.slot_or_create(queue)?
        } else {
            self.existing(queue)?
        };
        slot.with(|q| {
            let mut config = q.config().clone();
            let base = update.backoff_base.unwrap_or(config.retry.base);
            let cap = update.backoff_cap.unwrap_or(config.retry.cap);
            if base > cap {
                return Err(EngineError::BackoffOutOfOrder { base, cap });
            }
            if let Some(capacity) = update.capacity {
                config.capacity = capacity;
            }
            if let Some(lease) = update.lease_duration {
                config.lease_duration = lease;
            }
            if let Some(attempts) = update.max_attempts {
                config.max_attempts = attempts;
            }
            if let Some(base) = update.backoff_base {
                config.retry.base = base;
            }
            if let Some(cap) = update.backoff_cap {
                config.retry.cap = cap;
            }
            q.set_config(config);
            if let Some(paused) = update.paused {
                q.set_paused(paused);
            }
            Ok(())
        })?;
        slot.write_settings();
        slot.note_paused();
        tracing::info!(queue = %queue, "queue settings changed");
        Ok(info(queue, &slot))
    }

    /// Deletes a queue and every job in it. Refused while workers hold
    /// leases, unless `force`. Long-polls and worker streams on it end.
    /// Returns how many jobs were dropped.
    pub fn delete_queue(&self, queue: &QueueName, force: bool) -> Result<usize, EngineError> {
        let mut queues = self
            .shared
            .queues
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let slot = queues
            .get(queue)
            .cloned()
            .ok_or_else(|| EngineError::QueueNotFound(queue.clone()))?;
        let (leased, jobs, bytes) = slot.with(|q| (q.counts().leased, q.len(), q.bytes()));
        if leased > 0 && !force {
            return Err(EngineError::QueueBusy {
                queue: queue.clone(),
                leased,
            });
        }
        queues.remove(queue);
        if let Some(journal) = &self.shared.journal {
            journal.append(&super::durable::deleted_record(queue));
        }
        drop(queues);
        slot.closed.cancel();
        self.shared.memory.release(bytes);
        self.shared.memory.release_beside_jobs(slot.extra_bytes());
        self.shared.held.fetch_sub(jobs, Ordering::Relaxed);
        self.shared.observer.queue_deleted(queue);
        tracing::info!(queue = %queue, jobs, "queue deleted");
        Ok(jobs)
    }

    /// Pauses or resumes leasing from a queue.
    pub fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<(), EngineError> {
        let slot = self.existing(queue)?;
        slot.with(|q| q.set_paused(paused));
        slot.write_settings();
        slot.note_paused();
        tracing::info!(queue = %queue, paused, "queue pause changed");
        Ok(())
    }

    /// Removes a queue's ready or dead jobs.
    pub fn purge(&self, queue: &QueueName, target: PurgeTarget) -> Result<usize, EngineError> {
        let purged: Purged = self.existing(queue)?.with(|q| match target {
            PurgeTarget::Ready => q.purge_ready(Instant::now()),
            PurgeTarget::Dead => q.purge_dead(),
        });
        self.shared.memory.release(purged.bytes);
        self.shared.held.fetch_sub(purged.jobs, Ordering::Relaxed);
        tracing::info!(queue = %queue, ?target, jobs = purged.jobs, "queue purged");
        Ok(purged.jobs)
    }

    /// A page of a queue's jobs; see [`Queue::list_jobs`](crate::queue::Queue::list_jobs).
    pub fn list_jobs(
        &self,
        queue: &QueueName,
        state: Option<JobState>,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage, EngineError> {
        let (jobs, next) = self
            .existing(queue)?
            .with(|q| q.list_jobs(Instant::now(), state, after, limit));
        Ok(JobPage { jobs, next })
    }

    /// Finds a job by id: in `queue` if given, else in every queue.
    pub fn find_job(
        &self,
        queue: Option<&QueueName>,
        id: &JobId,
    ) -> Result<(QueueName, JobStatus), EngineError> {
        let slots: Vec<(QueueName, Arc<Slot>)> = match queue {
            Some(queue) => vec![(queue.clone(), self.existing(queue)?)],
            None => self
                .read_queues()
                .iter()
                .map(|(name, slot)| (name.clone(), Arc::clone(slot)))
                .collect(),
        };
        slots
            .into_iter()
            .find_map(|(name, slot)| {
                slot.with(|q| q.job_status(Instant::now(), id))
                    .map(|status| (name, status))
            })
            .ok_or_else(|| job_not_found(queue, id))
    }

    /// Cancels a job no worker holds.
    pub fn cancel_job(&self, queue: Option<&QueueName>, id: &JobId) -> Result<(), EngineError> {
        let (name, _) = self.find_job(queue, id)?;
        let job = self
            .existing(&name)?
            .with(|q| q.cancel(Instant::now(), id))?;
        self.shared.memory.release(job.size);
        self.shared.held.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(queue = %name, job = %id, "job cancelled");
        Ok(())
    }

    /// Moves dead jobs back to ready with attempts reset: those named, or
    /// all when `ids` is `None`.
    pub fn redrive(&self, queue: &QueueName, ids: Option<&[JobId]>) -> Result<usize, EngineError> {
        let moved = self
            .existing(queue)?
            .with(|q| q.redrive(Instant::now(), ids))?;
        tracing::info!(queue = %queue, jobs = moved, "dead letters redriven");
        Ok(moved)
    }

    fn existing(&self, queue: &QueueName) -> Result<Arc<Slot>, EngineError> {
        self.slot(queue)
            .ok_or_else(|| EngineError::QueueNotFound(queue.clone()))
    }
}

fn info(name: &QueueName, slot: &Slot) -> QueueInfo {
    let workers = slot.holders();
    slot.with(|q| QueueInfo {
        name: name.clone(),
        config: q.config().clone(),
        paused: q.is_paused(),
        counts: q.counts(),
        stats: q.stats(),
        oldest_ready: q.oldest_ready_enqueue(),
        workers,
    })
}

fn job_not_found(queue: Option<&QueueName>, id: &JobId) -> EngineError {
    match queue {
        Some(queue) => crate::queue::QueueError::JobNotFound {
            queue: queue.clone(),
            job: *id,
        }
        .into(),
        None => EngineError::JobNotFound(*id),
    }
}
