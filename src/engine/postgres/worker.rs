//! [`PgAttachment`]: a worker stream's hold on one queue, on one replica.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::consume::FALLBACK_POLL;
use super::holdings::Holding;
use super::{PgEngine, error, rows};
use crate::engine::{Engine, EngineError, WorkerAttachment};
use crate::queue::{Delivery, LeaseToken, NackOutcome, NackRequest, QueueName};

/// Gives a stream's leases back, each as a drop (see
/// [`DROPS_PER_ATTEMPT`](crate::queue::DROPS_PER_ATTEMPT)): ready again at
/// once, or dead once dropped too often.
pub(super) const RELEASE_HOLDER: &str = "
WITH held AS (
    SELECT id FROM jobq_jobs
    WHERE queue = $1 AND state = 3 AND holder_replica = $2 AND holder = $3
    FOR UPDATE
), upd AS (
    UPDATE jobq_jobs j SET drops = j.drops + 1,
        state = CASE WHEN j.drops + 1 >= j.max_attempts * $5 THEN 4 ELSE 1 END,
        due_at = now(), last_error = $4, holder_replica = NULL, holder = NULL
    FROM held WHERE j.id = held.id
    RETURNING j.id, j.attempts, j.state
), failed AS (
    INSERT INTO jobq_failures (job, attempt, error, at) SELECT id, attempts, $4, now() FROM upd
)
SELECT count(*) AS released, count(*) FILTER (WHERE state = 4) AS dead FROM upd";

/// Why a stream's leases went back.
const CLOSED: &str = "the worker stream holding the lease closed";

/// A claim's result, still to come.
type Pending = tokio::sync::oneshot::Receiver<Result<Vec<Delivery>, EngineError>>;

/// Holds a claim being awaited; if the await is cancelled, puts it back
/// for the next call.
struct Awaiting<'a> {
    slot: &'a Mutex<Option<Pending>>,
    claim: Option<Pending>,
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            *super::lock(self.slot) = Some(claim);
        }
    }
}

/// A worker attached to one queue through this replica. Its leases carry
/// this replica's id and its own number; when it is dropped they go back
/// to the queue at once, and if this replica dies, the others give them
/// back once its heartbeat is stale.
#[derive(Debug)]
pub(super) struct PgAttachment {
    engine: PgEngine,
    queue: QueueName,
    holder: u64,
    /// Its live leases, which any ack, nack or extend of them updates.
    holding: Arc<Holding>,
    /// A claim a cancelled [`next_leases`](WorkerAttachment::next_leases)
    /// left running: the next call takes its result instead of claiming
    /// again (a claim undone at every cancellation would churn rows).
    pending: Mutex<Option<Pending>>,
    paused: tokio::sync::watch::Receiver<bool>,
}

impl PgAttachment {
    pub(super) fn new(engine: PgEngine, queue: QueueName) -> Self {
        let holder = engine.new_holder();
        *engine.workers().entry(queue.clone()).or_default() += 1;
        let paused = engine.shared.figures.paused(&queue);
        let holding = engine.shared.holdings.register(holder);
        Self {
            engine,
            queue,
            holder,
            holding,
            pending: Mutex::default(),
            paused,
        }
    }
}

#[async_trait]
impl WorkerAttachment for PgAttachment {
    fn queue(&self) -> &QueueName {
        &self.queue
    }

