//! Serving: the JobQueue service with health and reflection, from an
//! already-bound listener until a shutdown signal.

use std::future::Future;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::broker::Broker;
use crate::config::Config;
use crate::grpc::pb::{self, admin_server::AdminServer, job_queue_server::JobQueueServer};
use crate::grpc::{AdminService, JobQueueService};

/// The name health checks use for the JobQueue service.
pub const SERVICE_NAME: &str = "jobq.v1.JobQueue";
/// The name health checks use for the Admin service.
pub const ADMIN_SERVICE_NAME: &str = "jobq.v1.Admin";

/// Serves on `listener` until `shutdown` completes, then shuts down
/// gracefully:
/// 1. health turns NOT_SERVING (for the server and for `jobq.v1.JobQueue`);
/// 2. the broker refuses new enqueues and leases, and open long-polls return
///    at once with what they have (nothing);
/// 3. the listener closes and in-flight RPCs (acks, nacks) get up to
///    `shutdown_grace` to finish; what is still running then is cut off.
///
/// Jobs live only in this process's memory: whatever is still queued or
/// leased at exit is lost, and the count is logged.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    let broker = Broker::new(config.broker());
    serve(broker, config, listener, shutdown).await
}

/// As [`run`], over a broker the caller made (and may keep a handle to, to
/// look inside in tests). The broker should be made from `config.broker()`.
pub async fn serve(
    broker: Broker,
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    let service = JobQueueService::new(broker.clone(), config.limits());
    let admin = AdminServer::new(AdminService::new(broker.clone(), config.limits()));
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
            TcpListenerStream::new(listener),
            stop.clone().cancelled_owned(),
        );
    let mut serve = std::pin::pin!(serve);
    tracing::info!(addr = %local, "jobq serving");

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
