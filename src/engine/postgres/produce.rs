//! Storing jobs: one statement for a batch without idempotency keys, one
//! short transaction with them. Capacity is checked and taken in the same
//! statement that stores the jobs, against the queue row's count of jobs
//! held, so two replicas can never overfill a queue together.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use tokio::time::Instant;
use uuid::Uuid;

use super::rows::{self, millis};
use super::{PgEngine, error};
use crate::engine::memory::IdGenerator;
use crate::engine::{Engine, EngineError, Produce};
use crate::queue::{Enqueued, NewJob, QueueError, QueueName};

/// How often an enqueue waiting for room looks again, besides being woken
/// by this replica's acks and purges of the queue.
const ROOM_RECHECK: Duration = Duration::from_millis(100);

/// Stores the jobs, taking room for them in the queue row first.
const INSERT_JOBS: &str = "
WITH room AS (
    UPDATE jobq_queues SET held = held + $2
    WHERE name = $1 AND held + $2 <= capacity
    RETURNING max_attempts
), stored AS (
    INSERT INTO jobq_jobs (id, queue, state, priority, due_at, max_attempts, enqueued_at, size, payload_bytes)
    SELECT u.id, $1, CASE WHEN u.delay_ms > 0 THEN 2 ELSE 1 END, u.priority,
           now() + u.delay_ms * interval '1 millisecond', COALESCE(u.max_attempts, room.max_attempts),
           now(), u.size, u.payload_bytes
    FROM room, unnest($3::uuid[], $4::int[], $5::bigint[], $6::int[], $7::bigint[], $8::bigint[])
        AS u(id, priority, delay_ms, max_attempts, size, payload_bytes)
    RETURNING id
), payloads AS (
    INSERT INTO jobq_payloads (id, payload, metadata)
    SELECT u.id, u.payload, u.metadata::jsonb
    FROM room, unnest($3::uuid[], $9::bytea[], $10::text[]) AS u(id, payload, metadata)
)
SELECT (SELECT count(*) FROM room) AS fitted";

/// Claims the keys not taken within the window (an expired one is taken
/// over); returns the keys claimed.
const CLAIM_KEYS: &str = "
INSERT INTO jobq_keys (queue, key, job, expires_at)
SELECT $1, u.key, u.job, now() + q.idempotency_window_ms * interval '1 millisecond'
FROM unnest($2::text[], $3::uuid[]) AS u(key, job),
     (SELECT idempotency_window_ms FROM jobq_queues WHERE name = $1) AS q
ON CONFLICT (queue, key) DO UPDATE SET job = excluded.job, expires_at = excluded.expires_at
    WHERE jobq_keys.expires_at <= now()
RETURNING key";

/// The columns of one enqueue's jobs, as [`INSERT_JOBS`] binds them.
#[derive(Debug, Default)]
pub(super) struct Columns {
    ids: Vec<Uuid>,
    priorities: Vec<i32>,
    delays: Vec<i64>,
    max_attempts: Vec<Option<i32>>,
    sizes: Vec<i64>,
    payload_bytes: Vec<i64>,
    payloads: Vec<Vec<u8>>,
    metadata: Vec<String>,
}

