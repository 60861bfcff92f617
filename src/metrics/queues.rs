//! Each queue's counts and totals, encoded from what the last scrape read
//! from the engine.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::QueueLabel;
use crate::queue::{QueueCounts, QueueStats};

/// One label's queue figures, as the last scrape read them: one queue's,
/// or the sum of the queues past `--metrics-max-queues`.
#[derive(Clone, Debug, Default)]
pub(super) struct QueueFigures {
    pub(super) label: String,
    pub(super) stats: QueueStats,
    pub(super) counts: QueueCounts,
    pub(super) workers: usize,
    /// Seconds the longest-waiting ready job has waited (the longest of
    /// them, summed over queues).
    pub(super) oldest_ready_age: f64,
}

impl QueueFigures {
    /// Adds another queue's figures in.
    pub(super) fn add(&mut self, other: &QueueFigures) {
        let (s, o) = (&mut self.stats, &other.stats);
        s.enqueued += o.enqueued;
        s.leased += o.leased;
        s.acked += o.acked;
        s.nacked += o.nacked;
        s.expired += o.expired;
        s.dead_lettered += o.dead_lettered;
        let (c, o) = (&mut self.counts, &other.counts);
        c.ready += o.ready;
        c.scheduled += o.scheduled;
        c.leased += o.leased;
        c.dead += o.dead;
        self.workers += other.workers;
        self.oldest_ready_age = self.oldest_ready_age.max(other.oldest_ready_age);
    }
}

/// A per-queue metric: name, help, and how to read it from `T`.
pub(super) type Described<T, V> = (&'static str, &'static str, fn(&T) -> V);

// A std mutex: held only to swap or read one scrape's figures, never across
// an `.await`. A panic while it was held leaves figures that are at worst
// one scrape old.
pub(super) fn lock(
    queues: &Mutex<Vec<QueueFigures>>,
) -> std::sync::MutexGuard<'_, Vec<QueueFigures>> {
    queues.lock().unwrap_or_else(|e| e.into_inner())
}

/// Encodes each queue's counts and totals as the scrape read them.
#[derive(Debug)]
pub(super) struct QueueCollector {
    pub(super) queues: Arc<Mutex<Vec<QueueFigures>>>,
}

impl Collector for QueueCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let queues = lock(&self.queues);
        let counters: [Described<QueueStats, u64>; 6] = [
            ("jobs_enqueued", "Jobs accepted", |s| s.enqueued),
            ("jobs_leased", "Deliveries made", |s| s.leased),
            ("jobs_acked", "Jobs acked", |s| s.acked),
            ("jobs_nacked", "Nacks accepted", |s| s.nacked),
            (
                "jobs_expired",
                "Leases that ran out or whose worker stream closed",
                |s| s.expired,
            ),
            (
                "jobs_dead_lettered",
                "Jobs moved to the dead-letter set",
                |s| s.dead_lettered,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for info in queues.iter() {
                ConstCounter::new(value(&info.stats))
                    .encode(family.encode_family(&label(info))?)?;
            }
        }
        let gauges: [Described<QueueCounts, usize>; 4] = [
            ("queue_ready_jobs", "Jobs leasable now", |c| c.ready),
            (
                "queue_scheduled_jobs",
                "Jobs waiting for a delay or backoff",
                |c| c.scheduled,
            ),
            ("queue_leased_jobs", "Jobs held by workers", |c| c.leased),
            ("queue_dead_jobs", "Jobs in the dead-letter set", |c| c.dead),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for info in queues.iter() {
                ConstGauge::new(value(&info.counts) as i64)
                    .encode(family.encode_family(&label(info))?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "worker_streams",
            "Open worker lease streams",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for info in queues.iter() {
            ConstGauge::new(info.workers as i64).encode(family.encode_family(&label(info))?)?;
        }
        // 0 for a queue with nothing ready, so an alert on it needs no
        // special case for the empty queue.
        let mut family = encoder.encode_descriptor(
            "queue_oldest_ready_age_seconds",
            "How long the longest-waiting ready job has waited (0 with none ready)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for info in queues.iter() {
            ConstGauge::new(info.oldest_ready_age).encode(family.encode_family(&label(info))?)?;
        }
        Ok(())
    }
}

fn label(info: &QueueFigures) -> QueueLabel {
    QueueLabel {
        queue: info.label.clone(),
    }
}
