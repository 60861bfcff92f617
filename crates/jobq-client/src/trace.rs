//! W3C trace-context propagation through gRPC metadata and job metadata.
//!
//! A job queue cuts a request's trace in two: the producer's work ends at
//! enqueue and the job runs later, elsewhere. The producer's `traceparent`
//! and `tracestate` travel with the job (as job metadata), so every worker
//! that leases it can continue the trace. The server uses the same helpers
//! to join its RPC spans to the caller's trace.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace-context header and job-metadata key.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C vendor trace-state header and job-metadata key.
pub const TRACESTATE: &str = "tracestate";

/// Reads trace context from gRPC request metadata.
#[derive(Debug)]
pub struct MetadataExtractor<'a>(pub &'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Writes trace context into gRPC request metadata.
#[derive(Debug)]
pub struct MetadataInjector<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The trace context of the current tracing span, as W3C headers into
/// `metadata` (nothing when the application exports no traces).
pub fn inject_current(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
}

/// The trace context of the current tracing span, as W3C headers into a
/// job's metadata, unless it already carries one (nothing when the
/// application exports no traces).
pub fn inject_current_into(metadata: &mut std::collections::HashMap<String, String>) {
    if metadata.contains_key(TRACEPARENT) {
        return;
    }
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, metadata);
}

/// Makes `span` a child of the trace context in `carrier`, if it has one,
/// and returns the trace id (32 hex digits) it now belongs to: the span's
/// own when traces are exported, else the carrier's.
pub fn continue_trace(span: &tracing::Span, carrier: &dyn Extractor) -> Option<String> {
    let parent = TraceContextPropagator::new().extract(carrier);
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        // Without a trace-exporting subscriber this is a no-op.
        let _ = span.set_parent(parent);
    }
    let own = span.context().span().span_context().clone();
    if own.is_valid() {
        Some(own.trace_id().to_string())
    } else if remote.is_valid() {
        Some(remote.trace_id().to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn continues_the_carriers_trace_id_without_export() {
        let carrier: HashMap<String, String> = [(
            TRACEPARENT.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        )]
        .into();
        let span = tracing::info_span!("test");
        assert_eq!(
            continue_trace(&span, &carrier).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            continue_trace(&span, &HashMap::<String, String>::new()),
            None
        );
    }
}
