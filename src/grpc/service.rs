//! [`JobQueueService`]: the `jobq.v1.JobQueue` RPCs.

use std::future::Future;
use std::sync::Arc;

use tokio_util::task::TaskTracker;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::pb::{self, job_queue_server::JobQueue};
use super::status;
use super::validate::{self, Limits};
use super::{observe, produce, stream};
use crate::engine::SharedEngine;
use crate::metrics::RpcMetrics;
use crate::queue::NewJob;
use crate::telemetry::{TRACEPARENT, TRACEPARENT_HEADER, TRACESTATE, TRACESTATE_HEADER};

/// Serves `jobq.v1.JobQueue` from an engine.
#[derive(Clone, Debug)]
pub struct JobQueueService {
    engine: SharedEngine,
    limits: Limits,
    rpc: Arc<RpcMetrics>,
    /// Owns the worker streams' tasks, so shutdown can wait for them.
    tasks: TaskTracker,
}

impl JobQueueService {
    /// A service over `engine` that checks requests against `limits`,
    /// records its calls in `rpc` and runs each worker stream as a task of
    /// `tasks`.
    pub fn new(
        engine: SharedEngine,
        limits: Limits,
        rpc: Arc<RpcMetrics>,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            engine,
            limits,
            rpc,
            tasks,
        }
    }

    async fn observed<T>(
        &self,
        method: &'static str,
        span: tracing::Span,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        observe::observed(&self.rpc, method, span, call).await
    }
}

fn job_queue_span(method: &'static str, queue: &str, metadata: &MetadataMap) -> tracing::Span {
    observe::rpc_span("jobq.v1.JobQueue", method, queue, metadata)
}

/// The W3C trace-context headers of a request, to store with its jobs:
/// none without a `traceparent` (a `tracestate` alone means nothing).
fn trace_headers(metadata: &MetadataMap) -> Vec<(String, String)> {
    let headers = metadata.as_ref();
    let text = |name: &http::HeaderName| Some(headers.get(name)?.to_str().ok()?.to_string());
    let Some(parent) = text(&TRACEPARENT_HEADER) else {
        return Vec::new();
    };
    let mut found = vec![(TRACEPARENT.to_string(), parent)];
    found.extend(text(&TRACESTATE_HEADER).map(|state| (TRACESTATE.to_string(), state)));
    found
}

/// Stores the producer's trace context with a job, unless the job carries
/// its own or has no room left for it.
fn attach_trace(job: &mut NewJob, headers: &[(String, String)]) {
    if headers.is_empty()
        || job.metadata.iter().any(|(k, _)| k == TRACEPARENT)
        || job.metadata.len() + headers.len() > validate::MAX_METADATA_ENTRIES
    {
        return;
    }
    job.metadata.extend(headers.iter().cloned());
    job.metadata.sort_unstable();
}

#[tonic::async_trait]
impl JobQueue for JobQueueService {
    type StreamLeasesStream = stream::ResponseStream;
    type StreamEnqueueStream = produce::ResponseStream;

    async fn stream_enqueue(
        &self,
        request: Request<Streaming<pb::StreamEnqueueRequest>>,
    ) -> Result<Response<Self::StreamEnqueueStream>, Status> {
        let span = job_queue_span("StreamEnqueue", "", request.metadata());
        let call = async {
            self.engine
                .refuse_if_shutting_down()
                .map_err(status::from_engine)?;
            Ok(Response::new(produce::ResponseStream::new(
                &self.engine,
                &self.limits,
                request.into_inner(),
            )))
        };
        self.observed("StreamEnqueue", span, call).await
    }

    async fn stream_leases(
        &self,
        request: Request<Streaming<pb::StreamLeasesRequest>>,
    ) -> Result<Response<Self::StreamLeasesStream>, Status> {
        let span = job_queue_span("StreamLeases", "", request.metadata());
        let call = async {
            stream::open(
                &self.engine,
                &self.limits,
                &self.tasks,
                request.into_inner(),
            )
            .await
            .map(Response::new)
        };
        self.observed("StreamLeases", span, call).await
    }

    async fn enqueue(
        &self,
        request: Request<pb::EnqueueRequest>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        let span = job_queue_span("Enqueue", &request.get_ref().queue, request.metadata());
        let call = async {
            let deadline = validate::grpc_timeout(request.metadata());
            let trace = trace_headers(request.metadata());
            let mut request = request.into_inner();
            let queue = validate::owned_queue_name(std::mem::take(&mut request.queue))?;
            let job = request
                .job
                .ok_or_else(|| Status::invalid_argument("job: is required"))?;
            let mut job = self.limits.new_job("job", job)?;
            attach_trace(&mut job, &trace);
            let wait = self.limits.enqueue_wait(request.wait_for_room, deadline);
            let ids = self
                .engine
                .enqueue(queue, vec![job], wait)
                .await
                .map_err(status::from_engine)?;
            let Some(stored) = ids.first() else {
                return Err(Status::internal("enqueue stored no job"));
            };
            let job_id = stored.id.to_string();
            tracing::Span::current().record("messaging.message.id", job_id.as_str());
            tracing::debug!(duplicate = stored.duplicate, "enqueued");
            Ok(Response::new(pb::EnqueueResponse {
                job_id,
                duplicate: stored.duplicate,
            }))
        };
        self.observed("Enqueue", span, call).await
    }

