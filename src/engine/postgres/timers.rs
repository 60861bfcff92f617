//! This replica's background work: due delays and lease deadlines, the
//! heartbeat (and giving back the leases of replicas whose heartbeat
//! stopped), and forgetting finished jobs and expired keys.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Row;
use tokio::time::Instant;
use uuid::Uuid;

use super::consume::FALLBACK_POLL;
use super::{PgEngine, error, rows};
use crate::engine::EngineError;
use crate::queue::{DROPS_PER_ATTEMPT, QueueName};

/// Rows one statement promotes, expires or forgets at most.
const BATCH: i64 = 1000;

/// How often a replica beats.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// A replica whose heartbeat is this old is gone: its streams' leases are
/// given back by whichever replica notices first.
const STALE: Duration = Duration::from_secs(10);

/// How often finished jobs and expired keys are looked for.
const FORGET_EVERY: Duration = Duration::from_secs(1);

/// How often, with the server's autovacuum off, the hot tables' dead rows
/// are looked at.
const VACUUM_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Dead rows of a hot table past which, with autovacuum off, jobq vacuums
/// it itself (or past 5 % of its live rows, if that is more).
const VACUUM_DEAD_ROWS: i64 = 20_000;

/// The advisory lock one replica at a time holds to vacuum.
const VACUUM_LOCK: i64 = 0x6a6f_6271_7661_6375; // "jobqvacu"

/// The hot tables' dead and live rows, in this session's schema.
const DEAD_ROWS: &str = "
SELECT relname::text, n_dead_tup, n_live_tup FROM pg_stat_user_tables
WHERE schemaname = current_schema() AND relname IN ('jobq_jobs', 'jobq_payloads', 'jobq_keys', 'jobq_queues')";

/// Promotes due scheduled jobs to ready, and expires leases past their
/// deadline (ready again, or dead on their last attempt).
const ADVANCE: &str = "
WITH due AS (
    SELECT id, state AS was FROM jobq_jobs
    WHERE state IN (2, 3) AND due_at <= now()
    ORDER BY due_at LIMIT $1
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE jobq_jobs j SET
        state = CASE WHEN due.was = 2 THEN 1 WHEN j.attempts - j.drops >= j.max_attempts THEN 4 ELSE 1 END,
        due_at = CASE WHEN due.was = 2 THEN j.due_at ELSE now() END,
        last_error = CASE WHEN due.was = 3
            THEN format('lease expired before attempt %s was acked or nacked', j.attempts)
            ELSE j.last_error END,
        holder_replica = NULL, holder = NULL
    FROM due WHERE j.id = due.id
    RETURNING j.id, j.queue, due.was, j.state, j.attempts, j.last_error
), failed AS (
    INSERT INTO jobq_failures (job, attempt, error, at)
    SELECT id, attempts, last_error, now() FROM upd WHERE was = 3
)
SELECT queue,
    count(*) FILTER (WHERE state = 1) AS readied,
    count(*) FILTER (WHERE was = 3) AS expired,
    count(*) FILTER (WHERE was = 3 AND state = 4) AS dead
FROM upd GROUP BY queue";

/// Seconds until the earliest delay or lease deadline, if any.
const NEXT_DUE: &str = "
SELECT extract(epoch FROM (min(due_at) - now()))::float8 FROM jobq_jobs WHERE state IN (2, 3)";

/// Gives back every lease a gone replica's streams held, as drops.
const RELEASE_REPLICA: &str = "
WITH held AS (
    SELECT id FROM jobq_jobs WHERE state = 3 AND holder_replica = $1
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE jobq_jobs j SET drops = j.drops + 1,
        state = CASE WHEN j.drops + 1 >= j.max_attempts * $3 THEN 4 ELSE 1 END,
        due_at = now(), last_error = $2, holder_replica = NULL, holder = NULL
    FROM held WHERE j.id = held.id
    RETURNING j.id, j.queue, j.attempts, j.state
), failed AS (
    INSERT INTO jobq_failures (job, attempt, error, at) SELECT id, attempts, $2, now() FROM upd
)
SELECT queue, count(*) AS released, count(*) FILTER (WHERE state = 4) AS dead FROM upd GROUP BY queue";

/// Runs [`ADVANCE`] whenever something is due: sleeps until the earliest
/// due time in the database, at most [`FALLBACK_POLL`] (to see other
/// replicas' delays), or until this replica stores an earlier one.
pub(super) async fn run(engine: PgEngine) {
    let shared = &engine.shared;
    loop {
        let mut woken = std::pin::pin!(shared.timer.notified());
        woken.as_mut().enable();
        let wait = match advance(&engine).await {
            Ok(()) => next_due(&engine).await.unwrap_or(FALLBACK_POLL),
            Err(error) => {
                tracing::debug!(%error, "advancing timers failed; retrying");
                FALLBACK_POLL
            }
        };
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = &mut woken => {}
            () = tokio::time::sleep(wait.min(FALLBACK_POLL)) => {}
        }
    }
}

