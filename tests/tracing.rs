//! A job's trace, from producer to worker, exported over OTLP to a
//! collector running in this test process.

// Tests state their expectations with `expect`: a failed one is the
// test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "it/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};

use common::{PATIENCE, TestServer, eventually};
use jobq_client::{Client, JobError};
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::TcpListenerStream;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// One span received.
struct Received {
    name: String,
    trace: TraceId,
    kind: i32,
    attributes: Vec<String>,
}

/// Spans received.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("lock");
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let id: [u8; 16] = span.trace_id.as_slice().try_into().unwrap_or_default();
                    spans.push(Received {
                        attributes: span.attributes.iter().map(|a| a.key.clone()).collect(),
                        name: span.name,
                        trace: TraceId::from_bytes(id),
                        kind: span.kind,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    fn has(&self, name: &str, trace: TraceId) -> bool {
        self.spans
            .lock()
            .expect("lock")
            .iter()
            .any(|s| s.name == name && s.trace == trace)
    }

    /// The kind and attribute keys of the first span called `name`.
    fn span(&self, name: &str) -> Option<(i32, Vec<String>)> {
        let spans = self.spans.lock().expect("lock");
        let span = spans.iter().find(|s| s.name == name)?;
        Some((span.kind, span.attributes.clone()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_span_joins_the_producers_trace() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let collector_addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let provider =
        jobq::telemetry::tracer_provider(&format!("http://{collector_addr}")).expect("exporter");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    jobq::telemetry::export_spans();

    let server = TestServer::start().await;
    let client = Client::from_channel(server.channel.clone());

    // The producer enqueues inside its own span; the client carries the
    // trace context along with no code from the caller.
    let producer = tracing::info_span!("signup");
    let producer_trace = producer.context().span().span_context().trace_id();
    assert_ne!(producer_trace, TraceId::INVALID);
    // One job over the client's producer stream, one by unary Enqueue.
    async {
        client
            .enqueue("emails", "alice@example.com")
            .send()
            .await
            .expect("enqueue");
        client
            .enqueue("emails", "bob@example.com")
            .send_unary()
            .await
            .expect("enqueue");
    }
    .instrument(producer)
    .await;

    let (seen_tx, mut seen) = mpsc::channel::<TraceId>(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(client.worker("emails").run(
        move |_job| {
            let seen_tx = seen_tx.clone();
            async move {
                let trace = tracing::Span::current()
                    .context()
                    .span()
                    .span_context()
                    .trace_id();
                let _ = seen_tx.send(trace).await;
                Ok::<(), JobError>(())
            }
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let worker_trace = tokio::time::timeout(PATIENCE, seen.recv())
        .await
        .expect("the job ran")
        .expect("a trace id");
    assert_eq!(worker_trace, producer_trace);
    stop.send(()).expect("worker running");
    worker.await.expect("join");

    // The spans reach the collector over OTLP: the worker's, and jobq's own
    // StreamEnqueue and Enqueue spans, in the producer's trace.
    let flushing = provider.clone();
    tokio::task::spawn_blocking(move || flushing.force_flush())
        .await
        .expect("join")
        .expect("flushed");
    eventually("the collector has the worker's span", || {
        collector.has("process", producer_trace)
            && collector.has("StreamEnqueue", producer_trace)
            && collector.has("Enqueue", producer_trace)
    })
    .await;
    // jobq's spans carry the OpenTelemetry RPC and messaging attributes.
    let (kind, keys) = collector.span("Enqueue").expect("the Enqueue span");
    assert_eq!(kind, 2, "SPAN_KIND_SERVER");
    for key in [
        "rpc.system",
        "rpc.service",
        "rpc.method",
        "messaging.system",
        "messaging.destination.name",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
}
