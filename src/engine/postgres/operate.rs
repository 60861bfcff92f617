//! What operators do with queues and jobs, over the tables.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::figures::{self, Counted};
use super::rows::{self, JOB_COLUMNS, QUEUE_COLUMNS, STATUS_COLUMNS, millis, state};
use super::{PgEngine, error};
use crate::engine::{
    EngineError, EngineStats, JobPage, Operate, PurgeTarget, QueueInfo, QueueObserver, QueueUpdate,
};
use crate::queue::{
    Delivery, Failure, JobId, JobState, JobStatus, QueueError, QueueName, QueueStats,
};

/// A queue's row with its totals over every replica and the worker
/// streams other replicas have open on it.
const QUEUES: &str = "
SELECT q.name, q.paused, q.capacity, q.lease_ms, q.max_attempts, q.backoff_base_ms,
    q.backoff_cap_ms, q.backoff_jitter, q.idempotency_window_ms, q.finished_retention_ms,
    coalesce(t.enqueued, 0)::bigint AS enqueued, coalesce(t.leased, 0)::bigint AS leased,
    coalesce(t.acked, 0)::bigint AS acked, coalesce(t.nacked, 0)::bigint AS nacked,
    coalesce(t.expired, 0)::bigint AS expired, coalesce(t.dead_lettered, 0)::bigint AS dead_lettered,
    coalesce((SELECT sum(streams) FROM jobq_workers w WHERE w.queue = q.name AND w.replica <> $4), 0)::bigint AS workers
FROM jobq_queues q
LEFT JOIN LATERAL (
    SELECT sum(enqueued) AS enqueued, sum(leased) AS leased, sum(acked) AS acked,
        sum(nacked) AS nacked, sum(expired) AS expired, sum(dead_lettered) AS dead_lettered
    FROM jobq_queue_totals WHERE queue = q.name
) t ON true
WHERE ($1::text IS NULL OR q.name > $1) AND ($2::text IS NULL OR q.name = $2)
ORDER BY q.name LIMIT $3";

fn stats_of(row: &PgRow) -> Result<QueueStats, sqlx::Error> {
    let get = |name: &str| -> Result<u64, sqlx::Error> {
        Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
    };
    Ok(QueueStats {
        enqueued: get("enqueued")?,
        leased: get("leased")?,
        acked: get("acked")?,
        nacked: get("nacked")?,
        expired: get("expired")?,
        dead_lettered: get("dead_lettered")?,
    })
}

impl PgEngine {
    /// One queue, as [`queues`](Self::queues) gives it.
    async fn queue(&self, queue: &QueueName, cached: bool) -> Result<QueueInfo, EngineError> {
        self.queues(None, Some(queue), 1, cached)
            .await?
            .pop()
            .ok_or_else(|| EngineError::QueueNotFound(queue.clone()))
    }

