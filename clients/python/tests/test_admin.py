"""Operator calls through client.admin against the real server."""

from __future__ import annotations

import asyncio

import pytest

import jobq
from jobq.v1 import admin_pb2, schedules_pb2


async def test_queues_and_jobs_pause_purge_redrive_and_cancel(client: jobq.Client) -> None:
    kept = await client.enqueue("ops", b"keep")
    await client.enqueue("ops", b"purged")
    assert [q.name for q in await client.admin.queues()] == ["ops"]
    await client.admin.pause("ops")
    assert (await client.admin.queue("ops")).paused
    await client.admin.resume("ops")
    await client.admin.cancel("ops", kept.id)
    assert (await client.admin.job("ops", kept.id)).state == admin_pb2.JOB_STATE_CANCELLED
    assert await client.admin.purge("ops", "ready") == 1
    dead = await client.enqueue("ops", b"dead", max_attempts=1)

    async def fail(job: jobq.Job) -> None:
        raise jobq.Permanent("no")

    stop = asyncio.Event()
    worker = asyncio.ensure_future(client.worker("ops").run(fail, stop=stop, handle_signals=False))
    for _ in range(200):
        if (await client.admin.queue("ops")).counts.dead == 1:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await worker
    listed = [j.job.id async for j in client.admin.jobs("ops", admin_pb2.JOB_STATE_DEAD)]
    assert listed == [dead.id]
    assert await client.admin.redrive("ops") == 1
    assert (await client.admin.queue("ops")).counts.ready == 1
    with pytest.raises(jobq.JobqError) as missing:
        await client.admin.queue("nope")
    assert missing.value.code == "NOT_FOUND"
    with pytest.raises(ValueError):
        await client.admin.purge("ops", "everything")


async def test_schedules_set_trigger_pause_and_delete(client: jobq.Client) -> None:
    settings = schedules_pb2.ScheduleSettings(
        queue="reports",
        job=schedules_pb2.JobTemplate(payload=b"build"),
        cron="0 3 * * *",
        time_zone="Europe/Paris",
    )
    made = await client.admin.set_schedule("nightly", settings)
    assert made.name == "nightly" and len(made.next_fire_times) > 0
    job_id = await client.admin.trigger_schedule("nightly")
    assert (await client.admin.job("reports", job_id)).job.payload == b"build"
    assert (await client.admin.pause_schedule("nightly")).paused
    assert not (await client.admin.pause_schedule("nightly", paused=False)).paused
    assert [s.name for s in await client.admin.schedules()] == ["nightly"]
    assert (await client.admin.schedule("nightly")).fired == 1
    await client.admin.delete_schedule("nightly")
    assert await client.admin.schedules() == []
