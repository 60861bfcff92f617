//! RPC counts and latencies, recorded by the gRPC services as calls end.

use std::time::Instant;

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