    /// Queues after `after` (or just `only`), with the counts the figures
    /// task last took when `cached`, else counted now, exactly.
    async fn queues(
        &self,
        after: Option<&QueueName>,
        only: Option<&QueueName>,
        limit: usize,
        cached: bool,
    ) -> Result<Vec<QueueInfo>, EngineError> {
        let rows = sqlx::query(QUEUES)
            .bind(after.map(QueueName::as_str))
            .bind(only.map(QueueName::as_str))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(self.replica())
            .fetch_all(self.pool())
            .await
            .map_err(error::store)?;
        let names: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("name").ok())
            .collect();
        let counted: Option<Counted> = match cached || names.is_empty() {
            true => None,
            false => Some(figures::count(self, Some(&names)).await?),
        };
        let local = self.workers().clone();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let name: String = row.try_get("name").map_err(error::store)?;
            let Ok(name) = QueueName::new(name) else {
                continue;
            };
            let (counts, oldest_ready) = match &counted {
                Some(counted) => counted.get(&name).copied().unwrap_or_default(),
                None => self.shared.figures.counts(&name),
            };
            let mut stats = stats_of(row).map_err(error::store)?;
            figures::add_totals(&mut stats, self.shared.figures.pending(&name));
            let others = rows::count(row.try_get("workers").map_err(error::store)?);
            out.push(QueueInfo {
                config: rows::queue_config(row, self.defaults()).map_err(error::store)?,
                paused: row.try_get("paused").map_err(error::store)?,
                counts,
                stats,
                oldest_ready,
                workers: others + local.get(&name).copied().unwrap_or(0),
                name,
            });
        }
        Ok(out)
    }

    /// Creates `queue` with the server's defaults unless it exists (a
    /// queue is created on first use).
    pub(super) async fn create_queue(&self, queue: &QueueName) -> Result<(), EngineError> {
        if self.queue_exists(queue).await? {
            return Ok(());
        }
        let queues: i64 = sqlx::query_scalar("SELECT count(*) FROM jobq_queues")
            .fetch_one(self.pool())
            .await
            .map_err(error::store)?;
        let limit = self.shared.config.max_queues;
        if rows::count(queues) >= limit {
            return Err(EngineError::TooManyQueues {
                queue: queue.clone(),
                limit,
            });
        }
        let d = self.defaults();
        let created = sqlx::query(
            "INSERT INTO jobq_queues (name, capacity, lease_ms, max_attempts, backoff_base_ms,
                 backoff_cap_ms, backoff_jitter, idempotency_window_ms, finished_retention_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name) DO NOTHING",
        )
        .bind(queue.as_str())
        .bind(i64::try_from(d.capacity).unwrap_or(i64::MAX))
        .bind(millis(d.lease_duration))
        .bind(i32::try_from(d.max_attempts).unwrap_or(i32::MAX))
        .bind(millis(d.retry.base))
        .bind(millis(d.retry.cap))
        .bind(d.retry.jitter)
        .bind(millis(d.idempotency_window))
        .bind(millis(d.finished_retention))
        .execute(self.pool())
        .await
        .map_err(error::store)?;
        if created.rows_affected() > 0 {
            tracing::info!(queue = %queue, "queue created");
        }
        Ok(())
    }

    pub(super) async fn queue_exists(&self, queue: &QueueName) -> Result<bool, EngineError> {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM jobq_queues WHERE name = $1")
            .bind(queue.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(error::store)?;
        Ok(found.is_some())
    }

    async fn existing(&self, queue: &QueueName) -> Result<(), EngineError> {
        match self.queue_exists(queue).await? {
            true => Ok(()),
            false => Err(EngineError::QueueNotFound(queue.clone())),
        }
    }

    /// Statuses of the jobs in `rows`, each with its failure history.
    async fn statuses(&self, rows: &[PgRow]) -> Result<Vec<JobStatus>, EngineError> {
        let ids: Vec<Uuid> = rows
            .iter()
            .filter_map(|r| r.try_get::<Uuid, _>("id").ok())
            .collect();
        let mut histories: HashMap<Uuid, Vec<Failure>> = HashMap::new();
        if !ids.is_empty() {
            let failures = sqlx::query(
                "SELECT job, attempt, error, at, now() AS db_now FROM jobq_failures
                 WHERE job = ANY($1) ORDER BY job, seq",
            )
            .bind(&ids)
            .fetch_all(self.pool())
            .await
            .map_err(error::store)?;
            for row in &failures {
                let job: Uuid = row.try_get("job").map_err(error::store)?;
                histories
                    .entry(job)
                    .or_default()
                    .push(rows::failure(row).map_err(error::store)?);
            }
        }
        rows.iter()
            .map(|row| {
                let id: Uuid = row.try_get("id").map_err(error::store)?;
                let mut history = histories.remove(&id).unwrap_or_default();
                let keep = history.len().saturating_sub(crate::queue::MAX_HISTORY);
                history.drain(..keep);
                rows::status(row, history).map_err(error::store)
            })
            .collect()
    }

    /// The observer of `queue`'s jobs on this replica.
    pub(super) fn observer(&self, queue: &QueueName) -> Arc<dyn QueueObserver> {
        let mut observers = super::lock(&self.shared.observers);
        // Looked up first: the name is copied only for a queue new here.
        if let Some(observer) = observers.get(queue) {
            return Arc::clone(observer);
        }
        let observer = self.shared.observer.queue_created(queue);
        observers.insert(queue.clone(), Arc::clone(&observer));
        observer
    }

    /// Reports how long first deliveries waited.
    pub(super) fn observe_leases(&self, queue: &QueueName, leased: &[Delivery]) {
        let observer = self.observer(queue);
        let now = std::time::SystemTime::now();
        for delivery in leased.iter().filter(|d| d.attempt == 1) {
            observer.first_lease(
                now.duration_since(delivery.job.enqueued_at)
                    .unwrap_or_default(),
            );
        }
    }

    /// Reports how long acked jobs were held.
    pub(super) fn observe_acks(
        &self,
        queue: &QueueName,
        leased_at: &[chrono::DateTime<chrono::Utc>],
        clock: &rows::Clock,
    ) {
        let observer = self.observer(queue);
        let now = tokio::time::Instant::now();
        for at in leased_at {
            observer.acked(now.saturating_duration_since(clock.instant(*at)));
        }
    }
}