    async fn batch_enqueue(
        &self,
        request: Request<pb::BatchEnqueueRequest>,
    ) -> Result<Response<pb::BatchEnqueueResponse>, Status> {
        let span = job_queue_span("BatchEnqueue", &request.get_ref().queue, request.metadata());
        let call = async {
            let deadline = validate::grpc_timeout(request.metadata());
            let trace = trace_headers(request.metadata());
            let mut request = request.into_inner();
            let queue = validate::owned_queue_name(std::mem::take(&mut request.queue))?;
            let mut jobs = self.limits.new_jobs(request.jobs)?;
            for job in &mut jobs {
                attach_trace(job, &trace);
            }
            let wait = self.limits.enqueue_wait(request.wait_for_room, deadline);
            let ids = self
                .engine
                .enqueue(queue, jobs, wait)
                .await
                .map_err(status::from_engine)?;
            tracing::Span::current().record("messaging.batch.message_count", ids.len());
            tracing::debug!("enqueued batch");
            Ok(Response::new(pb::BatchEnqueueResponse {
                job_ids: ids.iter().map(|e| e.id.to_string()).collect(),
                duplicates: ids.iter().map(|e| e.duplicate).collect(),
            }))
        };
        self.observed("BatchEnqueue", span, call).await
    }

    async fn lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let span = job_queue_span("Lease", &request.get_ref().queue, request.metadata());
        let call = async {
            let request = request.into_inner();
            let queue = validate::queue_name(&request.queue)?;
            let max = validate::max_jobs(request.max_jobs)?;
            let lease_for = self
                .limits
                .lease_duration("lease_duration", request.lease_duration)?;
            let wait = self.limits.lease_wait(request.wait_time)?;
            let deliveries = self
                .engine
                .lease(queue.clone(), max, lease_for, wait)
                .await
                .map_err(status::from_engine)?;
            let span = tracing::Span::current();
            span.record("messaging.batch.message_count", deliveries.len());
            if let [only] = deliveries.as_slice() {
                span.record("messaging.message.id", only.job.id.to_string());
                span.record("jobq.attempt", only.attempt);
                span.record("jobq.lease_token", only.token.to_string());
            }
            tracing::debug!("leased");
            // Only an empty answer needs to say why; a lost race with a
            // delete leaves it unsaid rather than failing the call.
            let queue_paused = deliveries.is_empty()
                && self
                    .engine
                    .queue_info(&queue)
                    .await
                    .is_ok_and(|info| info.paused);
            let leases = deliveries
                .into_iter()
                .map(|d| convert::lease(&queue, d))
                .collect();
            Ok(Response::new(pb::LeaseResponse {
                leases,
                queue_paused,
            }))
        };
        self.observed("Lease", span, call).await
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let span = job_queue_span("Ack", &request.get_ref().queue, request.metadata());
        let call = async {
            let request = request.into_inner();
            let queue = validate::queue_name(&request.queue)?;
            let tokens = validate::ack_tokens(&request.lease_tokens)?;
            if let [only] = tokens.as_slice() {
                let span = tracing::Span::current();
                span.record("jobq.lease_token", only.to_string());
                span.record("messaging.message.id", only.job.to_string());
            }
            let acked = self
                .engine
                .ack(&queue, &tokens)
                .await
                .map_err(status::from_engine)?;
            tracing::debug!(jobs = acked, "acked");
            Ok(Response::new(pb::AckResponse {
                acked_count: u32::try_from(acked).unwrap_or(u32::MAX),
            }))
        };
        self.observed("Ack", span, call).await
    }

    async fn nack(
        &self,
        request: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
        let span = job_queue_span("Nack", &request.get_ref().queue, request.metadata());
        let call = async {
            let request = request.into_inner();
            let queue = validate::queue_name(&request.queue)?;
            let token = validate::lease_token("lease_token", &request.lease_token)?;
            let span = tracing::Span::current();
            span.record("jobq.lease_token", token.to_string());
            span.record("messaging.message.id", token.job.to_string());
            let nack = validate::nack_request(
                "",
                request.retry_delay,
                request.dead_letter,
                request.reason,
            )?;
            let outcome = self
                .engine
                .nack(&queue, &token, nack)
                .await
                .map_err(status::from_engine)?;
            tracing::debug!(?outcome, "nacked");
            Ok(Response::new(convert::nack_response(outcome)))
        };
        self.observed("Nack", span, call).await
    }

    async fn extend_lease(
        &self,
        request: Request<pb::ExtendLeaseRequest>,
    ) -> Result<Response<pb::ExtendLeaseResponse>, Status> {
        let span = job_queue_span("ExtendLease", &request.get_ref().queue, request.metadata());
        let call = async {
            let request = request.into_inner();
            let queue = validate::queue_name(&request.queue)?;
            let token = validate::lease_token("lease_token", &request.lease_token)?;
            tracing::Span::current().record("jobq.lease_token", token.to_string());
            let lease_for = self
                .limits
                .lease_duration("lease_duration", request.lease_duration)?
                .ok_or_else(|| Status::invalid_argument("lease_duration: is required"))?;
            let deadline = self
                .engine
                .extend(&queue, &token, lease_for)
                .await
                .map_err(status::from_engine)?;
            tracing::debug!("extended");
            Ok(Response::new(pb::ExtendLeaseResponse {
                lease_deadline: Some(convert::timestamp(deadline)),
            }))
        };
        self.observed("ExtendLease", span, call).await
    }
}
