//! Schedules in PostgreSQL, shared by every replica.
//!
//! A schedule is one row of `jobq_schedules` (see its migration): its
//! settings and state whole, and when its next fire is due. Every change
//! reads the row under its lock into a [`ScheduleBook`] of one, makes the
//! change there (the same pure core the in-memory store runs) and writes
//! it back in the same transaction.
//!
//! Each replica runs one firing task. It sleeps until the earliest due
//! time in the table (at most a second, to see other replicas' changes),
//! then takes due rows with `FOR UPDATE SKIP LOCKED`, enqueues their jobs
//! and writes their new state in one transaction: a fire time makes one
//! job whichever replica gets it, and replicas share the work. The job's
//! idempotency key, made of the schedule and the fire time, stays as it is
//! in memory, a second guard.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use uuid::Uuid;

use super::produce::{Keyed, Tried};
use super::rows::state;
use super::{PgEngine, error, rows};
use crate::engine::journal::schedule::{decode, encode};
use crate::engine::{EngineError, ScheduleFigures, ScheduleInfo, Schedules};
use crate::queue::{Enqueued, JobId, JobState, NewJob, QueueName, ScheduleName};
use crate::schedule::{
    FireResult, Firing, Millis, Overlap, ScheduleBook, ScheduleSpec, UPCOMING_SHOWN, Upserted,
};

/// Due schedules one transaction fires at most; the task takes the rest
/// right after.
const FIRES_PER_TRANSACTION: i64 = 16;

/// The advisory lock that makes schedule creations count one at a time
/// (an arbitrary key of jobq's own).
const SCHEDULE_COUNT_LOCK: i64 = 0x6a6f_6271_5343_4844; // "jobqSCHD"

/// The longest the firing task sleeps.
const LONGEST_SLEEP: Duration = Duration::from_secs(1);

/// A job a fire stored, to announce once its transaction commits.
struct Stored {
    queue: QueueName,
    job: NewJob,
    enqueued: Enqueued,
    fire_time: Millis,
}

/// A schedule's row, read back.
fn book_of(bytes: &[u8]) -> Result<(ScheduleName, ScheduleBook), EngineError> {
    let (name, spec, state) = decode(bytes).map_err(|reason| EngineError::StoreFailed {
        store: super::STORE,
        reason: format!("a schedule's row cannot be read: {reason}"),
    })?;
    let mut book = ScheduleBook::new();
    book.restore(name.clone(), spec, state);
    Ok((name, book))
}

/// The row's columns for `name` in `book`: its record and due time.
fn columns(book: &ScheduleBook, name: &ScheduleName) -> (Vec<u8>, Option<Millis>) {
    let record = book
        .get(name)
        .map(|entry| encode(name, &entry.spec, &entry.state))
        .unwrap_or_default();
    (record, book.due_at(name))
}

impl PgEngine {
    fn wall_now(&self) -> Millis {
        self.shared.config.clock.now()
    }

    /// `name`'s row under its lock, in `tx`.
    async fn schedule_for_update(
        &self,
        tx: &mut sqlx::PgConnection,
        name: &ScheduleName,
    ) -> Result<Option<ScheduleBook>, EngineError> {
        let record: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT record FROM jobq_schedules WHERE name = $1 FOR UPDATE")
                .bind(name.as_str())
                .fetch_optional(tx)
                .await
                .map_err(error::store)?;
        record
            .map(|r| book_of(&r).map(|(_, book)| book))
            .transpose()
    }

    /// As [`schedule_for_update`](Self::schedule_for_update), for a
    /// schedule that must be there.
    async fn locked_schedule(
        &self,
        tx: &mut sqlx::PgConnection,
        name: &ScheduleName,
    ) -> Result<ScheduleBook, EngineError> {
        self.schedule_for_update(tx, name)
            .await?
            .ok_or_else(|| EngineError::ScheduleNotFound(name.clone()))
    }

    /// Writes `name`'s row back from `book`.
    async fn write_schedule(
        &self,
        tx: &mut sqlx::PgConnection,
        name: &ScheduleName,
        book: &ScheduleBook,
    ) -> Result<(), EngineError> {
        let (record, due) = columns(book, name);
        sqlx::query("UPDATE jobq_schedules SET record = $2, due_at = $3 WHERE name = $1")
            .bind(name.as_str())
            .bind(record)
            .bind(due)
            .execute(tx)
            .await
            .map_err(error::store)?;
        Ok(())
    }

