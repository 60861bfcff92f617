//! [`AdminService`]: the `jobq.v1.Admin` RPCs for operators.
//!
//! Each RPC is a few lines: check the request ([`validate`]), call the
//! engine, convert the answer ([`convert`]).

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::pb::{self, admin_server::Admin};
use super::validate::{self, Limits};
use super::{convert, observe, status};
use crate::engine::SharedEngine;
use crate::metrics::RpcMetrics;

/// Serves `jobq.v1.Admin`, and `jobq.v1.Schedules` (in `schedules.rs`),
/// from an engine.
#[derive(Clone, Debug)]
pub struct AdminService {
    pub(super) engine: SharedEngine,
    pub(super) limits: Limits,
    rpc: Arc<RpcMetrics>,
}

impl AdminService {
    /// An admin service over `engine`, recording its calls in `rpc`.
    pub fn new(engine: SharedEngine, limits: Limits, rpc: Arc<RpcMetrics>) -> Self {
        Self {
            engine,
            limits,
            rpc,
        }
    }

    /// Runs one RPC and records its count, code and latency.
    pub(super) async fn observed<T>(
        &self,
        method: &'static str,
        span: tracing::Span,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        observe::observed(&self.rpc, method, span, call).await
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_queues(
        &self,
        request: Request<pb::ListQueuesRequest>,
    ) -> Result<Response<pb::ListQueuesResponse>, Status> {
        let span = admin_span("ListQueues", "", request.metadata());
        self.observed("ListQueues", span, async move {
            let request = request.into_inner();
            let size = validate::page_size(request.page_size)?;
            let after = validate::queue_page_token(&request.page_token)?;
            let mut page = self
                .engine
                .list_queues(after.as_ref(), size + 1)
                .await
                .map_err(status::from_engine)?;
            let next_page_token =
                convert::next_token(&mut page, size, |info| info.name.to_string());
            Ok(Response::new(pb::ListQueuesResponse {
                queues: page.into_iter().map(convert::queue_info).collect(),
                next_page_token,
            }))
        })
        .await
    }

    async fn get_queue(
        &self,
        request: Request<pb::GetQueueRequest>,
    ) -> Result<Response<pb::GetQueueResponse>, Status> {
        let span = admin_span("GetQueue", &request.get_ref().queue, request.metadata());
        self.observed("GetQueue", span, async move {
            let queue = validate::queue_name(&request.into_inner().queue)?;
            let info = self
                .engine
                .queue_info(&queue)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::GetQueueResponse {
                queue: Some(convert::queue_info(info)),
            }))
        })
        .await
    }

    async fn update_queue(
        &self,
        request: Request<pb::UpdateQueueRequest>,
    ) -> Result<Response<pb::UpdateQueueResponse>, Status> {
        let span = admin_span("UpdateQueue", &request.get_ref().queue, request.metadata());
        self.observed("UpdateQueue", span, async move {
            let request = request.into_inner();
            let queue = validate::queue_name(&request.queue)?;
            let update = self.limits.queue_update(&request)?;
            let info = self
                .engine
                .update_queue(&queue, update, request.allow_missing)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::UpdateQueueResponse {
                queue: Some(convert::queue_info(info)),
            }))
        })
        .await
    }

    async fn delete_queue(
        &self,
        request: Request<pb::DeleteQueueRequest>,
    ) -> Result<Response<pb::DeleteQueueResponse>, Status> {
        let span = admin_span("DeleteQueue", &request.get_ref().queue, request.metadata());
        self.observed("DeleteQueue", span, async move {
            let request = request.into_inner();
            let queue = validate::queue_name(&request.queue)?;
            let deleted = self
                .engine
                .delete_queue(&queue, request.force)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::DeleteQueueResponse {
                deleted_job_count: deleted as u64,
            }))
        })
        .await
    }

    async fn pause_queue(
        &self,
        request: Request<pb::PauseQueueRequest>,
    ) -> Result<Response<pb::PauseQueueResponse>, Status> {
        let span = admin_span("PauseQueue", &request.get_ref().queue, request.metadata());
        self.observed("PauseQueue", span, async move {
            let queue = validate::queue_name(&request.into_inner().queue)?;
            self.engine
                .set_paused(&queue, true)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::PauseQueueResponse {}))
        })
        .await
    }

    async fn resume_queue(
        &self,
        request: Request<pb::ResumeQueueRequest>,
    ) -> Result<Response<pb::ResumeQueueResponse>, Status> {
        let span = admin_span("ResumeQueue", &request.get_ref().queue, request.metadata());
        self.observed("ResumeQueue", span, async move {
            let queue = validate::queue_name(&request.into_inner().queue)?;
            self.engine
                .set_paused(&queue, false)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::ResumeQueueResponse {}))
        })
        .await
    }

    async fn purge_queue(
        &self,
        request: Request<pb::PurgeQueueRequest>,
    ) -> Result<Response<pb::PurgeQueueResponse>, Status> {
        let span = admin_span("PurgeQueue", &request.get_ref().queue, request.metadata());
        self.observed("PurgeQueue", span, async move {
            let request = request.into_inner();
            let queue = validate::queue_name(&request.queue)?;
            let target = validate::purge_target(request.target())?;
            let purged = self
                .engine
                .purge(&queue, target)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::PurgeQueueResponse {
                purged_job_count: purged as u64,
            }))
        })
        .await
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let span = admin_span("ListJobs", &request.get_ref().queue, request.metadata());
        self.observed("ListJobs", span, async move {
            let request = request.into_inner();
            let queue = validate::queue_name(&request.queue)?;
            let size = validate::page_size(request.page_size)?;
            let state = validate::job_state_filter(request.state)?;
            let after = validate::job_page_token(&request.page_token)?;
            let page = self
                .engine
                .list_jobs(&queue, state, after, size)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::ListJobsResponse {
                jobs: page
                    .jobs
                    .into_iter()
                    .map(|j| convert::job_info(&queue, j))
                    .collect(),
                next_page_token: page.next.map(|id| id.to_string()).unwrap_or_default(),
            }))
        })
        .await
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let span = admin_span("GetJob", &request.get_ref().queue, request.metadata());
        self.observed("GetJob", span, async move {
            let request = request.into_inner();
            let (queue, id) = validate::job_ref(&request.queue, &request.job_id)?;
            let (queue, status) = self
                .engine
                .find_job(queue.as_ref(), &id)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::GetJobResponse {
                job: Some(convert::job_info(&queue, status)),
            }))
        })
        .await
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let span = admin_span("CancelJob", &request.get_ref().queue, request.metadata());
        self.observed("CancelJob", span, async move {
            let request = request.into_inner();
            let (queue, id) = validate::job_ref(&request.queue, &request.job_id)?;
            self.engine
                .cancel_job(queue.as_ref(), &id)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::CancelJobResponse {}))
        })
        .await
    }

    async fn redrive_jobs(
        &self,
        request: Request<pb::RedriveJobsRequest>,
    ) -> Result<Response<pb::RedriveJobsResponse>, Status> {
        let span = admin_span("RedriveJobs", &request.get_ref().queue, request.metadata());
        self.observed("RedriveJobs", span, async move {
            let request = request.into_inner();
            let queue = validate::queue_name(&request.queue)?;
            let ids = validate::redrive_ids(request.all, &request.job_ids)?;
            let moved = self
                .engine
                .redrive(&queue, ids.as_deref())
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::RedriveJobsResponse {
                redriven_job_count: moved as u64,
            }))
        })
        .await
    }
}

/// The span an Admin RPC runs in (see [`observe::rpc_span`]).
fn admin_span(method: &'static str, queue: &str, metadata: &MetadataMap) -> tracing::Span {
    observe::rpc_span("jobq.v1.Admin", method, queue, metadata)
}