async fn advance(engine: &PgEngine) -> Result<(), EngineError> {
    loop {
        let rows = sqlx::query(ADVANCE)
            .bind(BATCH)
            .fetch_all(engine.pool())
            .await
            .map_err(error::store)?;
        let mut total = 0;
        for row in &rows {
            let queue: String = row.try_get("queue").map_err(error::store)?;
            let readied: i64 = row.try_get("readied").map_err(error::store)?;
            let expired: i64 = row.try_get("expired").map_err(error::store)?;
            let dead: i64 = row.try_get("dead").map_err(error::store)?;
            total += readied + dead;
            let Ok(queue) = QueueName::new(queue) else {
                continue;
            };
            if readied > 0 {
                engine.shared.wakers.ready(&queue);
            }
            if expired > 0 {
                engine.shared.figures.add(&queue, |t| {
                    t.expired += expired as u64;
                    t.dead_lettered += dead as u64;
                });
            }
        }
        if total < BATCH {
            return Ok(());
        }
    }
}

async fn next_due(engine: &PgEngine) -> Result<Duration, EngineError> {
    let seconds: Option<f64> = sqlx::query_scalar(NEXT_DUE)
        .fetch_one(engine.pool())
        .await
        .map_err(error::store)?;
    Ok(match seconds {
        None => FALLBACK_POLL,
        Some(s) if s <= 0.0 => Duration::ZERO,
        Some(s) => Duration::try_from_secs_f64(s).unwrap_or(FALLBACK_POLL),
    })
}

/// Beats every [`HEARTBEAT`], writing this replica's open worker streams
/// beside it; gives back the leases of replicas gone quiet; and marks the
/// store unreachable while beating fails. At shutdown, removes its row.
pub(super) async fn heartbeat(engine: PgEngine) {
    let shared = &engine.shared;
    let mut next = Instant::now();
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            () = tokio::time::sleep_until(next) => {}
        }
        next = Instant::now() + HEARTBEAT;
        let beat = async {
            beat(&engine).await?;
            reap_replicas(&engine).await
        };
        let up = tokio::time::timeout(HEARTBEAT, beat).await;
        match up {
            Ok(Ok(())) => engine.set_available(true),
            Ok(Err(error)) => {
                tracing::debug!(%error, "heartbeat failed");
                engine.set_available(false);
            }
            Err(_) => engine.set_available(false),
        }
    }
    // Gone from the list of replicas. The streams, ending with the
    // shutdown, give their leases back by holder, not by this row.
    let _ = sqlx::query("DELETE FROM jobq_replicas WHERE id = $1")
        .bind(engine.replica())
        .execute(engine.pool())
        .await;
}

async fn beat(engine: &PgEngine) -> Result<(), EngineError> {
    let (queues, streams): (Vec<String>, Vec<i32>) = engine
        .workers()
        .iter()
        .map(|(q, n)| {
            (
                q.as_str().to_string(),
                i32::try_from(*n).unwrap_or(i32::MAX),
            )
        })
        .unzip();
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    sqlx::query(
        "INSERT INTO jobq_replicas (id, host) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET seen_at = now()",
    )
    .bind(engine.replica())
    .bind(host)
    .execute(engine.pool())
    .await
    .map_err(error::store)?;
    sqlx::query(
        "WITH up AS (
             INSERT INTO jobq_workers (replica, queue, streams)
             SELECT $1, q, n FROM unnest($2::text[], $3::int[]) AS u(q, n)
             ON CONFLICT (replica, queue) DO UPDATE SET streams = excluded.streams
         )
         DELETE FROM jobq_workers WHERE replica = $1 AND NOT (queue = ANY($2))",
    )
    .bind(engine.replica())
    .bind(&queues)
    .bind(&streams)
    .execute(engine.pool())
    .await
    .map_err(error::store)?;
    Ok(())
}

/// Gives back the leases of every replica whose heartbeat is stale, then
/// forgets it.
async fn reap_replicas(engine: &PgEngine) -> Result<(), EngineError> {
    let gone: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM jobq_replicas WHERE seen_at < now() - $1 * interval '1 millisecond' AND id <> $2",
    )
    .bind(rows::millis(STALE))
    .bind(engine.replica())
    .fetch_all(engine.pool())
    .await
    .map_err(error::store)?;
    for replica in gone {
        let rows = sqlx::query(RELEASE_REPLICA)
            .bind(replica)
            .bind("the replica serving the worker stream stopped")
            .bind(i32::try_from(DROPS_PER_ATTEMPT).unwrap_or(2))
            .fetch_all(engine.pool())
            .await
            .map_err(error::store)?;
        let mut released: HashMap<String, i64> = HashMap::new();
        for row in &rows {
            let queue: String = row.try_get("queue").map_err(error::store)?;
            let n: i64 = row.try_get("released").map_err(error::store)?;
            let dead: i64 = row.try_get("dead").map_err(error::store)?;
            *released.entry(queue.clone()).or_default() += n;
            if let Ok(queue) = QueueName::new(queue) {
                engine.shared.figures.add(&queue, |t| {
                    t.expired += n as u64;
                    t.dead_lettered += dead as u64;
                });
                engine.shared.wakers.ready(&queue);
            }
        }
        sqlx::query("DELETE FROM jobq_replicas WHERE id = $1")
            .bind(replica)
            .execute(engine.pool())
            .await
            .map_err(error::store)?;
        tracing::warn!(replica = %replica, ?released, "a replica stopped beating; its worker streams' leases went back to their queues");
    }
    Ok(())
}

