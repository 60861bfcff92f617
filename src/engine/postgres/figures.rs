//! Figures a scrape reads without touching the jobs table: per-state
//! counts refreshed every few seconds, totals summed from per-replica rows
//! (this replica's own added every 2 s), and each queue's pause flag.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sqlx::Row;
use tokio::sync::watch;
use uuid::Uuid;

use super::rows::{self, state};
use super::{PgEngine, error};
use crate::engine::EngineError;
use crate::queue::{QueueCounts, QueueName, QueueStats};

/// How often counts are read and totals written.
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Adds this replica's totals since the last flush to its rows.
const FLUSH_TOTALS: &str = "
INSERT INTO jobq_queue_totals AS t (queue, replica, enqueued, leased, acked, nacked, expired, dead_lettered)
SELECT u.queue, $1, u.enqueued, u.leased, u.acked, u.nacked, u.expired, u.dead_lettered
FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
    AS u(queue, enqueued, leased, acked, nacked, expired, dead_lettered)
WHERE EXISTS (SELECT 1 FROM jobq_queues WHERE name = u.queue)
ON CONFLICT (queue, replica) DO UPDATE SET
    enqueued = t.enqueued + excluded.enqueued, leased = t.leased + excluded.leased,
    acked = t.acked + excluded.acked, nacked = t.nacked + excluded.nacked,
    expired = t.expired + excluded.expired, dead_lettered = t.dead_lettered + excluded.dead_lettered";

/// Jobs per queue and state, and the oldest ready job's id (a ULID, so
/// its enqueue time), from the by-state index alone.
pub(super) const COUNTS: &str = "
SELECT queue, state, count(*) AS n, min(id::text) FILTER (WHERE state = 1) AS oldest
FROM jobq_jobs WHERE state < 5 AND ($1::text[] IS NULL OR queue = ANY($1))
GROUP BY queue, state";

/// Counts and the oldest ready job of one or more queues.
pub(super) type Counted = HashMap<QueueName, (QueueCounts, Option<SystemTime>)>;

#[derive(Debug, Default)]
pub(super) struct Figures {
    // A std mutex: held for map updates only, never across an await.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    counts: Counted,
    /// Totals not yet added to this replica's rows.
    pending: HashMap<QueueName, QueueStats>,
    paused: HashMap<QueueName, watch::Sender<bool>>,
}

impl Figures {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        super::lock(&self.inner)
    }

    /// Adds to this replica's totals of `queue`.
    pub(super) fn add(&self, queue: &QueueName, change: impl FnOnce(&mut QueueStats)) {
        change(self.lock().pending.entry(queue.clone()).or_default());
    }

    /// This replica's totals of `queue` not yet written.
    pub(super) fn pending(&self, queue: &QueueName) -> QueueStats {
        self.lock().pending.get(queue).copied().unwrap_or_default()
    }

    /// Whether `queue` is paused, as it changes (on this replica at once,
    /// from others within a refresh).
    pub(super) fn paused(&self, queue: &QueueName) -> watch::Receiver<bool> {
        self.lock()
            .paused
            .entry(queue.clone())
            .or_insert_with(|| watch::Sender::new(false))
            .subscribe()
    }

    pub(super) fn set_paused(&self, queue: &QueueName, paused: bool) {
        if let Some(sender) = self.lock().paused.get(queue) {
            sender.send_if_modified(|now| std::mem::replace(now, paused) != paused);
        }
    }

    /// The counts of the last refresh.
    pub(super) fn counts(&self, queue: &QueueName) -> (QueueCounts, Option<SystemTime>) {
        self.lock().counts.get(queue).copied().unwrap_or_default()
    }

    pub(super) fn forget(&self, queue: &QueueName) {
        let mut inner = self.lock();
        inner.counts.remove(queue);
        inner.pending.remove(queue);
        inner.paused.remove(queue);
    }
}

