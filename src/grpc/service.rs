//! [`JobQueueService`]: the `jobq.v1.JobQueue` RPCs.

use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::convert::{self, Limits};
use super::pb::{self, job_queue_server::JobQueue};
use super::status;
use super::stream;
use crate::broker::Broker;

/// Serves `jobq.v1.JobQueue` from a [`Broker`].
#[derive(Clone, Debug)]
pub struct JobQueueService {
    broker: Broker,
    limits: Limits,
}

impl JobQueueService {
    /// A service over `broker` that checks requests against `limits`.
    pub fn new(broker: Broker, limits: Limits) -> Self {
        Self { broker, limits }
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
        stream::open(&self.broker, &self.limits, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn enqueue(
        &self,
        request: Request<pb::EnqueueRequest>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
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
    }

    async fn batch_enqueue(
        &self,
        request: Request<pb::BatchEnqueueRequest>,
    ) -> Result<Response<pb::BatchEnqueueResponse>, Status> {
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
    }

    async fn lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
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
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
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
    }

    async fn nack(
        &self,
        request: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
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
    }

    async fn extend_lease(
        &self,
        request: Request<pb::ExtendLeaseRequest>,
    ) -> Result<Response<pb::ExtendLeaseResponse>, Status> {
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
    }
}
