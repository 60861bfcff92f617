//! Core ⇄ protobuf conversions for both services, JobQueue and Admin: how
//! the engine's answers look on the wire.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::pb;
use crate::engine::QueueInfo;
use crate::queue::{Delivery, Job, JobState, JobStatus, NackOutcome, QueueName};

/// The wall-clock time of a monotonic instant, for clients.
pub(super) fn timestamp(at: Instant) -> prost_types::Timestamp {
    let now = Instant::now();
    let wall = if at >= now {
        SystemTime::now() + (at - now)
    } else {
        SystemTime::now() - (now - at)
    };
    wall.into()
}

/// A stored job as clients see it.
pub(super) fn job(queue: &QueueName, job: &Job) -> pb::Job {
    pb::Job {
        id: job.id.to_string(),
        queue: queue.to_string(),
        payload: job.payload.clone(),
        metadata: job
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        priority: job.priority,
        max_attempts: job.max_attempts,
        enqueue_time: Some(job.enqueued_at.into()),
    }
}

/// A delivery as a worker sees it.
pub(super) fn lease(queue: &QueueName, delivery: Delivery) -> pb::Lease {
    let mut leased = job(queue, &delivery.job);
    // Raised by deliveries dropped with their worker stream.
    leased.max_attempts = delivery.max_attempts;
    pb::Lease {
        job: Some(leased),
        lease_token: delivery.token.to_string(),
        attempt: delivery.attempt,
        lease_deadline: Some(timestamp(delivery.deadline)),
        lease_duration: prost_types::Duration::try_from(
            delivery
                .deadline
                .saturating_duration_since(tokio::time::Instant::now()),
        )
        .ok(),
    }
}

/// A nack's outcome as the worker sees it.
pub(super) fn nack_response(outcome: NackOutcome) -> pb::NackResponse {
    match outcome {
        NackOutcome::RetryAt(at) => pb::NackResponse {
            outcome: pb::NackOutcome::RetryScheduled.into(),
            retry_time: Some(timestamp(at)),
        },
        NackOutcome::DeadLettered => pb::NackResponse {
            outcome: pb::NackOutcome::DeadLettered.into(),
            retry_time: None,
        },
    }
}

/// A job's state, for clients.
pub(super) fn job_state_to_pb(state: JobState) -> pb::JobState {
    match state {
        JobState::Ready => pb::JobState::Ready,
        JobState::Scheduled => pb::JobState::Scheduled,
        JobState::Leased => pb::JobState::Leased,
        JobState::Dead => pb::JobState::Dead,
        JobState::Acked => pb::JobState::Acked,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

/// A job's state, attempts and failures, for operators.
pub(super) fn job_info(queue: &QueueName, status: JobStatus) -> pb::JobInfo {
    pb::JobInfo {
        job: Some(job(queue, &status.job)),
        state: job_state_to_pb(status.state).into(),
        attempts: status.attempts,
        last_error: status.last_error.unwrap_or_default(),
        failures: status
            .history
            .into_iter()
            .map(|f| pb::AttemptFailure {
                attempt: f.attempt,
                error: f.error,
                time: Some(timestamp(f.at)),
            })
            .collect(),
        finish_time: status.finished_at.map(timestamp),
        payload_bytes: status.payload_bytes,
    }
}

/// A queue's settings, counts and totals, for operators.
pub(super) fn queue_info(info: QueueInfo) -> pb::QueueInfo {
    let duration = |d: Duration| prost_types::Duration::try_from(d).ok();
    let config = &info.config;
    pb::QueueInfo {
        name: info.name.to_string(),
        settings: Some(pb::QueueSettings {
            capacity: u32::try_from(config.capacity).unwrap_or(u32::MAX),
            lease_duration: duration(config.lease_duration),
            max_attempts: config.max_attempts,
            backoff_base: duration(config.retry.base),
            backoff_cap: duration(config.retry.cap),
        }),
        paused: info.paused,
        counts: Some(pb::QueueCounts {
            ready: info.counts.ready as u64,
            scheduled: info.counts.scheduled as u64,
            leased: info.counts.leased as u64,
            dead: info.counts.dead as u64,
        }),
        totals: Some(pb::QueueTotals {
            enqueued: info.stats.enqueued,
            leased: info.stats.leased,
            acked: info.stats.acked,
            nacked: info.stats.nacked,
            expired: info.stats.expired,
            dead_lettered: info.stats.dead_lettered,
        }),
        oldest_ready_age: info.oldest_ready.map(|at| {
            duration(SystemTime::now().duration_since(at).unwrap_or_default()).unwrap_or_default()
        }),
    }
}

/// Cuts a page fetched one item long to `size`, returning the token of the
/// next page if there is one.
pub(super) fn next_token<T>(
    page: &mut Vec<T>,
    size: usize,
    token: impl Fn(&T) -> String,
) -> String {
    if page.len() <= size {
        return String::new();
    }
    page.truncate(size);
    page.last().map(token).unwrap_or_default()
}
