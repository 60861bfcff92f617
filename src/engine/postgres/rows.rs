//! Conversions between the tables' columns and the queue core's types.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use tokio::time::Instant;
use uuid::Uuid;

use crate::queue::{
    Failure, Job, JobId, JobState, JobStatus, LeaseShown, Metadata, QueueConfig, RetryPolicy,
};

/// A job id as the tables hold it (the ULID's 128 bits).
pub(super) fn uuid(id: JobId) -> Uuid {
    Uuid::from_u128(id.to_u128())
}

/// A job id from the tables.
pub(super) fn job_id(id: Uuid) -> JobId {
    JobId::from_u128(id.as_u128())
}

/// Whole milliseconds, as the tables keep durations (saturating).
pub(super) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A count from the tables (never negative).
pub(super) fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// Maps the database's clock onto this process's monotonic one, from one
/// reading of the database's `now()` taken with the statement.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    db_now: DateTime<Utc>,
    local: Instant,
}

impl Clock {
    /// The database said `now()` was `db_now` just now.
    pub(super) fn new(db_now: DateTime<Utc>) -> Self {
        Self::sent_at(Instant::now(), db_now)
    }

    /// The database said `now()` was `db_now` of a statement sent at
    /// `sent`: its `now()` came after `sent`, so times mapped from it are
    /// never later than they are, by the statement's round trip at most.
    /// Lease deadlines are mapped so: a worker must never be told its
    /// lease lasts longer than the database will keep it.
    pub(super) fn sent_at(sent: Instant, db_now: DateTime<Utc>) -> Self {
        Self {
            db_now,
            local: sent,
        }
    }

    /// A database time on the monotonic clock.
    pub(super) fn instant(&self, at: DateTime<Utc>) -> Instant {
        match (at - self.db_now).to_std() {
            Ok(ahead) => self.local + ahead,
            Err(_) => {
                let behind = (self.db_now - at).to_std().unwrap_or_default();
                self.local.checked_sub(behind).unwrap_or(self.local)
            }
        }
    }
}

/// A database time on the wall clock.
pub(super) fn system_time(at: DateTime<Utc>) -> SystemTime {
    SystemTime::from(at)
}

/// The state codes of `jobq_jobs.state`.
pub(super) mod state {
    pub(in crate::engine::postgres) const READY: i16 = 1;
    pub(in crate::engine::postgres) const SCHEDULED: i16 = 2;
    pub(in crate::engine::postgres) const LEASED: i16 = 3;
    pub(in crate::engine::postgres) const DEAD: i16 = 4;
    pub(in crate::engine::postgres) const ACKED: i16 = 5;
    pub(in crate::engine::postgres) const CANCELLED: i16 = 6;
}

/// A state's code.
pub(super) fn state_code(state: JobState) -> i16 {
    match state {
        JobState::Ready => state::READY,
        JobState::Scheduled => state::SCHEDULED,
        JobState::Leased => state::LEASED,
        JobState::Dead => state::DEAD,
        JobState::Acked => state::ACKED,
        JobState::Cancelled => state::CANCELLED,
    }
}

/// The state a code names.
pub(super) fn job_state(code: i16) -> JobState {
    match code {
        state::READY => JobState::Ready,
        state::SCHEDULED => JobState::Scheduled,
        state::LEASED => JobState::Leased,
        state::DEAD => JobState::Dead,
        state::ACKED => JobState::Acked,
        _ => JobState::Cancelled,
    }
}

/// The columns [`queue_config`] reads, for a SELECT list.
pub(super) const QUEUE_COLUMNS: &str = "capacity, lease_ms, max_attempts, backoff_base_ms, backoff_cap_ms, backoff_jitter, idempotency_window_ms, finished_retention_ms";