    async fn next_leases(
        &self,
        credits: usize,
        max: usize,
        lease_for: Option<Duration>,
    ) -> Result<Vec<Delivery>, EngineError> {
        let ready = self.engine.shared.wakers.of(&self.queue);
        let closed = self.engine.shared.wakers.closed(&self.queue);
        loop {
            let (held, earliest) = self.holding.live();
            let spare = credits.saturating_sub(held);
            let mut woken = std::pin::pin!(ready.notified());
            if spare > 0 {
                // Only an attachment with room takes a wake-up, so a full
                // one never swallows one another could use.
                woken.as_mut().enable();
            }
            let mut released = std::pin::pin!(self.holding.released.notified());
            released.as_mut().enable();
            if self.engine.is_shutting_down() {
                return Err(EngineError::ShuttingDown);
            }
            let left = super::lock(&self.pending).take();
            if left.is_some() || spare > 0 {
                let asked = spare.min(max);
                let claim = left.unwrap_or_else(|| {
                    self.engine
                        .spawn_claim(&self.queue, asked, lease_for, Some(self.holder))
                });
                let mut awaiting = Awaiting {
                    slot: &self.pending,
                    claim: Some(claim),
                };
                let result = match awaiting.claim.as_mut() {
                    Some(claim) => claim.await,
                    None => Ok(Ok(Vec::new())),
                };
                awaiting.claim = None;
                // A claim task cut short handed nothing over.
                let leased = result.unwrap_or_else(|_| Ok(Vec::new()))?;
                if !leased.is_empty() {
                    if leased.len() >= asked {
                        // Jobs may be left: pass the wake-up on.
                        ready.notify_one();
                    }
                    self.holding
                        .hold(leased.iter().map(|d| (d.token, d.deadline)));
                    return Ok(leased);
                }
            }
            let poll = Instant::now() + FALLBACK_POLL;
            let wake_at = earliest.map_or(poll, |e| e.min(poll));
            tokio::select! {
                () = closed.cancelled() => return Err(EngineError::QueueNotFound(self.queue.clone())),
                () = self.engine.shared.shutdown.cancelled() => return Err(EngineError::ShuttingDown),
                () = &mut woken, if spare > 0 => {}
                () = &mut released => {}
                () = tokio::time::sleep_until(wake_at) => {
                    if !self.engine.queue_exists(&self.queue).await? {
                        return Err(EngineError::QueueNotFound(self.queue.clone()));
                    }
                }
            }
        }
    }

    async fn leases_recorded(&self) -> Result<(), EngineError> {
        // Committed before they were returned.
        Ok(())
    }

    // Ack, nack and extend update the holding through the engine, as the
    // same calls made by unary RPC do.
    async fn ack(&self, token: &LeaseToken) -> Result<usize, EngineError> {
        self.engine.ack_one(&self.queue, token).await
    }

    async fn nack(
        &self,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, EngineError> {
        self.engine.nack_token(&self.queue, token, request).await
    }

    async fn extend(
        &self,
        token: &LeaseToken,
        lease_for: Duration,
    ) -> Result<Instant, EngineError> {
        self.engine
            .extend_token(&self.queue, token, lease_for)
            .await
    }

    fn paused(&self) -> tokio::sync::watch::Receiver<bool> {
        self.paused.clone()
    }
}

impl Drop for PgAttachment {
    fn drop(&mut self) {
        self.engine.shared.holdings.remove(self.holder);
        {
            let mut workers = self.engine.workers();
            if let Some(n) = workers.get_mut(&self.queue) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    workers.remove(&self.queue);
                }
            }
        }
        // Always asked of the database, not only for the leases this
        // replica still counts: one past its deadline here may not have
        // been expired there yet.
        let (engine, queue, holder) = (self.engine.clone(), self.queue.clone(), self.holder);
        self.engine.shared.tasks.spawn(async move {
            match engine.release_holder(&queue, holder).await {
                Ok(0) => {}
                Ok(released) => tracing::info!(queue = %queue, leases = released, "worker detached; its leases went back to the queue"),
                Err(error) => tracing::warn!(queue = %queue, %error, "could not give a closed worker stream's leases back; they return when their leases run out"),
            }
        });
    }
}

impl PgEngine {
    /// Gives back every lease `holder` (a stream of this replica) holds.
    async fn release_holder(&self, queue: &QueueName, holder: u64) -> Result<usize, EngineError> {
        let row = sqlx::query(RELEASE_HOLDER)
            .bind(queue.as_str())
            .bind(self.replica())
            .bind(i64::try_from(holder).unwrap_or(i64::MAX))
            .bind(CLOSED)
            .bind(i32::try_from(crate::queue::DROPS_PER_ATTEMPT).unwrap_or(2))
            .fetch_one(self.pool())
            .await
            .map_err(error::store)?;
        let released = rows::count(sqlx::Row::try_get(&row, "released").map_err(error::store)?);
        let dead = rows::count(sqlx::Row::try_get(&row, "dead").map_err(error::store)?);
        if released > 0 {
            self.shared.figures.add(queue, |t| {
                t.expired += released as u64;
                t.dead_lettered += dead as u64;
            });
            self.shared.wakers.ready(queue);
        }
        Ok(released)
    }
}