#[async_trait]
impl Operate for PgEngine {
    async fn list_queues(
        &self,
        after: Option<&QueueName>,
        limit: usize,
    ) -> Result<Vec<QueueInfo>, EngineError> {
        self.queues(after, None, limit, false).await
    }

    async fn queue_figures(&self) -> Result<Vec<QueueInfo>, EngineError> {
        self.queues(None, None, usize::MAX, true).await
    }

    async fn queue_info(&self, queue: &QueueName) -> Result<QueueInfo, EngineError> {
        self.queue(queue, false).await
    }

    // Counting a queue's jobs is a scan of them: pages that refresh every
    // second read the counts the figures task takes every 2 s instead.
    async fn list_queue_figures(
        &self,
        after: Option<&QueueName>,
        limit: usize,
    ) -> Result<Vec<QueueInfo>, EngineError> {
        self.queues(after, None, limit, true).await
    }

    async fn queue_figures_of(&self, queue: &QueueName) -> Result<QueueInfo, EngineError> {
        self.queue(queue, true).await
    }

    async fn update_queue(
        &self,
        queue: &QueueName,
        update: QueueUpdate,
        create: bool,
    ) -> Result<QueueInfo, EngineError> {
        if create {
            self.create_queue(queue).await?;
        }
        let mut tx = self.pool().begin().await.map_err(error::store)?;
        let row = sqlx::query(&format!(
            "SELECT {QUEUE_COLUMNS} FROM jobq_queues WHERE name = $1 FOR UPDATE"
        ))
        .bind(queue.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(error::store)?
        .ok_or_else(|| EngineError::QueueNotFound(queue.clone()))?;
        let config = rows::queue_config(&row, self.defaults()).map_err(error::store)?;
        let base = update.backoff_base.unwrap_or(config.retry.base);
        let cap = update.backoff_cap.unwrap_or(config.retry.cap);
        if base > cap {
            return Err(EngineError::BackoffOutOfOrder { base, cap });
        }
        sqlx::query(
            "UPDATE jobq_queues SET capacity = coalesce($2, capacity), lease_ms = coalesce($3, lease_ms),
                 max_attempts = coalesce($4, max_attempts), backoff_base_ms = $5, backoff_cap_ms = $6,
                 paused = coalesce($7, paused)
             WHERE name = $1",
        )
        .bind(queue.as_str())
        .bind(update.capacity.map(|c| i64::try_from(c).unwrap_or(i64::MAX)))
        .bind(update.lease_duration.map(millis))
        .bind(update.max_attempts.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
        .bind(millis(base))
        .bind(millis(cap))
        .bind(update.paused)
        .execute(&mut *tx)
        .await
        .map_err(error::store)?;
        tx.commit().await.map_err(error::store)?;
        if let Some(paused) = update.paused {
            self.paused_changed(queue, paused);
        }
        // A larger capacity may let waiting enqueues in.
        self.shared.wakers.freed(queue);
        tracing::info!(queue = %queue, "queue settings changed");
        self.queue_info(queue).await
    }

    async fn delete_queue(&self, queue: &QueueName, force: bool) -> Result<usize, EngineError> {
        let mut tx = self.pool().begin().await.map_err(error::store)?;
        let found: Option<i64> =
            sqlx::query_scalar("SELECT held FROM jobq_queues WHERE name = $1 FOR UPDATE")
                .bind(queue.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(error::store)?;
        if found.is_none() {
            return Err(EngineError::QueueNotFound(queue.clone()));
        }
        let leased: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobq_jobs WHERE queue = $1 AND state = 3")
                .bind(queue.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(error::store)?;
        if leased > 0 && !force {
            return Err(EngineError::QueueBusy {
                queue: queue.clone(),
                leased: rows::count(leased),
            });
        }
        let dropped: i64 = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM jobq_jobs WHERE queue = $1 RETURNING state)
             SELECT count(*) FROM gone WHERE state < 5",
        )
        .bind(queue.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(error::store)?;
        for statement in [
            "DELETE FROM jobq_keys WHERE queue = $1",
            "DELETE FROM jobq_queue_totals WHERE queue = $1",
            "DELETE FROM jobq_workers WHERE queue = $1",
            "DELETE FROM jobq_queues WHERE name = $1",
        ] {
            sqlx::query(statement)
                .bind(queue.as_str())
                .execute(&mut *tx)
                .await
                .map_err(error::store)?;
        }
        tx.commit().await.map_err(error::store)?;
        self.shared.wakers.forget(queue);
        self.shared.figures.forget(queue);
        super::lock(&self.shared.observers).remove(queue);
        self.shared.observer.queue_deleted(queue);
        let jobs = rows::count(dropped);
        tracing::info!(queue = %queue, jobs, "queue deleted");
        Ok(jobs)
    }

    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<(), EngineError> {
        let changed = sqlx::query("UPDATE jobq_queues SET paused = $2 WHERE name = $1")
            .bind(queue.as_str())
            .bind(paused)
            .execute(self.pool())
            .await
            .map_err(error::store)?;
        if changed.rows_affected() == 0 {
            return Err(EngineError::QueueNotFound(queue.clone()));
        }
        self.paused_changed(queue, paused);
        tracing::info!(queue = %queue, paused, "queue pause changed");
        Ok(())
    }

    async fn purge(&self, queue: &QueueName, target: PurgeTarget) -> Result<usize, EngineError> {
        self.existing(queue).await?;
        let code = match target {
            PurgeTarget::Ready => state::READY,
            PurgeTarget::Dead => state::DEAD,
        };
        let purged: i64 = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM jobq_jobs WHERE queue = $1 AND state = $2 RETURNING 1),
                  counted AS (UPDATE jobq_queues SET held = held - (SELECT count(*) FROM gone) WHERE name = $1)
             SELECT count(*) FROM gone",
        )
        .bind(queue.as_str())
        .bind(code)
        .fetch_one(self.pool())
        .await
        .map_err(error::store)?;
        self.shared.wakers.freed(queue);
        tracing::info!(queue = %queue, ?target, jobs = purged, "queue purged");
        Ok(rows::count(purged))
    }

    async fn list_jobs(
        &self,
        queue: &QueueName,
        state: Option<JobState>,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage, EngineError> {
        self.existing(queue).await?;
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS}, {STATUS_COLUMNS} FROM jobq_jobs j
             LEFT JOIN jobq_payloads p ON p.id = j.id
             WHERE j.queue = $1 AND (CASE WHEN $2::smallint IS NULL THEN j.state < 5 ELSE j.state = $2 END)
                 AND ($3::uuid IS NULL OR j.id > $3)
             ORDER BY j.id LIMIT $4"
        ))
        .bind(queue.as_str())
        .bind(state.map(rows::state_code))
        .bind(after.map(rows::uuid))
        .bind(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(error::store)?;
        let mut jobs = self.statuses(&rows).await?;
        let more = jobs.len() > limit;
        jobs.truncate(limit);
        let next = more.then(|| jobs.last().map(|s| s.job.id)).flatten();
        Ok(JobPage { jobs, next })
    }

