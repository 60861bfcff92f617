//! Leasing and settling: each a single statement, its rows claimed with
//! `FOR UPDATE SKIP LOCKED` (so replicas leasing together never wait on,
//! or take, each other's rows) and its tokens matched on job and delivery
//! number (so a stale token changes nothing).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio::time::Instant;
use uuid::Uuid;

use super::holdings::Moved;
use super::rows::{self, Clock, millis, state};
use super::{PgEngine, error};
use crate::engine::{Consume, Engine, EngineError, WorkerAttachment};
use crate::queue::{Delivery, LeaseToken, NackOutcome, NackRequest, QueueError, QueueName};

/// How often a waiting lease looks again whatever it hears: the most a
/// lost wake-up can delay a job.
pub(super) const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// Leases up to `$2` ready jobs of queue `$1` (none while it is paused),
/// highest priority first, then in the order they became ready.
const CLAIM: &str = "
WITH q AS (
    SELECT lease_ms FROM jobq_queues WHERE name = $1 AND NOT paused
), picked AS (
    SELECT j.id, j.due_at AS place FROM jobq_jobs j
    WHERE j.queue = $1 AND j.state = 1 AND EXISTS (SELECT 1 FROM q)
    ORDER BY j.priority DESC, j.due_at, j.id
    LIMIT $2
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE jobq_jobs j SET
    state = 3, attempts = j.attempts + 1, delivery = j.delivery + 1,
    due_at = now() + COALESCE($3, (SELECT lease_ms FROM q)) * interval '1 millisecond',
    holder_replica = $4, holder = $5, leased_at = now()
FROM picked, jobq_payloads p
WHERE j.id = picked.id AND p.id = j.id
RETURNING j.id, j.priority, j.max_attempts, j.enqueued_at, j.size, j.payload_bytes, p.payload,
    p.metadata, j.delivery, j.attempts, j.drops, j.due_at AS deadline, picked.place,
    now() AS db_now";

/// Puts claimed jobs back where they were in line, as if never leased:
/// for a lease whose caller went away before it could be handed over.
const UNCLAIM: &str = "
UPDATE jobq_jobs j SET state = 1, attempts = j.attempts - 1, due_at = u.place,
    holder_replica = NULL, holder = NULL, leased_at = NULL
FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[]) AS u(id, delivery, place)
WHERE j.id = u.id AND j.delivery = u.delivery AND j.state = 3";

/// Acks whichever tokens of `$2`/`$3` (no pair twice) in queue `$1` are
/// live: many callers' single acks in one statement, or (inside a
/// transaction undone unless all were live) one call's tokens.
const ACK_BATCH: &str = "
WITH tokens AS (
    SELECT * FROM unnest($2::uuid[], $3::bigint[]) AS t(id, delivery)
), live AS (
    SELECT j.id, j.holder_replica, j.holder FROM jobq_jobs j
    JOIN tokens t ON j.id = t.id AND j.delivery = t.delivery
    WHERE j.queue = $1 AND j.state = 3 AND j.due_at > now()
    FOR UPDATE OF j
), done AS (
    UPDATE jobq_jobs j SET state = 5, finished_at = now(), holder_replica = NULL, holder = NULL,
        due_at = now() + (SELECT finished_retention_ms FROM jobq_queues WHERE name = $1) * interval '1 millisecond'
    FROM live WHERE j.id = live.id
    RETURNING j.id, j.delivery, j.leased_at
), gone AS (
    DELETE FROM jobq_payloads p USING done WHERE p.id = done.id
), counted AS (
    UPDATE jobq_queues SET held = held - (SELECT count(*) FROM done)
    WHERE name = $1 AND EXISTS (SELECT 1 FROM done)
)
SELECT done.id, done.delivery, done.leased_at, live.holder_replica, live.holder, now() AS db_now
FROM done JOIN live ON live.id = done.id";

