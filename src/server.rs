//! Serving: the JobQueue and Admin services with health and reflection,
//! and the metrics endpoint, from already-bound listeners until a shutdown
//! signal.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::broker::Broker;
use crate::config::Config;
use crate::grpc::pb::{self, admin_server::AdminServer, job_queue_server::JobQueueServer};
use crate::grpc::{AdminService, JobQueueService};
use crate::metrics::Metrics;

/// The sockets the server answers on, bound by the caller (tests bind
/// `127.0.0.1:0`).
#[derive(Debug)]
pub struct Listeners {
    /// For gRPC.
    pub grpc: TcpListener,
    /// For Prometheus scrapes of `/metrics`; `None` serves no metrics.
    pub metrics: Option<TcpListener>,
}

/// The name health checks use for the JobQueue service.
pub const SERVICE_NAME: &str = "jobq.v1.JobQueue";
/// The name health checks use for the Admin service.
pub const ADMIN_SERVICE_NAME: &str = "jobq.v1.Admin";

/// Serves `jobq.v1.JobQueue`, `jobq.v1.Admin`, health and reflection on
/// `listeners.grpc`, and `/metrics` on `listeners.metrics`, until `shutdown`
/// completes, then shuts down gracefully:
/// 1. health turns NOT_SERVING (for the server and for both services);
/// 2. the broker refuses new enqueues and leases, and open long-polls return
///    at once with what they have (nothing);
/// 3. the listener closes and in-flight RPCs (acks, nacks) get up to
///    `shutdown_grace` to finish; what is still running then is cut off.
///
/// Jobs live only in this process's memory: whatever is still queued or
/// leased at exit is lost, and the count is logged.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    let broker = Broker::new(config.broker());
    serve(broker, config, listeners, shutdown).await
}

/// As [`run`], over a broker the caller made (and may keep a handle to, to
/// look inside in tests). The broker should be made from `config.broker()`.
pub async fn serve(
    broker: Broker,
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    let listener = listeners.grpc;
    let metrics = Arc::new(Metrics::new(&broker));
    let service = JobQueueService::new(broker.clone(), config.limits(), metrics.rpc());
    let admin = AdminServer::new(AdminService::new(
        broker.clone(),
        config.limits(),
        metrics.rpc(),
    ));
    let jobq = JobQueueServer::new(service)
        .max_decoding_message_size(config.max_request_bytes)
        .max_encoding_message_size(config.max_request_bytes);

    let (health, health_service) = tonic_health::server::health_reporter();
    for service in [SERVICE_NAME, ADMIN_SERVICE_NAME] {
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    health.set_service_status("", ServingStatus::Serving).await;

    // Both reflection versions: grpcurl and other tools ask for either.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let stop = CancellationToken::new();
    let local = listener.local_addr()?;
    let serve = Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(jobq)
        .add_service(admin)
        .serve_with_incoming_shutdown(
            // No Nagle delay: small gRPC frames go out at once.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop.clone().cancelled_owned(),
        );
    let mut serve = std::pin::pin!(serve);
    tracing::info!(addr = %local, "jobq serving");
    if let Some(listener) = listeners.metrics {
        tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
        tokio::spawn(serve_metrics(listener, metrics, stop.clone()));
    }

    tokio::select! {
        result = &mut serve => return Ok(result?),
        () = shutdown => {}
    }

    tracing::info!(grace = ?config.shutdown_grace, "shutting down");
    for service in [SERVICE_NAME, ADMIN_SERVICE_NAME] {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    broker.shutdown();
    stop.cancel();
    match tokio::time::timeout(config.shutdown_grace, &mut serve).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!(
            grace = ?config.shutdown_grace,
            "grace period ran out; RPCs still in flight were cut off"
        ),
    }
    let held = broker.jobs_held();
    if held > 0 {
        tracing::warn!(jobs = held, "in-memory jobs dropped at exit");
    }
    tracing::info!("jobq stopped");
    Ok(())
}

/// Serves `GET /metrics` in the Prometheus text format until `stop`.
async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, stop: CancellationToken) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "metrics endpoint failed");
    }
}
