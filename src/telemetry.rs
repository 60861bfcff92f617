//! Logs and traces: the tracing subscriber, OpenTelemetry export over OTLP,
//! and W3C trace-context propagation through gRPC metadata and job
//! metadata.
//!
//! A job queue cuts a request's trace in two: the producer's work ends at
//! enqueue and the job runs later, elsewhere. jobq keeps it whole by storing
//! the producer's `traceparent` and `tracestate` with the job (as job
//! metadata), so every worker that leases it can continue the trace.

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use jobq_client::trace::{
    MetadataExtractor, MetadataInjector, TRACEPARENT, TRACESTATE, continue_trace, inject_current,
    inject_current_into,
};

/// [`TRACEPARENT`] as a header name, to look up without parsing the name.
pub const TRACEPARENT_HEADER: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);
/// [`TRACESTATE`] as a header name.
pub const TRACESTATE_HEADER: http::HeaderName = http::HeaderName::from_static(TRACESTATE);

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

/// Whether spans are exported (see [`export_spans`]).
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says that a subscriber exporting spans is installed, so RPC spans carry
/// every OpenTelemetry attribute. [`init`] calls it when it installs OTLP
/// export; a program installing its own exporting subscriber calls it too.
/// Until then RPC spans carry only what logs show (method, queue, ids), and
/// the span of a call that carries no `traceparent` is at `debug` level:
/// the log formatter writes out every field of every span as it opens,
/// which cost about a tenth of a unary call's CPU.
pub fn export_spans() {
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`export_spans`] was called.
pub fn exporting_spans() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
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
        export_spans();
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
