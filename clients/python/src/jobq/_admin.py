"""Operator calls: queues, jobs and schedules, through the Admin and
Schedules services. Results are the protocol's messages (typed by the
generated .pyi files); refusals raise JobqError."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

import grpc

from ._wire import refused
from .v1 import admin_pb2, admin_pb2_grpc, schedules_pb2, schedules_pb2_grpc

T = TypeVar("T")

_TARGETS = {"ready": admin_pb2.PURGE_TARGET_READY, "dead": admin_pb2.PURGE_TARGET_DEAD}


async def _call(reply: Awaitable[T]) -> T:
    try:
        return await reply
    except grpc.aio.AioRpcError as error:
        raise refused(error) from error


class Admin:
    """`client.admin`: what an operator does, from code."""

    def __init__(self, channel: Any, metadata: Sequence[tuple[str, str]]) -> None:
        # The generated stubs are untyped; their messages are typed (.pyi).
        self._queues: Any = admin_pb2_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
        self._schedules: Any = schedules_pb2_grpc.SchedulesStub(channel)  # type: ignore[no-untyped-call]
        self._metadata = tuple(metadata)

    async def queues(self) -> list[admin_pb2.QueueInfo]:
        """Every queue, with its settings and counts."""
        found: list[admin_pb2.QueueInfo] = []
        token = ""
        while True:
            request = admin_pb2.ListQueuesRequest(page_size=1000, page_token=token)
            page = await _call(self._queues.ListQueues(request, metadata=self._metadata))
            found.extend(page.queues)
            token = page.next_page_token
            if not token:
                return found

    async def queue(self, queue: str) -> admin_pb2.QueueInfo:
        """One queue, with its settings and counts."""
        request = admin_pb2.GetQueueRequest(queue=queue)
        reply = await _call(self._queues.GetQueue(request, metadata=self._metadata))
        info: admin_pb2.QueueInfo = reply.queue
        return info

    async def pause(self, queue: str) -> None:
        """Stops leasing from `queue`; enqueues still go in."""
        request = admin_pb2.PauseQueueRequest(queue=queue)
        await _call(self._queues.PauseQueue(request, metadata=self._metadata))

    async def resume(self, queue: str) -> None:
        """Starts leasing from `queue` again."""
        request = admin_pb2.ResumeQueueRequest(queue=queue)
        await _call(self._queues.ResumeQueue(request, metadata=self._metadata))

    async def purge(self, queue: str, target: str) -> int:
        """Deletes `queue`'s ready or dead jobs ("ready" or "dead"); how many."""
        if target not in _TARGETS:
            raise ValueError(f"purge target must be 'ready' or 'dead', not {target!r}")
        request = admin_pb2.PurgeQueueRequest(queue=queue, target=_TARGETS[target])
        reply = await _call(self._queues.PurgeQueue(request, metadata=self._metadata))
        return int(reply.purged_job_count)

    async def delete_queue(self, queue: str, *, force: bool = False) -> int:
        """Deletes `queue` and its jobs (leased ones only with `force`)."""
        request = admin_pb2.DeleteQueueRequest(queue=queue, force=force)
        reply = await _call(self._queues.DeleteQueue(request, metadata=self._metadata))
        return int(reply.deleted_job_count)

    async def job(self, queue: str, job_id: str) -> admin_pb2.JobInfo:
        """One job: its state, attempts and failures."""
        request = admin_pb2.GetJobRequest(queue=queue, job_id=job_id)
        reply = await _call(self._queues.GetJob(request, metadata=self._metadata))
        info: admin_pb2.JobInfo = reply.job
        return info

    async def jobs(
        self, queue: str, state: admin_pb2.JobState = admin_pb2.JOB_STATE_UNSPECIFIED
    ) -> AsyncIterator[admin_pb2.JobInfo]:
        """`queue`'s jobs in id order, in one state (`admin_pb2.JOB_STATE_DEAD`,
        ...) or all, page by page."""
        token = ""
        while True:
            request = admin_pb2.ListJobsRequest(
                queue=queue, state=state, page_size=1000, page_token=token
            )
            page = await _call(self._queues.ListJobs(request, metadata=self._metadata))
            for job in page.jobs:
                yield job
            token = page.next_page_token
            if not token:
                return

    async def cancel(self, queue: str, job_id: str) -> None:
        """Removes a job no worker holds."""
        request = admin_pb2.CancelJobRequest(queue=queue, job_id=job_id)
        await _call(self._queues.CancelJob(request, metadata=self._metadata))

    async def redrive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Moves dead jobs back to ready (those named, or all); how many."""
        request = admin_pb2.RedriveJobsRequest(
            queue=queue, job_ids=list(job_ids or []), all=job_ids is None
        )
        reply = await _call(self._queues.RedriveJobs(request, metadata=self._metadata))
        return int(reply.redriven_job_count)

    async def set_schedule(
        self, name: str, settings: schedules_pb2.ScheduleSettings
    ) -> schedules_pb2.Schedule:
        """Creates a schedule or gives it new settings."""
        request = schedules_pb2.SetScheduleRequest(name=name, settings=settings)
        reply = await _call(self._schedules.SetSchedule(request, metadata=self._metadata))
        schedule: schedules_pb2.Schedule = reply.schedule
        return schedule

    async def schedule(self, name: str) -> schedules_pb2.Schedule:
        """One schedule, with its next fires and recent ones."""
        request = schedules_pb2.GetScheduleRequest(name=name)
        reply = await _call(self._schedules.GetSchedule(request, metadata=self._metadata))
        schedule: schedules_pb2.Schedule = reply.schedule
        return schedule

    async def schedules(self) -> list[schedules_pb2.Schedule]:
        """Every schedule, by name."""
        found: list[schedules_pb2.Schedule] = []
        token = ""
        while True:
            request = schedules_pb2.ListSchedulesRequest(page_size=1000, page_token=token)
            page = await _call(self._schedules.ListSchedules(request, metadata=self._metadata))
            found.extend(page.schedules)
            token = page.next_page_token
            if not token:
                return found

    async def pause_schedule(self, name: str, *, paused: bool = True) -> schedules_pb2.Schedule:
        """Pauses a schedule (or, with `paused=False`, resumes it)."""
        if paused:
            call = self._schedules.PauseSchedule(
                schedules_pb2.PauseScheduleRequest(name=name), metadata=self._metadata
            )
        else:
            call = self._schedules.ResumeSchedule(
                schedules_pb2.ResumeScheduleRequest(name=name), metadata=self._metadata
            )
        reply = await _call(call)
        schedule: schedules_pb2.Schedule = reply.schedule
        return schedule

    async def trigger_schedule(self, name: str) -> str:
        """Enqueues the schedule's job now; its id."""
        request = schedules_pb2.TriggerScheduleRequest(name=name)
        reply = await _call(self._schedules.TriggerSchedule(request, metadata=self._metadata))
        return str(reply.job_id)

    async def delete_schedule(self, name: str) -> None:
        """Deletes a schedule; the jobs it made stay."""
        request = schedules_pb2.DeleteScheduleRequest(name=name)
        await _call(self._schedules.DeleteSchedule(request, metadata=self._metadata))
