//! What every RPC of both services shares: the span it runs in, joined to
//! the caller's trace, and the record of its count, code and latency.

use std::future::Future;
use std::time::Instant;

use tonic::Status;
use tonic::metadata::MetadataMap;
use tracing::Instrument;

use crate::metrics::RpcMetrics;
use crate::telemetry::{self, MetadataExtractor, TRACEPARENT_HEADER};

/// Runs one RPC in `span` and records its count, code and latency.
pub(super) async fn observed<T>(
    rpc: &RpcMetrics,
    method: &'static str,
    span: tracing::Span,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let start = Instant::now();
    let result = call.instrument(span.clone()).await;
    if let Err(status) = &result {
        span.record("rpc.grpc.status_code", status.code() as i32);
    }
    rpc.record(method, start, &result);
    result
}

/// The span an RPC runs in, following the OpenTelemetry conventions for RPC
/// and messaging spans, and joined to the caller's trace when the request
/// carries a `traceparent`.
///
/// At `info` when spans are exported or the caller is traced; otherwise at
/// `debug`, so with the default `info` logs an untraced call costs no span
/// (the log formatter writes out every span as it opens, about a tenth of a
/// unary call's CPU). `RUST_LOG=debug` shows them all.
pub(super) fn rpc_span(
    service: &'static str,
    method: &'static str,
    queue: &str,
    metadata: &MetadataMap,
) -> tracing::Span {
    let traced = metadata.as_ref().contains_key(&TRACEPARENT_HEADER);
    span(service, method, queue, &MetadataExtractor(metadata), traced)
}

/// As [`rpc_span`], for a job that carries its own `traceparent` in
/// `carrier`, its headers.
pub(super) fn traced_span(
    service: &'static str,
    method: &'static str,
    queue: &str,
    carrier: &dyn opentelemetry::propagation::Extractor,
) -> tracing::Span {
    span(service, method, queue, carrier, true)
}

/// The span, at `info` if `traced` (the carrier holds a `traceparent`) or
/// spans are exported.
fn span(
    service: &'static str,
    method: &'static str,
    queue: &str,
    carrier: &dyn opentelemetry::propagation::Extractor,
    traced: bool,
) -> tracing::Span {
    macro_rules! span_at {
        ($span:ident) => {
            tracing::$span!(
                "rpc",
                otel.name = tracing::field::Empty,
                otel.kind = tracing::field::Empty,
                rpc.system = tracing::field::Empty,
                rpc.service = tracing::field::Empty,
                rpc.method = method,
                rpc.grpc.status_code = tracing::field::Empty,
                messaging.system = tracing::field::Empty,
                messaging.destination.name = %queue,
                messaging.message.id = tracing::field::Empty,
                messaging.batch.message_count = tracing::field::Empty,
                jobq.attempt = tracing::field::Empty,
                jobq.lease_token = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            )
        };
    }
    let exporting = telemetry::exporting_spans();
    let span = if exporting || traced {
        span_at!(info_span)
    } else {
        span_at!(debug_span)
    };
    if span.is_disabled() {
        return span;
    }
    // The attributes that are the same for every span, only for export:
    // the log formatter would write them out for every call (see
    // `telemetry::export_spans`). Recorded before the span joins a trace,
    // while its name and kind may still change.
    if exporting {
        span.record("otel.name", method);
        span.record("otel.kind", "server");
        span.record("rpc.system", "grpc");
        span.record("rpc.service", service);
        span.record("messaging.system", "jobq");
    }
    if let Some(trace_id) = telemetry::continue_trace(&span, carrier) {
        span.record("trace_id", trace_id);
    }
    span
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn span_with(level: LevelFilter, metadata: &MetadataMap) -> tracing::Span {
        let subscriber = tracing_subscriber::registry().with(level);
        tracing::subscriber::with_default(subscriber, || {
            rpc_span("jobq.v1.JobQueue", "Enqueue", "q", metadata)
        })
    }

    #[test]
    fn an_untraced_call_has_a_span_only_at_debug_and_a_traced_one_at_info() {
        let untraced = MetadataMap::new();
        let mut traced = MetadataMap::new();
        traced.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("ascii"),
        );
        assert!(span_with(LevelFilter::INFO, &untraced).is_disabled());
        assert!(!span_with(LevelFilter::DEBUG, &untraced).is_disabled());
        assert!(!span_with(LevelFilter::INFO, &traced).is_disabled());
    }
}
