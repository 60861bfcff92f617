//! [`JobQueueService`]: the `jobq.v1.JobQueue` RPCs.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::convert::{self, Limits};
use super::pb::{self, job_queue_server::JobQueue};
use super::status;
use super::stream;
use crate::broker::Broker;
use crate::metrics::RpcMetrics;

/// Serves `jobq.v1.JobQueue` from a [`Broker`].
#[derive(Clone, Debug)]
pub struct JobQueueService {
    broker: Broker,
    limits: Limits,
    rpc: Arc<RpcMetrics>,
}

impl JobQueueService {
    /// A service over `broker` that checks requests against `limits` and
    /// records its calls in `rpc`.
    pub fn new(broker: Broker, limits: Limits, rpc: Arc<RpcMetrics>) -> Self {
        Self {
            broker,
            limits,
            rpc,
        }
    }

    /// Runs one RPC and records its count, code and latency.
    async fn observed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let start = Instant::now();
        let result = call.await;
        self.rpc.record(method, start, &result);
        result
    }
}

/// The span every RPC runs in.
fn rpc_span(method: &'static str, queue: &str) -> tracing::Span {
    tracing::debug_span!("rpc", rpc.method = method, queue = %queue)
}

#[tonic::async_trait]
impl JobQueue for JobQueueService {
    type StreamLeasesStream = stream::ResponseStream;

    async fn stream_leases(
        &self,
        request: Request<Streaming<pb::StreamLeasesRequest>>,
    ) -> Result<Response<Self::StreamLeasesStream>, Status> {
        self.observed("StreamLeases", async move {
            stream::open(&self.broker, &self.limits, request.into_inner())
                .await
                .map(Response::new)
        })
        .await
    }

    async fn enqueue(
        &self,
        request: Request<pb::EnqueueRequest>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        self.observed("Enqueue", async move {
            let deadline = convert::grpc_timeout(request.metadata());
            let request = request.into_inner();
            let span = rpc_span("Enqueue", &request.queue);
            async {
                let queue = convert::queue_name(&request.queue)?;
                let job = request
                    .job
                    .ok_or_else(|| Status::invalid_argument("job: is required"))?;
                let job = self.limits.new_job("job", job)?;
                let wait = self.limits.enqueue_wait(request.wait_for_room, deadline);
                let ids = self
                    .broker
                    .enqueue(queue, vec![job], wait)
                    .await
                    .map_err(status::from_broker)?;
                let Some(stored) = ids.first() else {
                    return Err(Status::internal("enqueue stored no job"));
                };
                let job_id = stored.id.to_string();
                tracing::debug!(job.id = %job_id, duplicate = stored.duplicate, "enqueued");
                Ok(Response::new(pb::EnqueueResponse {
                    job_id,
                    duplicate: stored.duplicate,
                }))
            }
            .instrument(span)
            .await
        })
        .await
    }

    async fn batch_enqueue(
        &self,
        request: Request<pb::BatchEnqueueRequest>,
    ) -> Result<Response<pb::BatchEnqueueResponse>, Status> {
        self.observed("BatchEnqueue", async move {
            let deadline = convert::grpc_timeout(request.metadata());
            let request = request.into_inner();
            let span = rpc_span("BatchEnqueue", &request.queue);
            async {
                let queue = convert::queue_name(&request.queue)?;
                let jobs = self.limits.new_jobs(request.jobs)?;
                let wait = self.limits.enqueue_wait(request.wait_for_room, deadline);
                let ids = self
                    .broker
                    .enqueue(queue, jobs, wait)
                    .await
                    .map_err(status::from_broker)?;
                tracing::debug!(jobs = ids.len(), "enqueued batch");
                Ok(Response::new(pb::BatchEnqueueResponse {
                    job_ids: ids.iter().map(|e| e.id.to_string()).collect(),
                    duplicates: ids.iter().map(|e| e.duplicate).collect(),
                }))
            }
            .instrument(span)
            .await
        })
        .await
    }

    async fn lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        self.observed("Lease", async move {
            let request = request.into_inner();
            let span = rpc_span("Lease", &request.queue);
            async {
                let queue = convert::queue_name(&request.queue)?;
                let max = convert::max_jobs(request.max_jobs)?;
                let lease_for = self
                    .limits
                    .lease_duration("lease_duration", request.lease_duration)?;
                let wait = self.limits.lease_wait(request.wait_time)?;
                let deliveries = self
                    .broker
                    .lease(queue.clone(), max, lease_for, wait)
                    .await
                    .map_err(status::from_broker)?;
                tracing::debug!(jobs = deliveries.len(), "leased");
                let leases = deliveries
                    .into_iter()
                    .map(|d| convert::lease(&queue, d))
                    .collect();
                Ok(Response::new(pb::LeaseResponse { leases }))
            }
            .instrument(span)
            .await
        })
        .await
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        self.observed("Ack", async move {
            let request = request.into_inner();
            let _span = rpc_span("Ack", &request.queue).entered();
            let queue = convert::queue_name(&request.queue)?;
            let tokens = convert::ack_tokens(&request.lease_tokens)?;
            let acked = self
                .broker
                .ack(&queue, &tokens)
                .map_err(status::from_broker)?;
            tracing::debug!(jobs = acked, "acked");
            Ok(Response::new(pb::AckResponse {
                acked_count: u32::try_from(acked).unwrap_or(u32::MAX),
            }))
        })
        .await
    }

    async fn nack(
        &self,
        request: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
        self.observed("Nack", async move {
            let request = request.into_inner();
            let _span = rpc_span("Nack", &request.queue).entered();
            let queue = convert::queue_name(&request.queue)?;
            let token = convert::lease_token("lease_token", &request.lease_token)?;
            let nack = convert::nack(&request)?;
            let outcome = self
                .broker
                .nack(&queue, &token, nack)
                .map_err(status::from_broker)?;
            tracing::debug!(lease = %token, ?outcome, "nacked");
            Ok(Response::new(convert::nack_response(outcome)))
        })
        .await
    }

    async fn extend_lease(
        &self,
        request: Request<pb::ExtendLeaseRequest>,
    ) -> Result<Response<pb::ExtendLeaseResponse>, Status> {
        self.observed("ExtendLease", async move {
            let request = request.into_inner();
            let _span = rpc_span("ExtendLease", &request.queue).entered();
            let queue = convert::queue_name(&request.queue)?;
            let token = convert::lease_token("lease_token", &request.lease_token)?;
            let lease_for = self
                .limits
                .lease_duration("lease_duration", request.lease_duration)?
                .ok_or_else(|| Status::invalid_argument("lease_duration: is required"))?;
            let deadline = self
                .broker
                .extend(&queue, &token, lease_for)
                .map_err(status::from_broker)?;
            tracing::debug!(lease = %token, "extended");
            Ok(Response::new(pb::ExtendLeaseResponse {
                lease_deadline: Some(convert::timestamp(deadline)),
            }))
        })
        .await
    }
}