/// Gives a leased job back: dead when asked (`$4`) or when its failed
/// attempts reach its limit; otherwise due again after `$5` ms, or after
/// the queue's backoff when `$5` is null.
const NACK: &str = "
WITH cur AS (
    SELECT j.id, j.attempts, j.drops, j.max_attempts, j.holder_replica, j.holder FROM jobq_jobs j
    WHERE j.id = $2 AND j.queue = $1 AND j.state = 3 AND j.delivery = $3 AND j.due_at > now()
    FOR UPDATE
), q AS (
    SELECT backoff_base_ms, backoff_cap_ms, backoff_jitter FROM jobq_queues WHERE name = $1
), plan AS (
    SELECT cur.id, cur.attempts,
        ($4 OR cur.attempts - cur.drops >= cur.max_attempts) AS dead,
        COALESCE($5::bigint, greatest(0, least(q.backoff_cap_ms,
            (least(q.backoff_cap_ms::float8,
                   q.backoff_base_ms * power(2::float8, least(greatest(cur.attempts - 1, 0), 62)))
             * (1 + q.backoff_jitter * (2 * random() - 1)))::bigint))) AS delay_ms
    FROM cur, q
), upd AS (
    UPDATE jobq_jobs j SET
        state = CASE WHEN plan.dead THEN 4 WHEN plan.delay_ms > 0 THEN 2 ELSE 1 END,
        due_at = CASE WHEN plan.dead THEN now() ELSE now() + plan.delay_ms * interval '1 millisecond' END,
        last_error = $6, holder_replica = NULL, holder = NULL
    FROM plan WHERE j.id = plan.id
    RETURNING j.state, j.due_at
), failed AS (
    INSERT INTO jobq_failures (job, attempt, error, at) SELECT id, attempts, $6, now() FROM plan
), pruned AS (
    DELETE FROM jobq_failures f WHERE f.job = $2 AND f.seq <= (
        SELECT seq FROM jobq_failures WHERE job = $2 ORDER BY seq DESC OFFSET $7 LIMIT 1)
)
SELECT upd.state, upd.due_at, cur.holder_replica, cur.holder, now() AS db_now FROM upd, cur";

/// Moves a live lease's deadline.
const EXTEND: &str = "
UPDATE jobq_jobs SET due_at = now() + $4 * interval '1 millisecond'
WHERE id = $2 AND queue = $1 AND state = 3 AND delivery = $3 AND due_at > now()
RETURNING due_at, holder_replica, holder, now() AS db_now";

/// A token's delivery number as the tables hold it.
fn delivery(token: &LeaseToken) -> i64 {
    i64::try_from(token.delivery).unwrap_or(i64::MAX)
}

fn lease_not_found(queue: &QueueName, token: LeaseToken) -> EngineError {
    QueueError::LeaseNotFound {
        queue: queue.clone(),
        token,
    }
    .into()
}

/// Claimed jobs, and where each stood in line.
pub(super) struct Claimed {
    pub(super) deliveries: Vec<Delivery>,
    places: Vec<DateTime<Utc>>,
}