/// A queue's settings from a row holding [`QUEUE_COLUMNS`]; what the
/// tables do not keep comes from `defaults`.
pub(super) fn queue_config(
    row: &PgRow,
    defaults: &QueueConfig,
) -> Result<QueueConfig, sqlx::Error> {
    Ok(QueueConfig {
        capacity: count(row.try_get("capacity")?),
        lease_duration: duration(row.try_get("lease_ms")?),
        max_attempts: u32::try_from(row.try_get::<i32, _>("max_attempts")?).unwrap_or(1),
        retry: RetryPolicy {
            base: duration(row.try_get("backoff_base_ms")?),
            cap: duration(row.try_get("backoff_cap_ms")?),
            jitter: row.try_get("backoff_jitter")?,
        },
        idempotency_window: duration(row.try_get("idempotency_window_ms")?),
        finished_retention: duration(row.try_get("finished_retention_ms")?),
        ..defaults.clone()
    })
}

/// Metadata as the tables hold it: a JSON array of `[key, value]` pairs.
pub(super) fn metadata_json(metadata: &[(String, String)]) -> String {
    serde_json::to_string(metadata).unwrap_or_else(|_| "[]".to_string())
}

/// Metadata from the tables.
pub(super) fn metadata(json: Option<serde_json::Value>) -> Metadata {
    json.and_then(|v| serde_json::from_value::<Vec<(String, String)>>(v).ok())
        .unwrap_or_default()
        .into()
}

/// The columns [`job`] reads, for a SELECT list over `jobq_jobs j` left
/// joined to `jobq_payloads p`.
pub(super) const JOB_COLUMNS: &str = "j.id, j.priority, j.max_attempts, j.enqueued_at, j.size, j.payload_bytes, p.payload, p.metadata";

/// A job from a row holding [`JOB_COLUMNS`] (payload and metadata empty
/// once the job has finished).
pub(super) fn job(row: &PgRow) -> Result<Job, sqlx::Error> {
    let payload: Option<Vec<u8>> = row.try_get("payload")?;
    Ok(Job {
        id: job_id(row.try_get("id")?),
        payload: payload.map(Bytes::from).unwrap_or_default(),
        metadata: metadata(row.try_get("metadata")?),
        priority: row.try_get("priority")?,
        max_attempts: u32::try_from(row.try_get::<i32, _>("max_attempts")?).unwrap_or(1),
        enqueued_at: system_time(row.try_get("enqueued_at")?),
        size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
    })
}

/// The columns [`status`] reads beside [`JOB_COLUMNS`].
pub(super) const STATUS_COLUMNS: &str = "j.queue, j.state, j.attempts, j.last_error, j.finished_at, j.due_at, j.leased_at, j.holder_replica, j.holder, now() AS db_now";

/// A job's status from a row holding [`JOB_COLUMNS`] and
/// [`STATUS_COLUMNS`], with its failure history.
pub(super) fn status(row: &PgRow, history: Vec<Failure>) -> Result<JobStatus, sqlx::Error> {
    let clock = Clock::new(row.try_get("db_now")?);
    let finished: Option<DateTime<Utc>> = row.try_get("finished_at")?;
    let state = job_state(row.try_get("state")?);
    let lease = if state == JobState::Leased {
        let since: Option<DateTime<Utc>> = row.try_get("leased_at")?;
        let replica: Option<Uuid> = row.try_get("holder_replica")?;
        let holder: Option<i64> = row.try_get("holder")?;
        Some(LeaseShown {
            since: clock.instant(since.unwrap_or(clock.db_now)),
            deadline: clock.instant(row.try_get("due_at")?),
            holder: replica
                .zip(holder)
                .map(|(replica, stream)| format!("worker stream {stream} of replica {replica}")),
        })
    } else {
        None
    };
    Ok(JobStatus {
        job: Arc::new(job(row)?),
        payload_bytes: u64::try_from(row.try_get::<i64, _>("payload_bytes")?).unwrap_or(0),
        state,
        attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
        last_error: row.try_get("last_error")?,
        history,
        finished_at: finished.map(|at| clock.instant(at)),
        lease,
    })
}

/// One failed attempt from a row of `jobq_failures` with `db_now`.
pub(super) fn failure(row: &PgRow) -> Result<Failure, sqlx::Error> {
    let clock = Clock::new(row.try_get("db_now")?);
    Ok(Failure {
        attempt: u32::try_from(row.try_get::<i32, _>("attempt")?).unwrap_or(0),
        error: row.try_get("error")?,
        at: clock.instant(row.try_get("at")?),
    })
}
