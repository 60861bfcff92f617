//! How long jobs wait and run, as the engine reports it through its
//! [`JobObserver`] seam: one pair of histograms per queue, looked up once
//! when the queue is created.

use std::sync::Arc;
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

/// How long jobs wait and run, as the engine reports it.
#[derive(Debug)]
pub(super) struct JobTimings {
    until_first_lease: HistogramFamily<QueueLabel>,
    lease_to_ack: HistogramFamily<QueueLabel>,
}

impl Default for JobTimings {
    fn default() -> Self {
        Self {
            until_first_lease: Family::new_with_constructor(wait_histogram),
            lease_to_ack: Family::new_with_constructor(wait_histogram),
        }
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
    }
}

impl JobObserver for JobTimings {
    /// The histograms of one queue, looked up once so that recording a
    /// job's times needs no label lookup or allocation.
    fn queue_created(&self, queue: &QueueName) -> Arc<dyn QueueObserver> {
        let label = queue_label(queue);
        Arc::new(QueueTimings {
            until_first_lease: self.until_first_lease.get_or_create(&label).clone(),
            lease_to_ack: self.lease_to_ack.get_or_create(&label).clone(),
        })
    }

    fn queue_deleted(&self, queue: &QueueName) {
        let label = queue_label(queue);
        self.until_first_lease.remove(&label);
        self.lease_to_ack.remove(&label);
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
