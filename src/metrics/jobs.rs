//! How long jobs wait and run, as the engine reports it through its
//! [`JobObserver`] seam: one pair of histograms per queue, looked up once
//! when the queue is created.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::{HistogramFamily, QueueLabel, queue_label};
use crate::engine::{JobObserver, QueueObserver};
use crate::queue::QueueName;

fn wait_histogram() -> Histogram {
    // 0.5 ms to about 8 minutes.
    Histogram::new(exponential_buckets(0.0005, 2.5, 16))
}

/// How long jobs wait and run, as the engine reports it: per queue for the
/// first `limit` queues (a deleted one frees its place), and together under
/// [`OTHER_QUEUES`] for the rest, so that the scrape stays bounded however
/// many queues there are.
#[derive(Debug)]
pub(super) struct JobTimings {
    until_first_lease: HistogramFamily<QueueLabel>,
    lease_to_ack: HistogramFamily<QueueLabel>,
    /// From a schedule's fire time to its job's enqueue, over every
    /// schedule.
    fire_lag: Histogram,
    limit: usize,
    // A std mutex: held to look up or change the set, never across an
    // `.await`.
    named: Mutex<HashSet<QueueName>>,
}

/// The label of the figures of queues past `--metrics-max-queues`: not a
/// valid queue name, so it never stands for one queue.
pub(super) const OTHER_QUEUES: &str = "(other)";

impl JobTimings {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            until_first_lease: Family::new_with_constructor(wait_histogram),
            lease_to_ack: Family::new_with_constructor(wait_histogram),
            fire_lag: wait_histogram(),
            limit,
            named: Mutex::default(),
        }
    }

    /// Whether `queue`'s figures are exported under its own name.
    pub(super) fn is_named(&self, queue: &QueueName) -> bool {
        self.lock_named().contains(queue)
    }

    fn lock_named(&self) -> std::sync::MutexGuard<'_, HashSet<QueueName>> {
        self.named.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl JobTimings {
    /// Adds the job-time histograms to `registry`.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "job_wait",
            "Time from enqueue to a job's first delivery",
            Unit::Seconds,
            self.until_first_lease.clone(),
        );
        registry.register_with_unit(
            "job_processing",
            "Time from a job's delivery to its ack",
            Unit::Seconds,
            self.lease_to_ack.clone(),
        );
        registry.register_with_unit(
            "schedule_fire_lag",
            "Time from a schedule's fire time to its job's enqueue (jitter included)",
            Unit::Seconds,
            self.fire_lag.clone(),
        );
    }
}

impl JobObserver for JobTimings {
    /// The histograms of one queue, looked up once so that recording a
    /// job's times needs no label lookup or allocation.
    fn queue_created(&self, queue: &QueueName) -> Arc<dyn QueueObserver> {
        let label = {
            let mut named = self.lock_named();
            if named.len() < self.limit || named.contains(queue) {
                named.insert(queue.clone());
                queue_label(queue)
            } else {
                QueueLabel {
                    queue: OTHER_QUEUES.to_string(),
                }
            }
        };
        Arc::new(QueueTimings {
            until_first_lease: self.until_first_lease.get_or_create(&label).clone(),
            lease_to_ack: self.lease_to_ack.get_or_create(&label).clone(),
        })
    }

    fn queue_deleted(&self, queue: &QueueName) {
        if !self.lock_named().remove(queue) {
            return;
        }
        let label = queue_label(queue);
        self.until_first_lease.remove(&label);
        self.lease_to_ack.remove(&label);
    }

    fn schedule_fired(&self, lag: Duration) {
        self.fire_lag.observe(lag.as_secs_f64());
    }
}

/// One queue's job-time histograms (handles into [`JobTimings`]).
#[derive(Debug, Clone)]
struct QueueTimings {
    until_first_lease: Histogram,
    lease_to_ack: Histogram,
}

impl QueueObserver for QueueTimings {
    fn first_lease(&self, waited: Duration) {
        self.until_first_lease.observe(waited.as_secs_f64());
    }

    fn acked(&self, held: Duration) {
        self.lease_to_ack.observe(held.as_secs_f64());
    }
}