impl Columns {
    fn push(&mut self, id: Uuid, job: &NewJob) {
        self.ids.push(id);
        self.priorities.push(job.priority);
        self.delays.push(job.delay.map_or(0, millis));
        self.max_attempts.push(
            job.max_attempts
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        );
        self.sizes
            .push(i64::try_from(job.size()).unwrap_or(i64::MAX));
        self.payload_bytes
            .push(i64::try_from(job.payload.len()).unwrap_or(i64::MAX));
        self.payloads.push(job.payload.to_vec());
        self.metadata.push(rows::metadata_json(&job.metadata));
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn append(&mut self, other: Columns) {
        self.ids.extend(other.ids);
        self.priorities.extend(other.priorities);
        self.delays.extend(other.delays);
        self.max_attempts.extend(other.max_attempts);
        self.sizes.extend(other.sizes);
        self.payload_bytes.extend(other.payload_bytes);
        self.payloads.extend(other.payloads);
        self.metadata.extend(other.metadata);
    }

    /// Copies `other`'s jobs in `rows`.
    fn extend_from(&mut self, other: &Columns, rows: std::ops::Range<usize>) {
        self.ids.extend_from_slice(&other.ids[rows.clone()]);
        self.priorities
            .extend_from_slice(&other.priorities[rows.clone()]);
        self.delays.extend_from_slice(&other.delays[rows.clone()]);
        self.max_attempts
            .extend_from_slice(&other.max_attempts[rows.clone()]);
        self.sizes.extend_from_slice(&other.sizes[rows.clone()]);
        self.payload_bytes
            .extend_from_slice(&other.payload_bytes[rows.clone()]);
        self.payloads
            .extend_from_slice(&other.payloads[rows.clone()]);
        self.metadata.extend_from_slice(&other.metadata[rows]);
    }
}

/// Stores many callers' jobs in one statement (see `batch.rs`). When they
/// do not all fit, or the queue is new, it takes the queue row's lock and
/// stores, in the callers' order, each caller whose jobs still fit, as
/// one-at-a-time enqueues would: a stream's jobs stay in the order sent,
/// and a full queue refuses the later ones. A caller answered false tries
/// alone, to learn why.
pub(super) fn insert_batch(
    engine: PgEngine,
    queue: QueueName,
    parts: Vec<Columns>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<bool>, EngineError>> + Send>> {
    Box::pin(async move {
        let n = parts.len();
        let lens: Vec<usize> = parts.iter().map(Columns::len).collect();
        let mut all = Columns::default();
        for part in parts {
            all.append(part);
        }
        let mut conn = engine.pool().acquire().await.map_err(error::store)?;
        if insert(&mut conn, &queue, &all).await? {
            return Ok(vec![true; n]);
        }
        drop(conn);
        if n == 1 {
            return Ok(vec![false]);
        }
        let mut created = false;
        loop {
            let mut tx = engine.pool().begin().await.map_err(error::store)?;
            let room: Option<i64> = sqlx::query_scalar(
                "SELECT capacity - held FROM jobq_queues WHERE name = $1 FOR UPDATE",
            )
            .bind(queue.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(error::store)?;
            let Some(mut room) = room else {
                tx.rollback().await.map_err(error::store)?;
                if created {
                    return Ok(vec![false; n]);
                }
                engine.create_queue(&queue).await?;
                created = true;
                continue;
            };
            let mut chosen = Columns::default();
            let mut start = 0;
            let fits: Vec<bool> = lens
                .iter()
                .map(|&len| {
                    let rows = start..start + len;
                    start += len;
                    let fits = i64::try_from(len).is_ok_and(|len| len <= room);
                    if fits {
                        room -= i64::try_from(len).unwrap_or(i64::MAX);
                        chosen.extend_from(&all, rows);
                    }
                    fits
                })
                .collect();
            if chosen.len() > 0 && !insert(&mut tx, &queue, &chosen).await? {
                // Cannot happen under the row lock; answer as unstored.
                tx.rollback().await.map_err(error::store)?;
                return Ok(vec![false; n]);
            }
            tx.commit().await.map_err(error::store)?;
            return Ok(fits);
        }
    })
}

/// One enqueue call with idempotency keys, as [`insert_keyed`] takes it.
#[derive(Debug)]
pub(super) struct Keyed {
    ids: Vec<crate::queue::JobId>,
    jobs: Vec<NewJob>,
}

/// Stores many enqueue calls with idempotency keys in one transaction
/// (see `batch.rs`), one after another in the order they came, so the
/// first of two calls with one key is the one stored, as it would be one
/// call at a time. Each call is all or none: one that does not fit is
/// undone to its savepoint, and the rest go on. A queue not made yet is
/// made here, so no caller has to try again out of turn.
pub(super) fn insert_keyed(
    engine: PgEngine,
    queue: QueueName,
    calls: Vec<Keyed>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Tried>, EngineError>> + Send>> {
    Box::pin(async move {
        let mut tx = engine.pool().begin().await.map_err(error::store)?;
        // A lone call needs no savepoint: the transaction is its own.
        let alone = calls.len() == 1;
        let mut answers = Vec::with_capacity(calls.len());
        for call in &calls {
            answers.push(engine.store_call(&mut tx, &queue, call, alone).await?);
        }
        if alone && !matches!(answers[0], Tried::Stored(_)) {
            tx.rollback().await.map_err(error::store)?;
        } else {
            tx.commit().await.map_err(error::store)?;
        }
        Ok(answers)
    })
}

impl Keyed {
    pub(super) fn new(ids: Vec<crate::queue::JobId>, jobs: Vec<NewJob>) -> Self {
        Self { ids, jobs }
    }
}

impl PgEngine {
    /// One keyed call on `tx`, under a savepoint unless it is `alone`,
    /// making the queue first if it does not exist yet.
    pub(super) async fn store_call(
        &self,
        tx: &mut sqlx::PgConnection,
        queue: &QueueName,
        call: &Keyed,
        alone: bool,
    ) -> Result<Tried, EngineError> {
        let tried = self.store_once(tx, queue, call, alone).await?;
        if !matches!(tried, Tried::NoQueue) {
            return Ok(tried);
        }
        // Made by a statement of its own, which the next one sees. A try
        // that found no queue stored nothing, so it needs no undoing.
        self.create_queue(queue).await?;
        self.store_once(tx, queue, call, alone).await
    }

    async fn store_once(
        &self,
        tx: &mut sqlx::PgConnection,
        queue: &QueueName,
        call: &Keyed,
        alone: bool,
    ) -> Result<Tried, EngineError> {
        if alone {
            return self.store_keyed(tx, queue, &call.ids, &call.jobs).await;
        }
        let mut savepoint = sqlx::Connection::begin(tx).await.map_err(error::store)?;
        let tried = self
            .store_keyed(&mut savepoint, queue, &call.ids, &call.jobs)
            .await?;
        match tried {
            Tried::Stored(_) => savepoint.commit().await.map_err(error::store)?,
            _ => savepoint.rollback().await.map_err(error::store)?,
        }
        Ok(tried)
    }
}

/// What one try at storing did.
#[derive(Debug)]
pub(super) enum Tried {
    Stored(Vec<Enqueued>),
    /// No row for the queue: it must be created (again).
    NoQueue,
    Full(QueueError),
}

#[async_trait]
impl Produce for PgEngine {
    async fn enqueue(
        &self,
        queue: QueueName,
        jobs: Vec<NewJob>,
        wait_for_room: Option<Duration>,
    ) -> Result<Vec<Enqueued>, EngineError> {
        self.refuse_if_shutting_down()?;
        let ids = self.ids().next_n(jobs.len());
        if jobs.iter().all(|j| j.idempotency_key.is_none()) {
            let mut columns = Columns::default();
            for (id, job) in ids.iter().zip(&jobs) {
                columns.push(rows::uuid(*id), job);
            }
            if self.shared.enqueues.submit(self, &queue, columns).await? {
                let stored: Vec<Enqueued> = ids
                    .iter()
                    .map(|id| Enqueued {
                        id: *id,
                        duplicate: false,
                    })
                    .collect();
                self.stored(&queue, &jobs, &stored);
                return Ok(stored);
            }
        }
        let until = wait_for_room.map(|d| Instant::now() + d);
        let mut created = false;
        loop {
            let room = self.shared.wakers.of_room(&queue);
            let mut freed = std::pin::pin!(room.notified());
            freed.as_mut().enable();
            match self.try_enqueue(&queue, &ids, &jobs).await? {
                Tried::Stored(stored) => {
                    self.stored(&queue, &jobs, &stored);
                    return Ok(stored);
                }
                Tried::NoQueue if !created => {
                    self.create_queue(&queue).await?;
                    created = true;
                }
                Tried::NoQueue => return Err(EngineError::QueueNotFound(queue)),
                // The row was made, or room freed, since the insert
                // looked: try again.
                Tried::Full(QueueError::Full {
                    capacity,
                    held,
                    offered,
                    ..
                }) if held + offered <= capacity => {}
                Tried::Full(full) => {
                    let Some(until) = until.filter(|u| *u > Instant::now()) else {
                        return Err(full.into());
                    };
                    let recheck = (Instant::now() + ROOM_RECHECK).min(until);
                    tokio::select! {
                        () = &mut freed => {}
                        () = tokio::time::sleep_until(recheck) => {}
                        () = self.shared.shutdown.cancelled() => return Err(EngineError::ShuttingDown),
                    }
                }
            }
        }
    }
}

impl PgEngine {
    pub(super) fn ids(&self) -> &IdGenerator {
        &self.shared.ids
    }

    /// One try at storing `jobs` under `ids`.
    async fn try_enqueue(
        &self,
        queue: &QueueName,
        ids: &[crate::queue::JobId],
        jobs: &[NewJob],
    ) -> Result<Tried, EngineError> {
        if jobs.iter().all(|j| j.idempotency_key.is_none()) {
            let mut columns = Columns::default();
            for (id, job) in ids.iter().zip(jobs) {
                columns.push(rows::uuid(*id), job);
            }
            let mut conn = self.pool().acquire().await.map_err(error::store)?;
            let tried = insert(&mut conn, queue, &columns).await?;
            return Ok(match tried {
                true => Tried::Stored(
                    ids.iter()
                        .map(|id| Enqueued {
                            id: *id,
                            duplicate: false,
                        })
                        .collect(),
                ),
                false => self.why_not_stored(&mut conn, queue, columns.len()).await?,
            });
        }
        let call = Keyed {
            ids: ids.to_vec(),
            jobs: jobs.to_vec(),
        };
        self.shared.keyed.submit(self, queue, call).await
    }

    /// Stores jobs of which some carry idempotency keys, on `tx` (which
    /// the caller commits if they were stored, or rolls back): claim the
    /// keys, look up the jobs of those taken, store the rest.
    async fn store_keyed(
        &self,
        tx: &mut sqlx::PgConnection,
        queue: &QueueName,
        ids: &[crate::queue::JobId],
        jobs: &[NewJob],
    ) -> Result<Tried, EngineError> {
        // Within the batch the first job with a key wins.
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut keys = Vec::new();
        let mut key_jobs = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            if let Some(key) = job.idempotency_key.as_deref()
                && !first.contains_key(key)
            {
                first.insert(key, i);
                keys.push(key.to_string());
                key_jobs.push(rows::uuid(ids[i]));
            }
        }
        let claimed: Vec<String> = sqlx::query_scalar(CLAIM_KEYS)
            .bind(queue.as_str())
            .bind(&keys)
            .bind(&key_jobs)
            .fetch_all(&mut *tx)
            .await
            .map_err(error::store)?;
        let claimed: std::collections::HashSet<String> = claimed.into_iter().collect();
        let taken: Vec<&String> = keys.iter().filter(|k| !claimed.contains(*k)).collect();
        let mut earlier: HashMap<String, crate::queue::JobId> = HashMap::new();
        if !taken.is_empty() {
            let rows =
                sqlx::query("SELECT key, job FROM jobq_keys WHERE queue = $1 AND key = ANY($2)")
                    .bind(queue.as_str())
                    .bind(&taken)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(error::store)?;
            for row in rows {
                let key: String = row.try_get("key").map_err(error::store)?;
                let job: Uuid = row.try_get("job").map_err(error::store)?;
                earlier.insert(key, rows::job_id(job));
            }
        }
        let mut outcome = Vec::with_capacity(jobs.len());
        let mut columns = Columns::default();
        for (i, job) in jobs.iter().enumerate() {
            let duplicate_of = job.idempotency_key.as_deref().and_then(|key| {
                earlier
                    .get(key)
                    .copied()
                    .or_else(|| first.get(key).filter(|f| **f != i).map(|f| ids[*f]))
            });
            match duplicate_of {
                Some(id) => outcome.push(Enqueued {
                    id,
                    duplicate: true,
                }),
                None => {
                    columns.push(rows::uuid(ids[i]), job);
                    outcome.push(Enqueued {
                        id: ids[i],
                        duplicate: false,
                    });
                }
            }
        }
        if columns.len() == 0 || insert(&mut *tx, queue, &columns).await? {
            return Ok(Tried::Stored(outcome));
        }
        self.why_not_stored(tx, queue, columns.len()).await
    }

    /// Why an insert stored nothing: no queue row, or no room in it.
    async fn why_not_stored(
        &self,
        conn: &mut sqlx::PgConnection,
        queue: &QueueName,
        offered: usize,
    ) -> Result<Tried, EngineError> {
        let row = sqlx::query("SELECT held, capacity FROM jobq_queues WHERE name = $1")
            .bind(queue.as_str())
            .fetch_optional(conn)
            .await
            .map_err(error::store)?;
        Ok(match row {
            None => Tried::NoQueue,
            Some(row) => Tried::Full(QueueError::Full {
                queue: queue.clone(),
                capacity: rows::count(row.try_get("capacity").map_err(error::store)?),
                held: rows::count(row.try_get("held").map_err(error::store)?),
                offered,
            }),
        })
    }

    /// After a commit: wake workers (here and elsewhere) and the timers,
    /// and count the jobs.
    pub(super) fn stored(&self, queue: &QueueName, jobs: &[NewJob], stored: &[Enqueued]) {
        let new = stored.iter().filter(|e| !e.duplicate).count();
        if new == 0 {
            return;
        }
        let fresh = jobs.iter().zip(stored).filter(|(_, e)| !e.duplicate);
        let (mut ready, mut delayed) = (false, false);
        for (job, _) in fresh {
            match job.delay {
                Some(delay) if !delay.is_zero() => delayed = true,
                _ => ready = true,
            }
        }
        if ready {
            self.shared.wakers.ready(queue);
        }
        if delayed {
            self.shared.timer.notify_one();
        }
        self.shared.figures.add(queue, |t| t.enqueued += new as u64);
        // Metrics name queues in the order this replica first stores to
        // them (see `--metrics-max-queues`).
        self.observer(queue);
    }
}

/// Runs [`INSERT_JOBS`]; false when the queue row is missing or full.
async fn insert(
    conn: &mut sqlx::PgConnection,
    queue: &QueueName,
    columns: &Columns,
) -> Result<bool, EngineError> {
    let row = sqlx::query(INSERT_JOBS)
        .bind(queue.as_str())
        .bind(i64::try_from(columns.len()).unwrap_or(i64::MAX))
        .bind(&columns.ids)
        .bind(&columns.priorities)
        .bind(&columns.delays)
        .bind(&columns.max_attempts)
        .bind(&columns.sizes)
        .bind(&columns.payload_bytes)
        .bind(&columns.payloads)
        .bind(&columns.metadata)
        .fetch_one(conn)
        .await
        .map_err(error::store)?;
    let fitted: i64 = row.try_get("fitted").map_err(error::store)?;
    Ok(fitted > 0)
}