impl PgEngine {
    /// Leases up to `max` ready jobs of `queue` for `holder` (a worker
    /// stream of this replica) or for no one (a unary lease).
    async fn claim(
        &self,
        queue: &QueueName,
        max: usize,
        lease_for: Option<Duration>,
        holder: Option<u64>,
    ) -> Result<Claimed, EngineError> {
        let mut conn = self.pool().acquire().await.map_err(error::store)?;
        let sent = Instant::now();
        let rows = sqlx::query(CLAIM)
            .bind(queue.as_str())
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .bind(lease_for.map(millis))
            .bind(holder.map(|_| self.replica()))
            .bind(holder.map(|h| i64::try_from(h).unwrap_or(i64::MAX)))
            .fetch_all(&mut *conn)
            .await
            .map_err(error::store)?;
        drop(conn);
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let clock = Clock::sent_at(sent, row.try_get("db_now").map_err(error::store)?);
            let job = rows::job(row).map_err(error::store)?;
            let place: DateTime<Utc> = row.try_get("place").map_err(error::store)?;
            let delivery: i64 = row.try_get("delivery").map_err(error::store)?;
            let attempts: i32 = row.try_get("attempts").map_err(error::store)?;
            let drops: i32 = row.try_get("drops").map_err(error::store)?;
            let deadline: DateTime<Utc> = row.try_get("deadline").map_err(error::store)?;
            let id = job.id;
            let max_attempts = job
                .max_attempts
                .saturating_add(u32::try_from(drops).unwrap_or(0));
            claimed.push((
                (std::cmp::Reverse(job.priority), place, id),
                Delivery {
                    job: Arc::new(job),
                    token: LeaseToken {
                        job: id,
                        delivery: u64::try_from(delivery).unwrap_or(0),
                    },
                    attempt: u32::try_from(attempts).unwrap_or(0),
                    max_attempts,
                    deadline: clock.instant(deadline),
                },
            ));
        }
        // RETURNING keeps no order: hand them out in line order.
        claimed.sort_by_key(|c| c.0);
        let places = claimed.iter().map(|((_, place, _), _)| *place).collect();
        let deliveries: Vec<Delivery> = claimed.into_iter().map(|(_, d)| d).collect();
        if !deliveries.is_empty() {
            let n = deliveries.len() as u64;
            self.shared.figures.add(queue, |t| t.leased += n);
            self.observe_leases(queue, &deliveries);
        }
        Ok(Claimed { deliveries, places })
    }

    /// As [`claim`](Self::claim), but cancel-safe: the statement runs on
    /// a task of its own, and if the caller has gone when it returns, the
    /// jobs go back where they were in line, their attempt not counted.
    pub(super) async fn claim_detached(
        &self,
        queue: &QueueName,
        max: usize,
        lease_for: Option<Duration>,
        holder: Option<u64>,
    ) -> Result<Vec<Delivery>, EngineError> {
        match self.spawn_claim(queue, max, lease_for, holder).await {
            Ok(claimed) => claimed,
            // The task was cut short: nothing was handed over.
            Err(_) => Ok(Vec::new()),
        }
    }

    /// Starts [`claim`](Self::claim) on a task of its own; its result
    /// comes on the receiver, and if that is gone by then, the jobs go
    /// back where they were in line, their attempt not counted.
    pub(super) fn spawn_claim(
        &self,
        queue: &QueueName,
        max: usize,
        lease_for: Option<Duration>,
        holder: Option<u64>,
    ) -> tokio::sync::oneshot::Receiver<Result<Vec<Delivery>, EngineError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let engine = self.clone();
        let queue = queue.clone();
        self.shared.tasks.spawn(async move {
            match engine.claim(&queue, max, lease_for, holder).await {
                Ok(claimed) => {
                    let Claimed { deliveries, places } = claimed;
                    if let Err(Ok(deliveries)) = tx.send(Ok(deliveries)) {
                        engine.unclaim(&queue, Claimed { deliveries, places }).await;
                    }
                }
                Err(error) => {
                    let _ = tx.send(Err(error));
                }
            }
        });
        rx
    }

    async fn unclaim(&self, queue: &QueueName, claimed: Claimed) {
        if claimed.deliveries.is_empty() {
            return;
        }
        let ids: Vec<Uuid> = claimed
            .deliveries
            .iter()
            .map(|d| rows::uuid(d.token.job))
            .collect();
        let deliveries: Vec<i64> = claimed
            .deliveries
            .iter()
            .map(|d| delivery(&d.token))
            .collect();
        let put_back = sqlx::query(UNCLAIM)
            .bind(&ids)
            .bind(&deliveries)
            .bind(&claimed.places)
            .execute(self.pool())
            .await;
        match put_back {
            Ok(_) => self.shared.wakers.ready(queue),
            // They come back when their leases run out.
            Err(error) => {
                tracing::warn!(queue = %queue, %error, "could not put back leases nobody received; they return when their leases run out")
            }
        }
    }

    /// Acks `tokens`, all or none: [`ACK_BATCH`] in a transaction, undone
    /// unless every token was live.
    pub(super) async fn ack_tokens(
        &self,
        queue: &QueueName,
        tokens: &[LeaseToken],
    ) -> Result<usize, EngineError> {
        let distinct: HashSet<LeaseToken> = tokens.iter().copied().collect();
        let mut tx = self.pool().begin().await.map_err(error::store)?;
        let acked = run_ack(&mut tx, queue, &distinct).await?;
        if let Some(stale) = tokens.iter().find(|t| !acked.tokens.contains(t)) {
            tx.rollback().await.map_err(error::store)?;
            return Err(lease_not_found(queue, *stale));
        }
        tx.commit().await.map_err(error::store)?;
        self.acked(queue, &acked);
        Ok(acked.tokens.len())
    }

    /// After acks committed: streams' credits, job timings, totals, and
    /// waiting enqueues.
    fn acked(&self, queue: &QueueName, acked: &Acked) {
        let Some(clock) = acked.clock else {
            return;
        };
        for &(token, replica, holder) in &acked.holders {
            self.lease_moved(queue, replica, holder, token, Moved::Ended);
        }
        self.observe_acks(queue, &acked.leased_at, &clock);
        let n = acked.tokens.len() as u64;
        self.shared.figures.add(queue, |t| t.acked += n);
        self.shared.wakers.freed(queue);
    }

    /// Acks one token together with whatever other single acks of the
    /// queue are waiting (see `batch.rs`).
    pub(super) async fn ack_one(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
    ) -> Result<usize, EngineError> {
        match self.shared.acks.submit(self, queue, *token).await? {
            true => Ok(1),
            false => Err(lease_not_found(queue, *token)),
        }
    }

    pub(super) async fn nack_token(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, EngineError> {
        let reason = if request.reason.is_empty() {
            "nacked without a reason".to_string()
        } else {
            request.reason
        };
        let row = sqlx::query(NACK)
            .bind(queue.as_str())
            .bind(rows::uuid(token.job))
            .bind(delivery(token))
            .bind(request.dead_letter)
            .bind(request.retry_delay.map(millis))
            .bind(&reason)
            .bind(i64::try_from(crate::queue::MAX_HISTORY - 1).unwrap_or(15))
            .fetch_optional(self.pool())
            .await
            .map_err(error::store)?
            .ok_or_else(|| lease_not_found(queue, *token))?;
        let clock = Clock::new(row.try_get("db_now").map_err(error::store)?);
        self.lease_moved(
            queue,
            row.try_get("holder_replica").map_err(error::store)?,
            row.try_get("holder").map_err(error::store)?,
            *token,
            Moved::Ended,
        );
        let code: i16 = row.try_get("state").map_err(error::store)?;
        let due: DateTime<Utc> = row.try_get("due_at").map_err(error::store)?;
        self.shared.figures.add(queue, |t| {
            t.nacked += 1;
            if code == state::DEAD {
                t.dead_lettered += 1;
            }
        });
        Ok(match code {
            state::DEAD => NackOutcome::DeadLettered,
            state::READY => {
                self.shared.wakers.ready(queue);
                NackOutcome::RetryAt(clock.instant(due))
            }
            _ => {
                self.shared.timer.notify_one();
                NackOutcome::RetryAt(clock.instant(due))
            }
        })
    }

    pub(super) async fn extend_token(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        lease_for: Duration,
    ) -> Result<Instant, EngineError> {
        let mut conn = self.pool().acquire().await.map_err(error::store)?;
        let sent = Instant::now();
        let row = sqlx::query(EXTEND)
            .bind(queue.as_str())
            .bind(rows::uuid(token.job))
            .bind(delivery(token))
            .bind(millis(lease_for))
            .fetch_optional(&mut *conn)
            .await
            .map_err(error::store)?
            .ok_or_else(|| lease_not_found(queue, *token))?;
        drop(conn);
        let clock = Clock::sent_at(sent, row.try_get("db_now").map_err(error::store)?);
        let due: DateTime<Utc> = row.try_get("due_at").map_err(error::store)?;
        self.lease_moved(
            queue,
            row.try_get("holder_replica").map_err(error::store)?,
            row.try_get("holder").map_err(error::store)?,
            *token,
            Moved::Extended(rows::system_time(due)),
        );
        Ok(clock.instant(due))
    }
}

