//! Logs and traces: the tracing subscriber, OpenTelemetry export over OTLP,
//! and W3C trace-context propagation through gRPC metadata and job
//! metadata.
//!
//! A job queue cuts a request's trace in two: the producer's work ends at
//! enqueue and the job runs later, elsewhere. jobq keeps it whole by storing
//! the producer's `traceparent` and `tracestate` with the job (as job
//! metadata), so every worker that leases it can continue the trace.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The W3C trace-context header and job-metadata key.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C vendor trace-state header and job-metadata key.
pub const TRACESTATE: &str = "tracestate";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, with the span's fields (trace id included).
    Json,
}

/// What [`init`] needs to know: the server's configuration hands these over
/// (see `Config::telemetry`), so telemetry depends on no layer above it.
#[derive(Clone, Debug)]
pub struct TelemetrySettings {
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Where to export traces over OTLP; `None` falls back to the standard
    /// `OTEL_EXPORTER_OTLP_*ENDPOINT` variables.
    pub otlp_endpoint: Option<String>,
}

/// Keeps trace export running; dropping it flushes what is buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("flushing traces at exit failed: {error}");
        }
    }
}

/// Whether traces are exported: when `--otlp-endpoint` or one of the
/// standard `OTEL_EXPORTER_OTLP_*ENDPOINT` variables is set.
fn export_endpoint(config: &TelemetrySettings) -> Option<String> {
    config.otlp_endpoint.clone().or_else(|| {
        [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
    })
}

/// Installs logging (level from `RUST_LOG`, default `info`; format from
/// `--log-format`) and, when an OTLP endpoint is configured, trace export.
/// Must run inside a Tokio runtime. An unreachable collector does not stop
/// the server: export errors are logged and spans dropped.
pub fn init(config: &TelemetrySettings) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = match export_endpoint(config) {
        Some(endpoint) => Some(tracer_provider(&endpoint)?),
        None => None,
    };
    let otel = provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider;
        tracing_opentelemetry::layer().with_tracer(provider.tracer("jobq"))
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    match config.log_format {
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()?,
    }
    if provider.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

/// A tracer provider exporting over OTLP/gRPC to `endpoint`, batching spans.
/// Sampling follows `OTEL_TRACES_SAMPLER`; the service name
/// `OTEL_SERVICE_NAME`, else `jobq`.
pub fn tracer_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("jobq");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Reads trace context from gRPC request metadata.
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
