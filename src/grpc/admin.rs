//! [`AdminService`]: the `jobq.v1.Admin` RPCs for operators.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::convert::{self, Limits, MAX_ATTEMPTS_LIMIT, MAX_DELAY};
use super::observe;
use super::pb::{self, admin_server::Admin};
use super::status;
use crate::engine::{PurgeTarget, QueueInfo, QueueUpdate, SharedEngine};
use crate::metrics::RpcMetrics;
use crate::queue::{JobId, JobState, JobStatus, QueueName};

/// Most items on one page.
const MAX_PAGE: u32 = 1000;
/// Items on a page when the request names no size.
const DEFAULT_PAGE: u32 = 100;
/// Largest queue capacity an operator may set.
const MAX_CAPACITY: u32 = 100_000_000;

/// Serves `jobq.v1.Admin` from an engine.
#[derive(Clone, Debug)]
pub struct AdminService {
    engine: SharedEngine,
    limits: Limits,
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
    async fn observed<T>(
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
            let size = page_size(request.page_size)?;
            let after = match request.page_token.as_str() {
                "" => None,
                token => Some(QueueName::new(token).map_err(|_| bad_page_token(token))?),
            };
            let mut page = self
                .engine
                .list_queues(after.as_ref(), size + 1)
                .await
                .map_err(status::from_engine)?;
            let next_page_token = next_token(&mut page, size, |info| info.name.to_string());
            let queues = page.into_iter().map(queue_info).collect();
            Ok(Response::new(pb::ListQueuesResponse {
                queues,
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
            let queue = convert::queue_name(&request.into_inner().queue)?;
            let info = self
                .engine
                .queue_info(&queue)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::GetQueueResponse {
                queue: Some(queue_info(info)),
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
            let queue = convert::queue_name(&request.queue)?;
            let update = self.queue_update(&request)?;
            let info = self
                .engine
                .update_queue(&queue, update, request.allow_missing)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::UpdateQueueResponse {
                queue: Some(queue_info(info)),
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
            let queue = convert::queue_name(&request.queue)?;
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
            let queue = convert::queue_name(&request.into_inner().queue)?;
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
            let queue = convert::queue_name(&request.into_inner().queue)?;
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
            let queue = convert::queue_name(&request.queue)?;
            let target = match request.target() {
                pb::PurgeTarget::Ready => PurgeTarget::Ready,
                pb::PurgeTarget::Dead => PurgeTarget::Dead,
                pb::PurgeTarget::Unspecified => {
                    return Err(Status::invalid_argument(
                        "target: is required: PURGE_TARGET_READY or PURGE_TARGET_DEAD",
                    ));
                }
            };
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
            let queue = convert::queue_name(&request.queue)?;
            let size = page_size(request.page_size)?;
            let state = match pb::JobState::try_from(request.state) {
                Ok(state) => job_state_from_pb(state),
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "state: {} is not a JobState",
                        request.state
                    )));
                }
            };
            let after = match request.page_token.as_str() {
                "" => None,
                token => Some(token.parse::<JobId>().map_err(|_| bad_page_token(token))?),
            };
            let page = self
                .engine
                .list_jobs(&queue, state, after, size)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::ListJobsResponse {
                jobs: page.jobs.into_iter().map(|j| job_info(&queue, j)).collect(),
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
            let (queue, id) = job_ref(&request.queue, &request.job_id)?;
            let (queue, status) = self
                .engine
                .find_job(queue.as_ref(), &id)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::GetJobResponse {
                job: Some(job_info(&queue, status)),
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
            let (queue, id) = job_ref(&request.queue, &request.job_id)?;
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
            let queue = convert::queue_name(&request.queue)?;
            let ids = match (request.all, request.job_ids.len()) {
                (true, 0) => None,
                (true, _) => {
                    return Err(Status::invalid_argument(
                        "job_ids: must be empty when all is true",
                    ));
                }
                (false, 1..=1000) => Some(
                    request
                        .job_ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| {
                            id.parse::<JobId>().map_err(|_| {
                                Status::invalid_argument(format!(
                                    "job_ids[{i}]: {id:?} is not a job id"
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                (false, n) => {
                    return Err(Status::invalid_argument(format!(
                        "job_ids: has {n} ids; send 1 to 1000, or set all"
                    )));
                }
            };
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

impl AdminService {
    /// Checks each setting an update names.
    fn queue_update(&self, request: &pb::UpdateQueueRequest) -> Result<QueueUpdate, Status> {
        let capacity = match request.capacity {
            Some(c) if c == 0 || c > MAX_CAPACITY => {
                return Err(Status::invalid_argument(format!(
                    "capacity: is {c}; it must be from 1 to {MAX_CAPACITY}"
                )));
            }
            c => c.map(|c| c as usize),
        };
        let max_attempts = match request.max_attempts {
            Some(n) if n == 0 || n > MAX_ATTEMPTS_LIMIT => {
                return Err(Status::invalid_argument(format!(
                    "max_attempts: is {n}; it must be from 1 to {MAX_ATTEMPTS_LIMIT}"
                )));
            }
            n => n,
        };
        let backoff = |field: &str, d: Option<prost_types::Duration>| -> Result<_, Status> {
            let Some(d) = d else {
                return Ok(None);
            };
            let d = Duration::try_from(d).map_err(|_| {
                Status::invalid_argument(format!("{field}: is not a valid non-negative duration"))
            })?;
            if d > MAX_DELAY {
                return Err(Status::invalid_argument(format!(
                    "{field}: is more than 365 days"
                )));
            }
            Ok(Some(d))
        };
        Ok(QueueUpdate {
            capacity,
            lease_duration: self
                .limits
                .lease_duration("lease_duration", request.lease_duration)?,
            max_attempts,
            backoff_base: backoff("backoff_base", request.backoff_base)?,
            backoff_cap: backoff("backoff_cap", request.backoff_cap)?,
            paused: request.paused,
        })
    }
}

/// The span an Admin RPC runs in (see [`observe::rpc_span`]).
fn admin_span(method: &'static str, queue: &str, metadata: &MetadataMap) -> tracing::Span {
    observe::rpc_span("jobq.v1.Admin", method, queue, metadata)
}

fn page_size(size: u32) -> Result<usize, Status> {
    match size {
        0 => Ok(DEFAULT_PAGE as usize),
        n if n <= MAX_PAGE => Ok(n as usize),
        n => Err(Status::invalid_argument(format!(
            "page_size: is {n}; it must be from 1 to {MAX_PAGE}"
        ))),
    }
}

fn bad_page_token(token: &str) -> Status {
    Status::invalid_argument(format!(
        "page_token: {token:?} is not a token this list returned"
    ))
}

/// Cuts a page fetched one item long to `size`, returning the token of the
/// next page if there is one.
fn next_token<T>(page: &mut Vec<T>, size: usize, token: impl Fn(&T) -> String) -> String {
    if page.len() <= size {
        return String::new();
    }
    page.truncate(size);
    page.last().map(token).unwrap_or_default()
}

/// A job named by id, and by queue when the request gives one.
fn job_ref(queue: &str, job_id: &str) -> Result<(Option<QueueName>, JobId), Status> {
    let queue = match queue {
        "" => None,
        name => Some(convert::queue_name(name)?),
    };
    let id = job_id.parse::<JobId>().map_err(|_| {
        Status::invalid_argument(format!(
            "job_id: {job_id:?} is not a job id (a 26-character ULID)"
        ))
    })?;
    Ok((queue, id))
}

fn job_state_from_pb(state: pb::JobState) -> Option<JobState> {
    match state {
        pb::JobState::Unspecified => None,
        pb::JobState::Ready => Some(JobState::Ready),
        pb::JobState::Scheduled => Some(JobState::Scheduled),
        pb::JobState::Leased => Some(JobState::Leased),
        pb::JobState::Dead => Some(JobState::Dead),
        pb::JobState::Acked => Some(JobState::Acked),
        pb::JobState::Cancelled => Some(JobState::Cancelled),
    }
}

fn job_state_to_pb(state: JobState) -> pb::JobState {
    match state {
        JobState::Ready => pb::JobState::Ready,
        JobState::Scheduled => pb::JobState::Scheduled,
        JobState::Leased => pb::JobState::Leased,
        JobState::Dead => pb::JobState::Dead,
        JobState::Acked => pb::JobState::Acked,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

fn job_info(queue: &QueueName, status: JobStatus) -> pb::JobInfo {
    pb::JobInfo {
        job: Some(convert::job(queue, &status.job)),
        state: job_state_to_pb(status.state).into(),
        attempts: status.attempts,
        last_error: status.last_error.unwrap_or_default(),
        failures: status
            .history
            .into_iter()
            .map(|f| pb::AttemptFailure {
                attempt: f.attempt,
                error: f.error,
                time: Some(convert::timestamp(f.at)),
            })
            .collect(),
        finish_time: status.finished_at.map(convert::timestamp),
    }
}

fn queue_info(info: QueueInfo) -> pb::QueueInfo {
    let duration = |d: Duration| prost_types::Duration::try_from(d).ok();
    let config = &info.config;
    pb::QueueInfo {
        name: info.name.to_string(),
        settings: Some(pb::QueueSettings {
            capacity: u32::try_from(config.capacity).unwrap_or(u32::MAX),
            lease_duration: duration(config.lease_duration),
            max_attempts: config.max_attempts,
            backoff_base: duration(config.retry.base),
            backoff_cap: duration(config.retry.cap),
        }),
        paused: info.paused,
        counts: Some(pb::QueueCounts {
            ready: info.counts.ready as u64,
            scheduled: info.counts.scheduled as u64,
            leased: info.counts.leased as u64,
            dead: info.counts.dead as u64,
        }),
        totals: Some(pb::QueueTotals {
            enqueued: info.stats.enqueued,
            leased: info.stats.leased,
            acked: info.stats.acked,
            nacked: info.stats.nacked,
            expired: info.stats.expired,
            dead_lettered: info.stats.dead_lettered,
        }),
        oldest_ready_age: info.oldest_ready.map(|at| {
            duration(SystemTime::now().duration_since(at).unwrap_or_default()).unwrap_or_default()
        }),
    }
}