#[async_trait]
impl Consume for PgEngine {
    async fn lease(
        &self,
        queue: QueueName,
        max: usize,
        lease_for: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Delivery>, EngineError> {
        self.refuse_if_shutting_down()?;
        self.create_queue(&queue).await?;
        let until = Instant::now() + wait;
        let ready = self.shared.wakers.of(&queue);
        let _waiting = LongPoll::new(self, &queue);
        loop {
            let mut woken = std::pin::pin!(ready.notified());
            woken.as_mut().enable();
            let leased = self.claim_detached(&queue, max, lease_for, None).await?;
            if !leased.is_empty() {
                if leased.len() == max {
                    // Jobs may be left: let the next waiter look.
                    ready.notify_one();
                }
                return Ok(leased);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(leased);
            }
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep_until((now + FALLBACK_POLL).min(until)) => {}
                () = self.shared.shutdown.cancelled() => return Ok(Vec::new()),
            }
        }
    }

    async fn attach_worker(
        &self,
        queue: QueueName,
    ) -> Result<Box<dyn WorkerAttachment>, EngineError> {
        self.refuse_if_shutting_down()?;
        self.create_queue(&queue).await?;
        Ok(Box::new(super::worker::PgAttachment::new(
            self.clone(),
            queue,
        )))
    }

