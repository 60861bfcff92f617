//! The journal's figures, when the server runs on a data dir: how long
//! syncs take (a histogram recorded as they happen), and what has been
//! written, synced, kept on disk and copied forward (read from the journal
//! at scrape time).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::engine::journal::{Journal, Progress, SyncObserver};

/// Sync times, as the journal's syncer reports them.
#[derive(Debug)]
pub(super) struct SyncTimes(Histogram);

impl Default for SyncTimes {
    fn default() -> Self {
        // 20 µs to about 10 s.
        Self(Histogram::new(exponential_buckets(0.00002, 2.0, 20)))
    }
}

impl SyncObserver for SyncTimes {
    fn synced(&self, took: Duration) {
        self.0.observe(took.as_secs_f64());
    }
}

/// The journal the server writes to, once it has one.
#[derive(Debug, Default)]
pub(super) struct JournalFigures {
    // A std mutex: held to read or set the handle, never across an
    // `.await`.
    journal: Mutex<Option<Journal>>,
    recovery_seconds: Mutex<Option<f64>>,
}

impl JournalFigures {
    pub(super) fn watch(&self, journal: Journal, recovery: Duration) {
        *lock(&self.journal) = Some(journal);
        *lock(&self.recovery_seconds) = Some(recovery.as_secs_f64());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds the journal's metrics to `registry`.
pub(super) fn register(
    registry: &mut Registry,
    syncs: &Arc<SyncTimes>,
    figures: &Arc<JournalFigures>,
) {
    registry.register_with_unit(
        "journal_fsync",
        "Time each fdatasync of the journal took",
        Unit::Seconds,
        syncs.0.clone(),
    );
    registry.register_collector(Box::new(JournalCollector(Arc::clone(figures))));
}

/// A journal counter: name, help, and how to read it.
type Described = (&'static str, &'static str, fn(&Progress) -> u64);

#[derive(Debug)]
struct JournalCollector(Arc<JournalFigures>);

impl Collector for JournalCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(journal) = lock(&self.0.journal).clone() else {
            return Ok(());
        };
        let progress = journal.progress();
        let counters: [Described; 5] = [
            (
                "journal_writes",
                "Writes to the journal, each one or more records",
                |p| p.writes,
            ),
            (
                "journal_syncs",
                "fdatasync calls, each covering every write before it",
                |p| p.syncs,
            ),
            (
                "journal_records",
                "Records written (divide by writes for records per write)",
                |p| p.records,
            ),
            (
                "journal_written_bytes",
                "Bytes written to the journal",
                |p| p.bytes,
            ),
            (
                "journal_compaction_copied_bytes",
                "Bytes of live jobs and idempotency keys copied forward so old segments could be deleted",
                |p| p.copied_bytes,
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value(&progress)).encode(metric)?;
        }
        let gauges: [(&str, &str, i64); 2] = [
            (
                "journal_disk_bytes",
                "Bytes of the journal's segment files, as compaction last counted",
                i64::try_from(progress.bytes_on_disk).unwrap_or(i64::MAX),
            ),
            (
                "journal_segments",
                "Segment files of the journal, as compaction last counted",
                i64::try_from(progress.segments_on_disk).unwrap_or(i64::MAX),
            ),
        ];
        for (name, help, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        if let Some(seconds) = *lock(&self.0.recovery_seconds) {
            let metric = encoder.encode_descriptor(
                "journal_recovery",
                "How long reading the journal back took at start-up",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            ConstGauge::new(seconds).encode(metric)?;
        }
        Ok(())
    }
}