/// Adds `more` to `sum`, total by total.
pub(super) fn add_totals(sum: &mut QueueStats, more: QueueStats) {
    sum.enqueued += more.enqueued;
    sum.leased += more.leased;
    sum.acked += more.acked;
    sum.nacked += more.nacked;
    sum.expired += more.expired;
    sum.dead_lettered += more.dead_lettered;
}

/// Reads counts for `queues` (all with `None`).
pub(super) async fn count(
    engine: &PgEngine,
    queues: Option<&[String]>,
) -> Result<Counted, EngineError> {
    let rows = sqlx::query(COUNTS)
        .bind(queues)
        .fetch_all(engine.pool())
        .await
        .map_err(error::store)?;
    let mut counted = Counted::new();
    for row in &rows {
        let name: String = row.try_get("queue").map_err(error::store)?;
        let Ok(name) = QueueName::new(name) else {
            continue;
        };
        let code: i16 = row.try_get("state").map_err(error::store)?;
        let n = rows::count(row.try_get("n").map_err(error::store)?);
        let oldest: Option<String> = row.try_get("oldest").map_err(error::store)?;
        let entry = counted.entry(name).or_default();
        match code {
            state::READY => {
                entry.0.ready = n;
                entry.1 = oldest
                    .and_then(|id| id.parse::<Uuid>().ok())
                    .map(|id| ulid::Ulid(id.as_u128()).datetime());
            }
            state::SCHEDULED => entry.0.scheduled = n,
            state::LEASED => entry.0.leased = n,
            state::DEAD => entry.0.dead = n,
            _ => {}
        }
    }
    Ok(counted)
}

/// Every [`REFRESH_EVERY`]: writes this replica's totals, reads every
/// queue's counts and pause flags.
pub(super) async fn refresh(engine: PgEngine) {
    let shared = &engine.shared;
    loop {
        let stopping = tokio::select! {
            () = shared.shutdown.cancelled() => true,
            () = tokio::time::sleep(REFRESH_EVERY) => false,
        };
        if let Err(error) = flush(&engine).await {
            tracing::debug!(%error, "writing totals failed; retrying");
        }
        if stopping {
            return;
        }
        if let Err(error) = reread(&engine).await {
            tracing::debug!(%error, "reading counts failed; retrying");
        }
    }
}

async fn flush(engine: &PgEngine) -> Result<(), EngineError> {
    let pending = std::mem::take(&mut engine.shared.figures.lock().pending);
    if pending.is_empty() {
        return Ok(());
    }
    let mut columns: (Vec<String>, [Vec<i64>; 6]) = Default::default();
    for (queue, t) in &pending {
        columns.0.push(queue.as_str().to_string());
        let values = [
            t.enqueued,
            t.leased,
            t.acked,
            t.nacked,
            t.expired,
            t.dead_lettered,
        ];
        for (column, value) in columns.1.iter_mut().zip(values) {
            column.push(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }
    let [enqueued, leased, acked, nacked, expired, dead] = &columns.1;
    let written = sqlx::query(FLUSH_TOTALS)
        .bind(engine.replica())
        .bind(&columns.0)
        .bind(enqueued)
        .bind(leased)
        .bind(acked)
        .bind(nacked)
        .bind(expired)
        .bind(dead)
        .execute(engine.pool())
        .await;
    if let Err(error) = written {
        // Kept for the next try.
        let mut inner = engine.shared.figures.lock();
        for (queue, t) in pending {
            add_totals(inner.pending.entry(queue).or_default(), t);
        }
        return Err(error::store(error));
    }
    Ok(())
}

async fn reread(engine: &PgEngine) -> Result<(), EngineError> {
    let counted = count(engine, None).await?;
    let paused: Vec<(String, bool)> = sqlx::query_as("SELECT name, paused FROM jobq_queues")
        .fetch_all(engine.pool())
        .await
        .map_err(error::store)?;
    let figures = &engine.shared.figures;
    figures.lock().counts = counted;
    for (name, paused) in paused {
        if let Ok(name) = QueueName::new(name) {
            figures.set_paused(&name, paused);
        }
    }
    Ok(())
}