    async fn ack(&self, queue: &QueueName, tokens: &[LeaseToken]) -> Result<usize, EngineError> {
        match tokens {
            [token] => self.ack_one(queue, token).await,
            _ => self.ack_tokens(queue, tokens).await,
        }
    }

    async fn nack(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, EngineError> {
        self.nack_token(queue, token, request).await
    }

    async fn extend(
        &self,
        queue: &QueueName,
        token: &LeaseToken,
        lease_for: Duration,
    ) -> Result<Instant, EngineError> {
        self.extend_token(queue, token, lease_for).await
    }
}

/// What [`ACK_BATCH`] acked.
struct Acked {
    tokens: HashSet<LeaseToken>,
    /// Each acked token's holder: replica and stream, if a stream held it.
    holders: Vec<(LeaseToken, Option<Uuid>, Option<i64>)>,
    leased_at: Vec<DateTime<Utc>>,
    /// The database's clock, if anything was acked.
    clock: Option<Clock>,
}

/// Runs [`ACK_BATCH`] for `tokens` on `conn`.
async fn run_ack(
    conn: &mut sqlx::PgConnection,
    queue: &QueueName,
    tokens: &HashSet<LeaseToken>,
) -> Result<Acked, EngineError> {
    let ids: Vec<Uuid> = tokens.iter().map(|t| rows::uuid(t.job)).collect();
    let deliveries: Vec<i64> = tokens.iter().map(delivery).collect();
    let rows = sqlx::query(ACK_BATCH)
        .bind(queue.as_str())
        .bind(&ids)
        .bind(&deliveries)
        .fetch_all(conn)
        .await
        .map_err(error::store)?;
    let mut acked = Acked {
        tokens: HashSet::with_capacity(rows.len()),
        holders: Vec::with_capacity(rows.len()),
        leased_at: Vec::with_capacity(rows.len()),
        clock: None,
    };
    for row in &rows {
        let id: Uuid = row.try_get("id").map_err(error::store)?;
        let delivery: i64 = row.try_get("delivery").map_err(error::store)?;
        let token = LeaseToken {
            job: rows::job_id(id),
            delivery: u64::try_from(delivery).unwrap_or(0),
        };
        acked.tokens.insert(token);
        acked.holders.push((
            token,
            row.try_get("holder_replica").map_err(error::store)?,
            row.try_get("holder").map_err(error::store)?,
        ));
        acked
            .leased_at
            .push(row.try_get("leased_at").map_err(error::store)?);
        acked
            .clock
            .get_or_insert(Clock::new(row.try_get("db_now").map_err(error::store)?));
    }
    Ok(acked)
}

/// Runs [`ACK_BATCH`] for many callers' tokens: whether each was acked
/// (a token given twice is acked for its first caller only).
pub(super) fn ack_batch(
    engine: PgEngine,
    queue: QueueName,
    tokens: Vec<LeaseToken>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<bool>, EngineError>> + Send>> {
    Box::pin(async move {
        let distinct: HashSet<LeaseToken> = tokens.iter().copied().collect();
        let mut conn = engine.pool().acquire().await.map_err(error::store)?;
        let mut acked = run_ack(&mut conn, &queue, &distinct).await?;
        drop(conn);
        engine.acked(&queue, &acked);
        // Each acked token answers its first caller only.
        Ok(tokens.iter().map(|t| acked.tokens.remove(t)).collect())
    })
}

/// Counts a unary lease in [`PgEngine::long_polls`] while it lives.
struct LongPoll<'a> {
    engine: &'a PgEngine,
    queue: &'a QueueName,
}

impl<'a> LongPoll<'a> {
    fn new(engine: &'a PgEngine, queue: &'a QueueName) -> Self {
        let mut polls = super::lock(&engine.shared.long_polls);
        match polls.get_mut(queue) {
            Some(count) => *count += 1,
            None => {
                polls.insert(queue.clone(), 1);
            }
        }
        drop(polls);
        Self { engine, queue }
    }
}

impl Drop for LongPoll<'_> {
    fn drop(&mut self) {
        let mut polls = super::lock(&self.engine.shared.long_polls);
        if let Some(count) = polls.get_mut(self.queue) {
            *count -= 1;
            if *count == 0 {
                polls.remove(self.queue);
            }
        }
    }
}