/// Deletes finished jobs past their retention, and idempotency keys past
/// their window, a batch at a time.
pub(super) async fn forget(engine: PgEngine) {
    let shared = &engine.shared;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(FORGET_EVERY) => {}
        }
        if let Err(error) = forget_once(&engine).await {
            tracing::debug!(%error, "forgetting finished jobs failed; retrying");
        }
    }
}

async fn forget_once(engine: &PgEngine) -> Result<(), EngineError> {
    loop {
        let jobs = sqlx::query(
            "WITH gone AS (
                 SELECT id FROM jobq_jobs WHERE state IN (5, 6) AND due_at <= now()
                 ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
             )
             DELETE FROM jobq_jobs j USING gone WHERE j.id = gone.id",
        )
        .bind(BATCH)
        .execute(engine.pool())
        .await
        .map_err(error::store)?
        .rows_affected();
        let keys = sqlx::query(
            "DELETE FROM jobq_keys WHERE (queue, key) IN (
                 SELECT queue, key FROM jobq_keys WHERE expires_at <= now()
                 LIMIT $1 FOR UPDATE SKIP LOCKED)",
        )
        .bind(BATCH)
        .execute(engine.pool())
        .await
        .map_err(error::store)?
        .rows_affected();
        // Beyond its newest --finished-max (a ULID's order is its enqueue
        // order), a queue's finished jobs are forgotten early.
        let extra = sqlx::query(
            "WITH ranked AS (
                 SELECT id, row_number() OVER (PARTITION BY queue ORDER BY id DESC) AS n
                 FROM jobq_jobs WHERE state IN (5, 6)
             ), extra AS (
                 SELECT id FROM ranked WHERE n > $2 LIMIT $1
             )
             DELETE FROM jobq_jobs j USING extra WHERE j.id = extra.id",
        )
        .bind(BATCH)
        .bind(i64::try_from(engine.defaults().finished_max).unwrap_or(i64::MAX))
        .execute(engine.pool())
        .await
        .map_err(error::store)?
        .rows_affected();
        if jobs < BATCH as u64 && keys < BATCH as u64 && extra < BATCH as u64 {
            return Ok(());
        }
    }
}

/// With the server's autovacuum off (a setting some installations ship
/// with), a job queue's tables fill with dead rows and every lease wades
/// through them: then jobq vacuums its hot tables itself, one replica at a
/// time, whenever their dead rows pass [`VACUUM_DEAD_ROWS`]. With
/// autovacuum on, it leaves them to it.
pub(super) async fn vacuum(engine: PgEngine) {
    let shared = &engine.shared;
    let mut warned = false;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(VACUUM_CHECK_EVERY) => {}
        }
        match vacuum_once(&engine, &mut warned).await {
            Ok(()) => {}
            Err(error) => tracing::debug!(%error, "checking dead rows failed; retrying"),
        }
    }
}

async fn vacuum_once(engine: &PgEngine, warned: &mut bool) -> Result<(), EngineError> {
    let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(engine.pool())
        .await
        .map_err(error::store)?;
    if autovacuum == "on" {
        return Ok(());
    }
    if !*warned {
        *warned = true;
        tracing::warn!(
            "the database's autovacuum is off: jobq vacuums its own tables when their dead rows pile up; turn autovacuum on to leave it to the database"
        );
    }
    let tables: Vec<(String, i64, i64)> = sqlx::query_as(DEAD_ROWS)
        .fetch_all(engine.pool())
        .await
        .map_err(error::store)?;
    let due: Vec<String> = tables
        .into_iter()
        .filter(|(_, dead, live)| *dead > VACUUM_DEAD_ROWS.max(live / 20))
        .map(|(table, _, _)| table)
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    let mut conn = engine.pool().acquire().await.map_err(error::store)?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(VACUUM_LOCK)
        .fetch_one(&mut *conn)
        .await
        .map_err(error::store)?;
    if !locked {
        return Ok(()); // another replica is at it
    }
    let mut vacuumed = Ok(());
    for table in &due {
        let started = Instant::now();
        // The names come from the fixed list in DEAD_ROWS.
        if let Err(error) = sqlx::query(&format!("VACUUM {table}"))
            .execute(&mut *conn)
            .await
        {
            vacuumed = Err(error::store(error));
            break;
        }
        tracing::info!(table, took = ?started.elapsed(), "vacuumed (the database's autovacuum is off)");
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(VACUUM_LOCK)
        .execute(&mut *conn)
        .await;
    vacuumed
}
