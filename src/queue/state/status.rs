//! A job's state as inspection reports it, and its failure history.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Entry, Failure, FailureMemory, Failures, MAX_HISTORY, Place};
use crate::queue::cost::{FAILURE_OVERHEAD_BYTES, HISTORY_OVERHEAD_BYTES};
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
    /// Who holds it and until when, for a leased job.
    pub lease: Option<LeaseShown>,
}

/// A leased job's lease, as inspection reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseShown {
    /// When the delivery was made.
    pub since: Instant,
    /// When the lease runs out unless extended.
    pub deadline: Instant,
    /// The worker stream holding it, named for people (`None`: a unary
    /// `Lease` call took it).
    pub holder: Option<String>,
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
    let (last_error, history) = shown_history(entry.failures.as_deref());
    JobStatus {
        job: Arc::clone(&entry.job),
        payload_bytes: entry.job.payload.len() as u64,
        state: state_of(entry),
        attempts: entry.attempts,
        last_error,
        history,
        finished_at: None,
        lease: entry.place.lease().map(|lease| LeaseShown {
            since: lease.since,
            deadline: lease.expiry.0,
            holder: lease.holder.map(|h| format!("worker stream {}", h.0)),
        }),
    }
}

/// What a failed attempt's error reads when its text was not kept because
/// the memory budget was spent when it failed.
pub const TEXT_NOT_KEPT: &str = "(error text not kept: the memory budget was spent)";

/// What a failure history counts against the memory budget.
pub(super) fn history_bytes(failures: &Failures) -> u64 {
    let entries: u64 = failures
        .history
        .iter()
        .map(|f| f.error.len() as u64 + FAILURE_OVERHEAD_BYTES)
        .sum();
    HISTORY_OVERHEAD_BYTES + failures.last_error.len() as u64 + entries
}

/// Adds a failed attempt to a job's history (at most [`MAX_HISTORY`], the
/// oldest dropped), keeping `memory` (the queue's count of history bytes
/// and the budget's room left) up to date. When the failure does not fit
/// in the room, it is recorded without its text, in place of the
/// oldest entry, so the history does not grow; and a job with no history
/// yet records none (its attempt still counts). Returns a copy of the
/// failure as recorded when `report` asks for one.
pub(super) fn record_failure(
    entry: &mut Entry,
    now: Instant,
    error: String,
    memory: &mut FailureMemory,
    report: bool,
) -> Option<Failure> {
    let fits = {
        let added = 2 * error.len() as u64
            + FAILURE_OVERHEAD_BYTES
            + if entry.failures.is_none() {
                HISTORY_OVERHEAD_BYTES
            } else {
                0
            };
        added <= memory.room
    };
    let error = if fits { error } else { String::new() };
    let failure = Failure {
        attempt: entry.attempts,
        error,
        at: now,
    };
    let copy = report.then(|| failure.clone());
    if !fits && entry.failures.is_none() {
        return copy;
    }
    let failures = entry.failures.get_or_insert_with(|| {
        Box::new(Failures {
            last_error: String::new(),
            history: Vec::new(),
            bytes: 0,
        })
    });
    let before = failures.bytes;
    if failures.history.len() >= MAX_HISTORY || (!fits && !failures.history.is_empty()) {
        failures.history.remove(0);
    }
    failures.last_error.clone_from(&failure.error);
    failures.history.push(failure);
    failures.bytes = history_bytes(failures);
    memory.held = memory.held - before + failures.bytes;
    memory.room = memory
        .room
        .saturating_sub(failures.bytes.saturating_sub(before));
    copy
}

/// A failure as inspection shows it: its text, or [`TEXT_NOT_KEPT`].
fn shown(failure: &Failure) -> Failure {
    Failure {
        error: shown_text(&failure.error),
        ..failure.clone()
    }
}

fn shown_text(error: &str) -> String {
    if error.is_empty() {
        TEXT_NOT_KEPT.to_string()
    } else {
        error.to_string()
    }
}

/// A history's last error and entries as inspection shows them.
pub(super) fn shown_history(failures: Option<&Failures>) -> (Option<String>, Vec<Failure>) {
    match failures {
        None => (None, Vec::new()),
        Some(f) => (
            Some(shown_text(&f.last_error)),
            f.history.iter().map(shown).collect(),
        ),
    }
}
