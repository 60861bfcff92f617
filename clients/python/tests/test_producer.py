"""Producers against the real server."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Server

import jobq


async def test_enqueue_returns_the_id_and_an_idempotency_key_stores_one_job(
    client: jobq.Client, server: Server
) -> None:
    first = await client.enqueue("emails", "alice@example.com", metadata={"t": "welcome"})
    assert first.id and not first.duplicate
    keyed = await client.enqueue("emails", b"bob@example.com", idempotency_key="order-7")
    again = await client.enqueue("emails", b"bob@example.com", idempotency_key="order-7")
    assert again == jobq.Enqueued(keyed.id, duplicate=True)
    counts = await server.queue_counts("emails")
    assert counts.ready == 2
    info = await server.job("emails", first.id)
    assert info.job.payload == b"alice@example.com"
    assert info.job.metadata["t"] == "welcome"


async def test_many_concurrent_producers_share_one_stream(
    client: jobq.Client, server: Server
) -> None:
    async def produce(n: int) -> list[str]:
        return [(await client.enqueue("bulk", f"{n}-{i}")).id for i in range(50)]

    ids = [i for batch in await asyncio.gather(*(produce(n) for n in range(16))) for i in batch]
    assert len(set(ids)) == 16 * 50
    assert (await server.queue_counts("bulk")).ready == 16 * 50


async def test_a_refusal_names_its_code_and_a_batch_is_all_or_none(
    client: jobq.Client, server: Server
) -> None:
    with pytest.raises(jobq.JobqError) as bad:
        await client.enqueue("no spaces allowed", b"x")
    assert bad.value.code == "INVALID_ARGUMENT"
    stored = await client.enqueue_batch(
        "batched", [jobq.NewJob(b"a"), jobq.NewJob("b", priority=5, delay=60.0)]
    )
    assert len(stored) == 2
    counts = await server.queue_counts("batched")
    assert (counts.ready, counts.scheduled) == (1, 1)


async def test_a_full_queue_is_resource_exhausted_and_wait_for_room_waits() -> None:
    small = Server(env={"JOBQ_QUEUE_CAPACITY": "1"}).start()
    try:
        async with jobq.Client(small.address) as client:
            await client.enqueue("tiny", b"1")
            with pytest.raises(jobq.JobqError) as full:
                await client.enqueue("tiny", b"2")
            assert full.value.code == "RESOURCE_EXHAUSTED"
            waiting = asyncio.ensure_future(client.enqueue("tiny", b"2", wait_for_room=True))
            await asyncio.sleep(0.2)
            assert not waiting.done()

            async def take(job: jobq.Job) -> None:
                pass

            stop = asyncio.Event()
            worker = asyncio.ensure_future(
                client.worker("tiny", concurrency=1).run(take, stop=stop, handle_signals=False)
            )
            stored = await asyncio.wait_for(waiting, 20)
            assert stored.id
            stop.set()
            await worker
    finally:
        small.kill()


def test_the_sync_client_enqueues_from_plain_code(server: Server) -> None:
    with jobq.SyncClient(server.address) as client:
        stored = client.enqueue("sync", b"from flask")
        assert stored.id
        assert len(client.enqueue_batch("sync", [jobq.NewJob(b"a"), jobq.NewJob(b"b")])) == 2
