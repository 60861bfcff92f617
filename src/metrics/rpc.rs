//! RPC counts and latencies, recorded by the gRPC services as calls end.

use std::sync::RwLock;
use std::time::Instant;

use rustc_hash::FxHashMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::HistogramFamily;

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

fn rpc_histogram() -> Histogram {
    // 50 µs to about 13 s (long-polls run to their wait time).
    Histogram::new(exponential_buckets(0.00005, 2.3, 16))
}

/// One method's and code's series, shared with the families.
type Series = (Counter, Histogram);

/// RPC counts and latencies, recorded by the gRPC services.
#[derive(Debug)]
pub struct RpcMetrics {
    requests: Family<RpcLabels, Counter>,
    duration: HistogramFamily<MethodLabel>,
    /// The series each (method, code) records into, once looked up: the
    /// families hash their labels with SipHash under a lock on every call,
    /// a share of a unary call's CPU worth saving. A handful of entries
    /// (methods times the codes they end with), hashed by the method
    /// name's address.
    series: RwLock<FxHashMap<(usize, i32), Series>>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(rpc_histogram),
            series: RwLock::default(),
        }
    }
}

impl RpcMetrics {
    /// Adds the RPC figures to `registry`.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "rpc_requests",
            "gRPC calls by method and status code",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "rpc_duration",
            "gRPC call latency by method",
            Unit::Seconds,
            self.duration.clone(),
        );
    }

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
        let key = (method.as_ptr() as usize, code as i32);
        let seconds = start.elapsed().as_secs_f64();
        let record = |(count, latency): &Series| {
            count.inc();
            latency.observe(seconds);
        };
        if let Some(series) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return record(series);
        }
        let series = (
            self.requests
                .get_or_create(&RpcLabels {
                    method,
                    code: code_name(code),
                })
                .clone(),
            self.duration.get_or_create(&MethodLabel { method }).clone(),
        );
        record(&series);
        self.series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, series);
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