    /// The states of `ids`' jobs, while the database still has them.
    async fn job_states(&self, ids: &[JobId]) -> Result<HashMap<JobId, JobState>, EngineError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let uuids: Vec<Uuid> = ids.iter().map(|id| rows::uuid(*id)).collect();
        let found = sqlx::query("SELECT id, state FROM jobq_jobs WHERE id = ANY($1)")
            .bind(&uuids)
            .fetch_all(self.pool())
            .await
            .map_err(error::store)?;
        let mut states = HashMap::with_capacity(found.len());
        for row in found {
            let id: Uuid = row.try_get("id").map_err(error::store)?;
            let code: i16 = row.try_get("state").map_err(error::store)?;
            states.insert(rows::job_id(id), rows::job_state(code));
        }
        Ok(states)
    }

    /// What the API shows of each named schedule in its book.
    async fn infos(
        &self,
        books: Vec<(ScheduleName, ScheduleBook)>,
    ) -> Result<Vec<ScheduleInfo>, EngineError> {
        let enqueued = |book: &ScheduleBook, name: &ScheduleName| -> Vec<Option<JobId>> {
            book.get(name).map_or_else(Vec::new, |entry| {
                entry
                    .state
                    .recent
                    .iter()
                    .map(|fire| match fire.result {
                        FireResult::Enqueued(id) => Some(id),
                        _ => None,
                    })
                    .collect()
            })
        };
        let ids: Vec<JobId> = books
            .iter()
            .flat_map(|(name, book)| enqueued(book, name))
            .flatten()
            .collect();
        let states = self.job_states(&ids).await?;
        Ok(books
            .into_iter()
            .filter_map(|(name, book)| {
                let outcomes = enqueued(&book, &name)
                    .into_iter()
                    .map(|id| id.and_then(|id| states.get(&id).copied()))
                    .collect();
                let upcoming = book.upcoming(&name, UPCOMING_SHOWN);
                let entry = book.get(&name)?;
                Some(ScheduleInfo {
                    spec: entry.spec.clone(),
                    state: entry.state.clone(),
                    upcoming,
                    outcomes,
                    name,
                })
            })
            .collect())
    }

    async fn info_of(
        &self,
        name: &ScheduleName,
        book: ScheduleBook,
    ) -> Result<ScheduleInfo, EngineError> {
        self.infos(vec![(name.clone(), book)])
            .await?
            .pop()
            .ok_or_else(|| EngineError::ScheduleNotFound(name.clone()))
    }

    /// Stores one fire's job in `tx` under a savepoint, making its queue
    /// if need be; a refusal (a full queue) comes back as `Err`, with `tx`
    /// still usable.
    async fn store_fire(
        &self,
        tx: &mut sqlx::PgConnection,
        queue: &QueueName,
        job: &NewJob,
    ) -> Result<Enqueued, EngineError> {
        let call = Keyed::new(self.ids().next_n(1), vec![job.clone()]);
        match self.store_call(tx, queue, &call, false).await? {
            Tried::Stored(mut stored) if !stored.is_empty() => Ok(stored.remove(0)),
            Tried::Full(full) => Err(full.into()),
            _ => Err(EngineError::QueueNotFound(queue.clone())),
        }
    }

    /// Fires one fire time of `firing` in `tx`, or skips it by the overlap
    /// rule. `Err` only when the database failed (the transaction is then
    /// given up, and the fire taken again).
    async fn fire_in(
        &self,
        tx: &mut sqlx::PgConnection,
        book: &ScheduleBook,
        firing: &Firing,
        fire_time: Millis,
        stored: &mut Vec<Stored>,
    ) -> Result<FireResult, EngineError> {
        if firing.spec.overlap == Overlap::SkipIfRunning
            && let Some(previous) = book.get(&firing.name).and_then(|e| e.state.last_job)
        {
            let code: Option<i16> = sqlx::query_scalar("SELECT state FROM jobq_jobs WHERE id = $1")
                .bind(rows::uuid(previous))
                .fetch_optional(&mut *tx)
                .await
                .map_err(error::store)?;
            if code.is_some_and(|c| matches!(c, state::READY | state::SCHEDULED | state::LEASED)) {
                return Ok(FireResult::StillRunning(previous));
            }
        }
        let job = firing.job(fire_time);
        match self.store_fire(tx, &firing.spec.queue, &job).await {
            Ok(enqueued) => {
                stored.push(Stored {
                    queue: firing.spec.queue.clone(),
                    job,
                    enqueued,
                    fire_time,
                });
                Ok(FireResult::Enqueued(enqueued.id))
            }
            Err(error @ EngineError::StoreUnavailable { .. }) => Err(error),
            Err(error) => Ok(crate::engine::fire_failed(firing, &error)),
        }
    }

    /// After a commit: wakes workers for the jobs fires stored, counts
    /// them, and reports how late each fire was.
    fn announce(&self, stored: Vec<Stored>) {
        let now = self.wall_now();
        for fire in stored {
            self.stored(&fire.queue, &[fire.job], &[fire.enqueued]);
            let lag = u64::try_from(now.saturating_sub(fire.fire_time)).unwrap_or(0);
            self.shared
                .observer
                .schedule_fired(Duration::from_millis(lag));
        }
    }

    /// Fires the schedules due now, up to a transaction's worth; how many
    /// it took.
    pub(super) async fn fire_due(&self) -> Result<usize, EngineError> {
        let now = self.wall_now();
        let mut tx = self.pool().begin().await.map_err(error::store)?;
        let due: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT name, record FROM jobq_schedules WHERE due_at <= $1
             ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(FIRES_PER_TRANSACTION)
        .fetch_all(&mut *tx)
        .await
        .map_err(error::store)?;
        let mut stored = Vec::new();
        for (row, record) in &due {
            let (name, mut book) = match book_of(record) {
                Ok(read) => read,
                Err(error) => {
                    // One unreadable row (written by a newer jobq?) must
                    // not hold up the others: it waits for a replica that
                    // can read it.
                    tracing::error!(schedule = %row, %error, "cannot fire a schedule this jobq cannot read");
                    continue;
                }
            };
            for firing in book.take_due(now, 1) {
                for &fire_time in &firing.fire_times {
                    let result = self
                        .fire_in(&mut tx, &book, &firing, fire_time, &mut stored)
                        .await?;
                    book.fired(&name, firing.generation, fire_time, result, now);
                }
            }
            self.write_schedule(&mut tx, &name, &book).await?;
        }
        tx.commit().await.map_err(error::store)?;
        self.announce(stored);
        Ok(due.len())
    }

    /// When the earliest schedule is due, if any is.
    async fn next_schedule_due(&self) -> Result<Option<Millis>, EngineError> {
        sqlx::query_scalar("SELECT min(due_at) FROM jobq_schedules")
            .fetch_one(self.pool())
            .await
            .map_err(error::store)
    }
}