    async fn find_job(
        &self,
        queue: Option<&QueueName>,
        id: &JobId,
    ) -> Result<(QueueName, JobStatus), EngineError> {
        if let Some(queue) = queue {
            self.existing(queue).await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS}, {STATUS_COLUMNS} FROM jobq_jobs j
             LEFT JOIN jobq_payloads p ON p.id = j.id
             WHERE j.id = $1 AND ($2::text IS NULL OR j.queue = $2)"
        ))
        .bind(rows::uuid(*id))
        .bind(queue.map(QueueName::as_str))
        .fetch_optional(self.pool())
        .await
        .map_err(error::store)?;
        let Some(row) = row else {
            return Err(match queue {
                Some(queue) => QueueError::JobNotFound {
                    queue: queue.clone(),
                    job: *id,
                }
                .into(),
                None => EngineError::JobNotFound(*id),
            });
        };
        let name: String = row.try_get("queue").map_err(error::store)?;
        let name = QueueName::new(name).map_err(|e| EngineError::StoreFailed {
            store: super::STORE,
            reason: e.to_string(),
        })?;
        let mut statuses = self.statuses(std::slice::from_ref(&row)).await?;
        let status = statuses.pop().ok_or(EngineError::JobNotFound(*id))?;
        Ok((name, status))
    }

    async fn cancel_job(&self, queue: Option<&QueueName>, id: &JobId) -> Result<(), EngineError> {
        let (name, status) = self.find_job(queue, id).await?;
        let not_found = || -> EngineError {
            QueueError::JobNotFound {
                queue: name.clone(),
                job: *id,
            }
            .into()
        };
        match status.state {
            JobState::Leased => {
                return Err(QueueError::JobLeased {
                    queue: name.clone(),
                    job: *id,
                }
                .into());
            }
            JobState::Acked | JobState::Cancelled => return Err(not_found()),
            JobState::Ready | JobState::Scheduled | JobState::Dead => {}
        }
        let cancelled: i64 = sqlx::query_scalar(
            "WITH c AS (
                 UPDATE jobq_jobs SET state = 6, finished_at = now(),
                     due_at = now() + (SELECT finished_retention_ms FROM jobq_queues WHERE name = $2) * interval '1 millisecond'
                 WHERE id = $1 AND queue = $2 AND state IN (1, 2, 4) RETURNING id
             ), gone AS (DELETE FROM jobq_payloads p USING c WHERE p.id = c.id),
             counted AS (UPDATE jobq_queues SET held = held - (SELECT count(*) FROM c) WHERE name = $2)
             SELECT count(*) FROM c",
        )
        .bind(rows::uuid(*id))
        .bind(name.as_str())
        .fetch_one(self.pool())
        .await
        .map_err(error::store)?;
        if cancelled == 0 {
            // Leased (or gone) since it was looked up.
            return Err(QueueError::JobLeased {
                queue: name.clone(),
                job: *id,
            }
            .into());
        }
        self.shared.wakers.freed(&name);
        tracing::info!(queue = %name, job = %id, "job cancelled");
        Ok(())
    }

    async fn redrive(
        &self,
        queue: &QueueName,
        ids: Option<&[JobId]>,
    ) -> Result<usize, EngineError> {
        self.existing(queue).await?;
        let mut tx = self.pool().begin().await.map_err(error::store)?;
        let named: Option<Vec<Uuid>> =
            ids.map(|ids| ids.iter().map(|id| rows::uuid(*id)).collect());
        if let (Some(ids), Some(named)) = (ids, &named) {
            let found: Vec<(Uuid, i16)> = sqlx::query_as(
                "SELECT id, state FROM jobq_jobs WHERE queue = $1 AND id = ANY($2) FOR UPDATE",
            )
            .bind(queue.as_str())
            .bind(named)
            .fetch_all(&mut *tx)
            .await
            .map_err(error::store)?;
            let found: HashMap<Uuid, i16> = found.into_iter().collect();
            for id in ids {
                match found.get(&rows::uuid(*id)) {
                    Some(&state::DEAD) => {}
                    Some(code) if *code < state::ACKED => {
                        return Err(QueueError::JobNotDead {
                            queue: queue.clone(),
                            job: *id,
                        }
                        .into());
                    }
                    _ => {
                        return Err(QueueError::JobNotFound {
                            queue: queue.clone(),
                            job: *id,
                        }
                        .into());
                    }
                }
            }
        }
        let moved = sqlx::query(
            "UPDATE jobq_jobs SET state = 1, attempts = 0, drops = 0, due_at = now()
             WHERE queue = $1 AND state = 4 AND ($2::uuid[] IS NULL OR id = ANY($2))",
        )
        .bind(queue.as_str())
        .bind(named)
        .execute(&mut *tx)
        .await
        .map_err(error::store)?
        .rows_affected();
        tx.commit().await.map_err(error::store)?;
        if moved > 0 {
            self.shared.wakers.ready(queue);
        }
        tracing::info!(queue = %queue, jobs = moved, "dead letters redriven");
        Ok(usize::try_from(moved).unwrap_or(usize::MAX))
    }

    async fn stats(&self) -> Result<EngineStats, EngineError> {
        let held: i64 =
            sqlx::query_scalar("SELECT coalesce(sum(held), 0)::bigint FROM jobq_queues")
                .fetch_one(self.pool())
                .await
                .map_err(error::store)?;
        // Jobs live in the database: the memory budget does not apply.
        Ok(EngineStats {
            jobs_held: rows::count(held),
            memory_used: 0,
            memory_budget: 0,
        })
    }
}

impl PgEngine {
    fn paused_changed(&self, queue: &QueueName, paused: bool) {
        self.shared.figures.set_paused(queue, paused);
        if !paused {
            self.shared.wakers.ready(queue);
        }
    }
}
