//! The `jobq.v1.Schedules` RPCs, for recurring jobs, served by the
//! [`AdminService`]: both are operator APIs over the same engine, limits
//! and RPC figures.
//!
//! Each RPC is a few lines: check the request (`schedule_settings.rs`),
//! call the engine, convert the answer.

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::AdminService;
use super::pb::{self, schedules_server::Schedules};
use super::schedule_settings::{page_token, schedule_name, schedule_to_pb};
use super::{observe, status, validate};
use crate::schedule::Upserted;

#[tonic::async_trait]
impl Schedules for AdminService {
    async fn set_schedule(
        &self,
        request: Request<pb::SetScheduleRequest>,
    ) -> Result<Response<pb::SetScheduleResponse>, Status> {
        let queue = request
            .get_ref()
            .settings
            .as_ref()
            .map_or("", |s| s.queue.as_str());
        let span = span("SetSchedule", queue, request.metadata());
        self.observed("SetSchedule", span, async move {
            let request = request.into_inner();
            let name = schedule_name(&request.name)?;
            let spec = self.limits.schedule_spec(request.settings)?;
            let (info, upserted) = self
                .engine
                .set_schedule(name, spec)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::SetScheduleResponse {
                schedule: Some(schedule_to_pb(info)),
                created: upserted == Upserted::Created,
                changed: upserted != Upserted::Unchanged,
            }))
        })
        .await
    }

    async fn get_schedule(
        &self,
        request: Request<pb::GetScheduleRequest>,
    ) -> Result<Response<pb::GetScheduleResponse>, Status> {
        let span = span("GetSchedule", "", request.metadata());
        self.observed("GetSchedule", span, async move {
            let name = schedule_name(&request.into_inner().name)?;
            let info = self
                .engine
                .schedule_info(&name)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::GetScheduleResponse {
                schedule: Some(schedule_to_pb(info)),
            }))
        })
        .await
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let span = span("ListSchedules", "", request.metadata());
        self.observed("ListSchedules", span, async move {
            let request = request.into_inner();
            let size = validate::page_size(request.page_size)?;
            let after = page_token(&request.page_token)?;
            let mut page = self
                .engine
                .list_schedules(after.as_ref(), size + 1)
                .await
                .map_err(status::from_engine)?;
            let next_page_token =
                super::convert::next_token(&mut page, size, |info| info.name.to_string());
            Ok(Response::new(pb::ListSchedulesResponse {
                schedules: page.into_iter().map(schedule_to_pb).collect(),
                next_page_token,
            }))
        })
        .await
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        let span = span("DeleteSchedule", "", request.metadata());
        self.observed("DeleteSchedule", span, async move {
            let name = schedule_name(&request.into_inner().name)?;
            self.engine
                .delete_schedule(&name)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::DeleteScheduleResponse {}))
        })
        .await
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::PauseScheduleRequest>,
    ) -> Result<Response<pb::PauseScheduleResponse>, Status> {
        let span = span("PauseSchedule", "", request.metadata());
        self.observed("PauseSchedule", span, async move {
            let name = schedule_name(&request.into_inner().name)?;
            let info = self
                .engine
                .set_schedule_paused(&name, true)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::PauseScheduleResponse {
                schedule: Some(schedule_to_pb(info)),
            }))
        })
        .await
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::ResumeScheduleRequest>,
    ) -> Result<Response<pb::ResumeScheduleResponse>, Status> {
        let span = span("ResumeSchedule", "", request.metadata());
        self.observed("ResumeSchedule", span, async move {
            let name = schedule_name(&request.into_inner().name)?;
            let info = self
                .engine
                .set_schedule_paused(&name, false)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::ResumeScheduleResponse {
                schedule: Some(schedule_to_pb(info)),
            }))
        })
        .await
    }

    async fn trigger_schedule(
        &self,
        request: Request<pb::TriggerScheduleRequest>,
    ) -> Result<Response<pb::TriggerScheduleResponse>, Status> {
        let span = span("TriggerSchedule", "", request.metadata());
        self.observed("TriggerSchedule", span, async move {
            let name = schedule_name(&request.into_inner().name)?;
            let job = self
                .engine
                .trigger_schedule(&name)
                .await
                .map_err(status::from_engine)?;
            Ok(Response::new(pb::TriggerScheduleResponse {
                job_id: job.id.to_string(),
            }))
        })
        .await
    }
}

fn span(method: &'static str, queue: &str, metadata: &MetadataMap) -> tracing::Span {
    observe::rpc_span("jobq.v1.Schedules", method, queue, metadata)
}