/// Fires schedules as they come due, until the engine shuts down.
pub(super) async fn run(engine: PgEngine) {
    let shared = &engine.shared;
    loop {
        let mut changed = std::pin::pin!(shared.schedules_changed.notified());
        changed.as_mut().enable();
        let sleep = match engine.fire_due().await {
            Ok(taken) if taken > 0 => continue,
            Ok(_) => match engine.next_schedule_due().await {
                Ok(Some(at)) => {
                    Duration::from_millis(u64::try_from(at - engine.wall_now()).unwrap_or(0))
                        .min(LONGEST_SLEEP)
                }
                Ok(None) => LONGEST_SLEEP,
                Err(error) => {
                    tracing::debug!(%error, "could not look for due schedules; trying again");
                    LONGEST_SLEEP
                }
            },
            Err(error) => {
                tracing::warn!(%error, "could not fire due schedules; trying again");
                LONGEST_SLEEP
            }
        };
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = &mut changed => {}
            () = tokio::time::sleep(sleep) => {}
        }
    }
}

#[async_trait]
impl Schedules for PgEngine {
    async fn set_schedule(
        &self,
        name: ScheduleName,
        spec: ScheduleSpec,
    ) -> Result<(ScheduleInfo, Upserted), EngineError> {
        let now = self.wall_now();
        let mut tx = self.pool().begin().await.map_err(error::store)?;
        let existing = self.schedule_for_update(&mut tx, &name).await?;
        let created = existing.is_none();
        if created {
            // New schedules are counted one at a time, so two replicas
            // creating at once cannot both take the last place.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SCHEDULE_COUNT_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(error::store)?;
            let held: i64 = sqlx::query_scalar("SELECT count(*) FROM jobq_schedules")
                .fetch_one(&mut *tx)
                .await
                .map_err(error::store)?;
            let limit = self.shared.config.max_schedules;
            if rows::count(held) >= limit {
                return Err(EngineError::TooManySchedules {
                    schedule: name,
                    limit,
                });
            }
        }
        let mut book = existing.unwrap_or_default();
        let upserted = book.upsert(name.clone(), spec, now);
        let (record, due) = columns(&book, &name);
        if created {
            // Two replicas creating one schedule at once: the second waits
            // on the first's row, then finds it there and changes nothing.
            let inserted = sqlx::query(
                "INSERT INTO jobq_schedules (name, record, due_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name.as_str())
            .bind(record)
            .bind(due)
            .execute(&mut *tx)
            .await
            .map_err(error::store)?;
            if inserted.rows_affected() == 0 {
                tx.rollback().await.map_err(error::store)?;
                let spec = book_spec(&book, &name)?;
                return Box::pin(self.set_schedule(name, spec)).await;
            }
        } else if upserted != Upserted::Unchanged {
            self.write_schedule(&mut tx, &name, &book).await?;
        }
        tx.commit().await.map_err(error::store)?;
        match upserted {
            Upserted::Created => tracing::info!(schedule = %name, "schedule created"),
            Upserted::Updated => tracing::info!(schedule = %name, "schedule updated"),
            Upserted::Unchanged => {}
        }
        self.shared.schedules_changed.notify_one();
        Ok((self.info_of(&name, book).await?, upserted))
    }

    async fn schedule_info(&self, name: &ScheduleName) -> Result<ScheduleInfo, EngineError> {
        let record: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT record FROM jobq_schedules WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(self.pool())
                .await
                .map_err(error::store)?;
        let record = record.ok_or_else(|| EngineError::ScheduleNotFound(name.clone()))?;
        let (_, book) = book_of(&record)?;
        self.info_of(name, book).await
    }

    async fn list_schedules(
        &self,
        after: Option<&ScheduleName>,
        limit: usize,
    ) -> Result<Vec<ScheduleInfo>, EngineError> {
        let records: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT record FROM jobq_schedules WHERE ($1::text IS NULL OR name > $1)
             ORDER BY name LIMIT $2",
        )
        .bind(after.map(ScheduleName::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(error::store)?;
        let books = records
            .iter()
            .map(|r| book_of(r))
            .collect::<Result<Vec<_>, _>>()?;
        self.infos(books).await
    }

    async fn delete_schedule(&self, name: &ScheduleName) -> Result<(), EngineError> {
        let deleted = sqlx::query("DELETE FROM jobq_schedules WHERE name = $1")
            .bind(name.as_str())
            .execute(self.pool())
            .await
            .map_err(error::store)?;
        if deleted.rows_affected() == 0 {
            return Err(EngineError::ScheduleNotFound(name.clone()));
        }
        tracing::info!(schedule = %name, "schedule deleted");
        self.shared.schedules_changed.notify_one();
        Ok(())
    }

    async fn set_schedule_paused(
        &self,
        name: &ScheduleName,
        paused: bool,
    ) -> Result<ScheduleInfo, EngineError> {
        let now = self.wall_now();
        let mut tx = self.pool().begin().await.map_err(error::store)?;
        let mut book = self.locked_schedule(&mut tx, name).await?;
        if book.set_paused(name, paused, now) == Some(true) {
            self.write_schedule(&mut tx, name, &book).await?;
        }
        tx.commit().await.map_err(error::store)?;
        self.shared.schedules_changed.notify_one();
        self.info_of(name, book).await
    }

    async fn trigger_schedule(&self, name: &ScheduleName) -> Result<Enqueued, EngineError> {
        let now = self.wall_now();
        let mut tx = self.pool().begin().await.map_err(error::store)?;
        let mut book = self.locked_schedule(&mut tx, name).await?;
        let firing = book
            .trigger(name, now)
            .ok_or_else(|| EngineError::ScheduleNotFound(name.clone()))?;
        let fire_time = now;
        let job = firing.job(fire_time);
        let stored = self.store_fire(&mut tx, &firing.spec.queue, &job).await;
        let result = match &stored {
            Ok(enqueued) => FireResult::Enqueued(enqueued.id),
            Err(error @ EngineError::StoreUnavailable { .. }) => return Err(error.clone()),
            Err(error) => FireResult::Failed(error.to_string()),
        };
        book.fired(name, firing.generation, fire_time, result, now);
        self.write_schedule(&mut tx, name, &book).await?;
        tx.commit().await.map_err(error::store)?;
        if let Ok(enqueued) = &stored {
            self.stored(&firing.spec.queue, &[job], &[*enqueued]);
        }
        stored
    }

    async fn schedule_figures(&self) -> Result<Vec<ScheduleFigures>, EngineError> {
        let now = self.wall_now();
        let records: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT record FROM jobq_schedules ORDER BY name")
                .fetch_all(self.pool())
                .await
                .map_err(error::store)?;
        let mut figures = Vec::with_capacity(records.len());
        for record in &records {
            let (name, book) = book_of(record)?;
            let Some(entry) = book.get(&name) else {
                continue;
            };
            figures.push(ScheduleFigures {
                fired: entry.state.fired,
                skipped: entry.state.skipped,
                failed: entry.state.failed,
                until_next: book
                    .due_at(&name)
                    .map(|due| Duration::from_millis(u64::try_from(due - now).unwrap_or(0))),
                name,
            });
        }
        Ok(figures)
    }
}

/// The settings `book` holds for `name`.
fn book_spec(book: &ScheduleBook, name: &ScheduleName) -> Result<ScheduleSpec, EngineError> {
    book.get(name)
        .map(|entry| (*entry.spec).clone())
        .ok_or_else(|| EngineError::ScheduleNotFound(name.clone()))
}
