//! Prometheus metrics, served as text on their own HTTP port at `/metrics`.
//!
//! Per-queue job counters and gauges are read from the engine at scrape
//! time (one [`Operate::list_queues`](crate::engine::Operate::list_queues) call: the engine keeps its counts as
//! jobs move, so a scrape never walks jobs), so they are exact and cost
//! nothing between scrapes; schedules' figures likewise, from one
//! [`Schedules::schedule_figures`](crate::engine::Schedules::schedule_figures)
//! call. Job timings and schedules' fire lag reach the metrics through the
//! engine's [`JobObserver`] seam. Timings and RPC figures are
//! recorded as they happen. Labels are queue and schedule names and RPC
//! methods and codes only, never job ids, so their number stays bounded.

mod jobs;
mod journal;
mod queues;
mod rpc;
mod schedules;

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use rpc::RpcMetrics;
pub use schedules::NAMED_SCHEDULES;

use crate::engine::journal::{Journal, SyncObserver};
use crate::engine::{Engine, JobObserver, QueueInfo};
use crate::queue::QueueName;
use jobs::JobTimings;
use queues::{QueueCollector, QueueFigures};

/// A `queue` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// The queue's name.
    pub queue: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the server, ready to encode.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rpc: Arc<RpcMetrics>,
    timings: Arc<JobTimings>,
    syncs: Arc<journal::SyncTimes>,
    journal: Arc<journal::JournalFigures>,
    queues: Arc<Mutex<Vec<QueueFigures>>>,
    schedules: Arc<Mutex<Vec<schedules::ScheduleRow>>>,
    shutdown_jobs: Gauge,
    pending_request_bytes: Gauge,
}

/// Queues exported under their own name by default
/// (`--metrics-max-queues`).
pub const DEFAULT_MAX_NAMED_QUEUES: usize = 500;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, empty. The engine reports job timings to
    /// [`job_observer`](Self::job_observer); queue figures come with each
    /// [`scrape`](Self::scrape).
    pub fn new() -> Self {
        Self::with_named_queues(DEFAULT_MAX_NAMED_QUEUES)
    }

    /// As [`new`](Self::new), exporting per-queue figures under their own
    /// name for at most `named` queues (the first created; a deleted one
    /// frees its place), and those of the rest summed under the label
    /// `queue="(other)"`, so a scrape stays bounded however many queues
    /// there are.
    pub fn with_named_queues(named: usize) -> Self {
        let mut registry = Registry::with_prefix("jobq");
        let rpc = Arc::new(RpcMetrics::default());
        let timings = Arc::new(JobTimings::new(named));
        timings.register(&mut registry);
        rpc.register(&mut registry);
        let syncs = Arc::new(journal::SyncTimes::default());
        let journal = Arc::new(journal::JournalFigures::default());
        journal::register(&mut registry, &syncs, &journal);
        let queues = Arc::new(Mutex::new(Vec::new()));
        registry.register_collector(Box::new(QueueCollector {
            queues: Arc::clone(&queues),
        }));
        let schedules = Arc::new(Mutex::new(Vec::new()));
        registry.register_collector(Box::new(schedules::ScheduleCollector {
            rows: Arc::clone(&schedules),
        }));
        let shutdown_jobs = Gauge::default();
        registry.register(
            "shutdown_jobs_in_memory",
            "Jobs held in memory since shutdown began, dropped if still held at exit",
            shutdown_jobs.clone(),
        );
        let pending_request_bytes = Gauge::default();
        registry.register(
            "pending_request_bytes",
            "Bytes of request messages begun but not yet whole, over all connections",
            pending_request_bytes.clone(),
        );
        Self {
            registry,
            rpc,
            timings,
            syncs,
            journal,
            queues,
            schedules,
            shutdown_jobs,
            pending_request_bytes,
        }
    }

    /// What the journal tells how long its syncs take.
    pub fn sync_observer(&self) -> Arc<dyn SyncObserver> {
        Arc::clone(&self.syncs) as Arc<dyn SyncObserver>
    }

    /// Exports `journal`'s figures from now on, and how long its recovery
    /// took.
    pub fn watch_journal(&self, journal: Journal, recovery: std::time::Duration) {
        self.journal.watch(journal, recovery);
    }

    /// What the engine tells how long jobs wait and run.
    pub fn job_observer(&self) -> Arc<dyn JobObserver> {
        Arc::clone(&self.timings) as Arc<dyn JobObserver>
    }

    /// Records how many jobs are still in memory during shutdown: all of
    /// them are dropped at exit.
    pub fn set_shutdown_jobs_in_memory(&self, jobs: usize) {
        self.shutdown_jobs
            .set(i64::try_from(jobs).unwrap_or(i64::MAX));
    }

    /// The count of request bytes begun but not yet whole, for the server
    /// to keep (and bound) in.
    pub fn pending_request_bytes(&self) -> Gauge {
        self.pending_request_bytes.clone()
    }

    /// The RPC figures, for the gRPC services to record into.
    pub fn rpc(&self) -> Arc<RpcMetrics> {
        Arc::clone(&self.rpc)
    }

    /// Reads every queue's and schedule's figures from `engine`, then
    /// encodes all metrics in the Prometheus text format. A failing engine
    /// leaves those figures out of this scrape (and says so in the log);
    /// the rest is still served.
    pub async fn scrape(&self, engine: &dyn Engine) -> String {
        match engine.queue_figures().await {
            Ok(queues) => *self.lock_queues() = self.figures(&queues),
            Err(error) => {
                tracing::warn!(%error, "metrics scrape could not read the queues");
                self.lock_queues().clear();
            }
        }
        let rows = match engine.schedule_figures().await {
            Ok(figures) => schedules::rows(&figures),
            Err(error) => {
                tracing::warn!(%error, "metrics scrape could not read the schedules");
                Vec::new()
            }
        };
        *schedules::lock(&self.schedules) = rows;
        self.encode()
    }

    /// The metrics in the Prometheus text format, with the queue figures of
    /// the last [`scrape`](Self::scrape).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Metrics {
    fn lock_queues(&self) -> std::sync::MutexGuard<'_, Vec<QueueFigures>> {
        queues::lock(&self.queues)
    }

    /// The figures to export: the named queues' own, and the rest summed.
    fn figures(&self, queues: &[QueueInfo]) -> Vec<QueueFigures> {
        let now = std::time::SystemTime::now();
        let mut out = Vec::new();
        let mut other: Option<QueueFigures> = None;
        for info in queues {
            let figures = QueueFigures {
                label: info.name.to_string(),
                stats: info.stats,
                counts: info.counts,
                workers: info.workers,
                oldest_ready_age: info
                    .oldest_ready
                    .and_then(|at| now.duration_since(at).ok())
                    .map_or(0.0, |age| age.as_secs_f64()),
            };
            if self.timings.is_named(&info.name) {
                out.push(figures);
            } else {
                other
                    .get_or_insert_with(|| QueueFigures {
                        label: jobs::OTHER_QUEUES.to_string(),
                        ..QueueFigures::default()
                    })
                    .add(&figures);
            }
        }
        out.extend(other);
        out
    }
}

fn queue_label(queue: &QueueName) -> QueueLabel {
    QueueLabel {
        queue: queue.to_string(),
    }
}
