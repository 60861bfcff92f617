//! A job's state as inspection reports it, and its failure history.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Entry, Failure, Failures, MAX_HISTORY, Place};
use crate::queue::{Job, JobId};

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Leasable now.
    Ready,
    /// Waiting for a delay or backoff.
    Scheduled,
    /// Held by a worker.
    Leased,
    /// In the dead-letter set.
    Dead,
    /// Acked: done and gone (reported for the retention window).
    Acked,
    /// Cancelled by an operator (reported for the retention window).
    Cancelled,
}

/// A job and where it is.
#[derive(Clone, Debug)]
pub struct JobStatus {
    /// The job. Its payload is empty once it has left the queue.
    pub job: Arc<Job>,
    /// The payload's size in bytes, kept when the payload is not.
    pub payload_bytes: u64,
    /// Its state.
    pub state: JobState,
    /// Deliveries so far.
    pub attempts: u32,
    /// The last failure: a nack's reason or how the lease ended.
    pub last_error: Option<String>,
    /// The latest failed attempts, oldest first.
    pub history: Vec<Failure>,
    /// When it left the queue, for acked and cancelled jobs.
    pub finished_at: Option<Instant>,
}

/// What became of one job of an enqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id: the new job's, or for a duplicate the first job's.
    pub id: JobId,
    /// Whether the idempotency key had been seen within the window, so
    /// nothing was stored.
    pub duplicate: bool,
}

/// The state a stored job is in.
pub(super) fn state_of(entry: &Entry) -> JobState {
    match &entry.place {
        Place::Ready(_) => JobState::Ready,
        Place::Scheduled(_) => JobState::Scheduled,
        Place::Leased(_) => JobState::Leased,
        Place::Dead => JobState::Dead,
    }
}

pub(super) fn status_of(entry: &Entry) -> JobStatus {
    JobStatus {
        job: Arc::clone(&entry.job),
        payload_bytes: entry.job.payload.len() as u64,
        state: state_of(entry),
        attempts: entry.attempts,
        last_error: entry.failures.as_ref().map(|f| f.last_error.clone()),
        history: entry
            .failures
            .as_ref()
            .map(|f| f.history.clone())
            .unwrap_or_default(),
        finished_at: None,
    }
}

pub(super) fn record_failure(entry: &mut Entry, now: Instant, error: String) {
    let failure = Failure {
        attempt: entry.attempts,
        error: error.clone(),
        at: now,
    };
    let failures = entry.failures.get_or_insert_with(|| {
        Box::new(Failures {
            last_error: String::new(),
            history: Vec::new(),
        })
    });
    if failures.history.len() >= MAX_HISTORY {
        failures.history.remove(0);
    }
    failures.history.push(failure);
    failures.last_error = error;
}
