//! Prometheus metrics, served as text on their own HTTP port at `/metrics`.
//!
//! Per-queue job counters and gauges are read from the engine at scrape
//! time (one [`Operate::list_queues`] call: the engine keeps its counts as
//! jobs move, so a scrape never walks jobs), so they are exact and cost
//! nothing between scrapes. Job timings reach the metrics through the
//! engine's [`JobObserver`] seam. Timings and RPC figures are
//! recorded as they happen. Labels are queue names and RPC methods and codes
//! only, never job ids, so their number stays bounded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::engine::{JobObserver, Operate, QueueInfo, QueueObserver};
use crate::queue::{QueueCounts, QueueName, QueueStats};

/// A per-queue metric: name, help, and how to read it from `T`.
type Described<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// A `queue` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// The queue's name.
    pub queue: String,
}

/// The labels of an RPC count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

/// The label of an RPC latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn wait_histogram() -> Histogram {
    // 0.5 ms to about 8 minutes.
    Histogram::new(exponential_buckets(0.0005, 2.5, 16))
}

fn rpc_histogram() -> Histogram {
    // 50 µs to about 13 s (long-polls run to their wait time).
    Histogram::new(exponential_buckets(0.00005, 2.3, 16))
}

/// How long jobs wait and run, as the engine reports it.
#[derive(Debug)]
struct JobTimings {
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

/// RPC counts and latencies, recorded by the gRPC services.
#[derive(Debug)]
pub struct RpcMetrics {
    requests: Family<RpcLabels, Counter>,
    duration: HistogramFamily<MethodLabel>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(rpc_histogram),
        }
    }
}

impl RpcMetrics {
    /// Records one call of `method`, begun at `start`, ending as `result`.
    pub fn record<T>(
        &self,
        method: &'static str,
        start: Instant,
        result: &Result<T, tonic::Status>,
    ) {
        let code = match result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.requests
            .get_or_create(&RpcLabels {
                method,
                code: code_name(code),
            })
            .inc();
        self.duration
            .get_or_create(&MethodLabel { method })
            .observe(start.elapsed().as_secs_f64());
    }
}

/// Every metric of the server, ready to encode.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rpc: Arc<RpcMetrics>,
    timings: Arc<JobTimings>,
    queues: Arc<Mutex<Vec<QueueInfo>>>,
    shutdown_jobs: Gauge,
}

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
        let mut registry = Registry::with_prefix("jobq");
        let rpc = Arc::new(RpcMetrics::default());
        let timings = Arc::new(JobTimings::default());
        registry.register_with_unit(
            "job_wait",
            "Time from enqueue to a job's first delivery",
            Unit::Seconds,
            timings.until_first_lease.clone(),
        );
        registry.register_with_unit(
            "job_processing",
            "Time from a job's delivery to its ack",
            Unit::Seconds,
            timings.lease_to_ack.clone(),
        );
        registry.register(
            "rpc_requests",
            "gRPC calls by method and status code",
            rpc.requests.clone(),
        );
        registry.register_with_unit(
            "rpc_duration",
            "gRPC call latency by method",
            Unit::Seconds,
            rpc.duration.clone(),
        );
        let queues = Arc::new(Mutex::new(Vec::new()));
        registry.register_collector(Box::new(QueueCollector {
            queues: Arc::clone(&queues),
        }));
        let shutdown_jobs = Gauge::default();
        registry.register(
            "shutdown_jobs_in_memory",
            "Jobs held in memory since shutdown began, dropped if still held at exit",
            shutdown_jobs.clone(),
        );
        Self {
            registry,
            rpc,
            timings,
            queues,
            shutdown_jobs,
        }
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

    /// The RPC figures, for the gRPC services to record into.
    pub fn rpc(&self) -> Arc<RpcMetrics> {
        Arc::clone(&self.rpc)
    }

    /// Reads every queue's figures from `engine`, then encodes all metrics
    /// in the Prometheus text format. A failing engine leaves the queue
    /// figures out of this scrape (and says so in the log); the rest is
    /// still served.
    pub async fn scrape(&self, engine: &dyn Operate) -> String {
        match engine.list_queues(None, usize::MAX).await {
            Ok(queues) => *self.lock_queues() = queues,
            Err(error) => {
                tracing::warn!(%error, "metrics scrape could not read the queues");
                self.lock_queues().clear();
            }
        }
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
    fn lock_queues(&self) -> std::sync::MutexGuard<'_, Vec<QueueInfo>> {
        lock(&self.queues)
    }
}

// A std mutex: held only to swap or read one scrape's figures, never across
// an `.await`. A panic while it was held leaves figures that are at worst
// one scrape old.
fn lock(queues: &Mutex<Vec<QueueInfo>>) -> std::sync::MutexGuard<'_, Vec<QueueInfo>> {
    queues.lock().unwrap_or_else(|e| e.into_inner())
}

/// Encodes each queue's counts and totals as the scrape read them.
#[derive(Debug)]
struct QueueCollector {
    queues: Arc<Mutex<Vec<QueueInfo>>>,
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
        Ok(())
    }
}

fn label(info: &QueueInfo) -> QueueLabel {
    queue_label(&info.name)
}

fn queue_label(queue: &QueueName) -> QueueLabel {
    QueueLabel {
        queue: queue.to_string(),
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
