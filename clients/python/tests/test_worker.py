"""The worker runtime against the real server."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import threading
import time

import pytest
import trustme
from conftest import Server

import jobq
from jobq.v1 import admin_pb2


async def run_until(
    worker: jobq.Worker, handler: jobq.Handler, done: asyncio.Event
) -> jobq.WorkerStats:
    """Runs `worker` until `done`, for at most 30 s."""
    stop = asyncio.Event()
    running = asyncio.ensure_future(worker.run(handler, stop=stop, handle_signals=False))
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        stop.set()
    return await asyncio.wait_for(running, 30)


async def test_every_job_is_worked_and_acked(client: jobq.Client, server: Server) -> None:
    for i in range(20):
        await client.enqueue("emails", f"user{i}@example.com")
    seen: list[str] = []
    done = asyncio.Event()

    async def handle(job: jobq.Job) -> None:
        seen.append(job.text)
        if len(seen) == 20:
            done.set()

    stats = await run_until(client.worker("emails", concurrency=4), handle, done)
    assert sorted(seen) == sorted(f"user{i}@example.com" for i in range(20))
    assert stats.succeeded == 20
    counts = await server.queue_counts("emails")
    assert (counts.ready, counts.leased) == (0, 0)


async def test_retry_comes_again_and_permanent_dead_letters(
    client: jobq.Client, server: Server
) -> None:
    flaky = await client.enqueue("mail", "flaky")
    bad = await client.enqueue("mail", "mallory")
    crash = await client.enqueue("mail", "crash")
    attempts: dict[str, list[int]] = {}
    done = asyncio.Event()

    def handle(job: jobq.Job) -> None:  # a plain function: runs in a thread
        attempts.setdefault(job.text, []).append(job.attempt)
        if job.text == "mallory":
            raise jobq.Permanent("550 mailbox unavailable")
        if job.attempt == 1 and job.text == "flaky":
            raise jobq.Retry("smtp timeout", delay=0.1)
        if job.attempt == 1 and job.text == "crash":
            raise RuntimeError("boom")
        if len(attempts.get("flaky", [])) == 2 and len(attempts.get("crash", [])) == 2:
            asyncio.run_coroutine_threadsafe(_set(done), loop)

    loop = asyncio.get_running_loop()
    stats = await run_until(client.worker("mail", concurrency=2), handle, done)
    assert attempts == {"flaky": [1, 2], "mallory": [1], "crash": [1, 2]}
    assert (stats.retried, stats.dead_lettered) == (2, 1)
    assert (await server.job("mail", bad.id)).state == admin_pb2.JOB_STATE_DEAD
    dead = await server.job("mail", bad.id)
    assert dead.last_error == "550 mailbox unavailable"
    assert (await server.job("mail", flaky.id)).state == admin_pb2.JOB_STATE_ACKED
    crashed = await server.job("mail", crash.id)
    assert crashed.failures[0].error == "RuntimeError: boom"


async def _set(event: asyncio.Event) -> None:
    event.set()


async def test_a_handler_slower_than_its_lease_keeps_it(client: jobq.Client) -> None:
    await client.enqueue("slow", b"report")
    attempts: list[int] = []
    done = asyncio.Event()

    async def handle(job: jobq.Job) -> None:
        attempts.append(job.attempt)
        await asyncio.sleep(5)  # more than twice the lease
        done.set()

    worker = client.worker("slow", concurrency=2, lease_duration=2.0)
    stats = await run_until(worker, handle, done)
    assert attempts == [1], "the lease ran out and the job came again"
    assert stats.succeeded == 1


async def test_sigterm_lets_the_job_in_flight_finish_and_takes_no_new_one(
    client: jobq.Client, server: Server
) -> None:
    first = await client.enqueue("drain", b"first")
    started = asyncio.Event()
    release = asyncio.Event()

    async def handle(job: jobq.Job) -> None:
        started.set()
        await release.wait()

    running = asyncio.ensure_future(client.worker("drain", concurrency=1).run(handle))
    await asyncio.wait_for(started.wait(), 30)
    await client.enqueue("drain", b"second")
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.3)
    assert not running.done(), "the worker stopped before its job finished"
    release.set()
    stats = await asyncio.wait_for(running, 30)
    assert stats.succeeded == 1
    assert (await server.job("drain", first.id)).state == admin_pb2.JOB_STATE_ACKED
    counts = await server.queue_counts("drain")
    assert (counts.ready, counts.leased) == (1, 0), "the second job was left for another worker"


async def test_the_worker_reconnects_after_a_server_restart() -> None:
    server = Server().start()
    try:
        async with jobq.Client(server.address) as client:
            got: list[bytes] = []
            done = asyncio.Event()

            async def handle(job: jobq.Job) -> None:
                got.append(job.payload)
                if job.payload == b"after":
                    done.set()

            stop = asyncio.Event()
            worker = client.worker("q", concurrency=1, reconnect_max=0.5)
            running = asyncio.ensure_future(worker.run(handle, stop=stop, handle_signals=False))
            await client.enqueue("q", b"before")
            server.kill()
            server.start()  # the same address, an empty queue
            # The producer stream broke with the server: the next call
            # opens a new one.
            for _ in range(100):
                try:
                    await client.enqueue("q", b"after")
                    break
                except jobq.JobqError as error:
                    assert error.code == "UNAVAILABLE"
                    await asyncio.sleep(0.1)
            await asyncio.wait_for(done.wait(), 30)
            stop.set()
            stats = await asyncio.wait_for(running, 30)
            assert stats.reconnects >= 1
            assert got[-1] == b"after"
    finally:
        server.kill()


async def test_a_token_is_sent_and_a_missing_one_is_refused() -> None:
    tokens = "producer:producer-secret-0001,worker:worker-secret-00001"
    server = Server(env={"JOBQ_AUTH_TOKENS": tokens}).start()
    try:
        async with jobq.Client(server.address) as anonymous:
            with pytest.raises(jobq.JobqError) as refused:
                await anonymous.enqueue("q", b"x")
            assert refused.value.code == "UNAUTHENTICATED"
        async with jobq.Client(server.address, token="producer-secret-0001") as producer:
            assert (await producer.enqueue("q", b"x")).id
        async with jobq.Client(server.address, token="worker-secret-00001") as worker:
            done = asyncio.Event()

            async def handle(job: jobq.Job) -> None:
                done.set()

            stats = await run_until(worker.worker("q"), handle, done)
            assert stats.succeeded == 1
    finally:
        server.kill()


def test_a_sync_handler_runs_off_the_event_loop(server: Server) -> None:
    async def main() -> set[str]:
        async with jobq.Client(server.address) as client:
            for i in range(4):
                await client.enqueue("threads", str(i))
            names: set[str] = set()
            done = asyncio.Event()
            loop = asyncio.get_running_loop()

            def handle(job: jobq.Job) -> None:
                time.sleep(0.2)  # blocking: must not stall the loop
                names.add(threading.current_thread().name)
                if len(names) >= 1 and job.text == "3":
                    loop.call_soon_threadsafe(done.set)

            await run_until(client.worker("threads", concurrency=4), handle, done)
            return names

    names = asyncio.run(main())
    assert threading.main_thread().name not in names


async def test_tls_with_a_client_certificate(tmp_path: pathlib.Path) -> None:
    ca = trustme.CA()
    served = ca.issue_cert("127.0.0.1")
    clients_ca = trustme.CA()
    caller = clients_ca.issue_cert("worker.example")
    files = {
        "cert.pem": served.private_key_and_cert_chain_pem.bytes(),
        "key.pem": served.private_key_pem.bytes(),
        "clients.pem": clients_ca.cert_pem.bytes(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    server = Server(
        env={
            "JOBQ_TLS_CERT": str(tmp_path / "cert.pem"),
            "JOBQ_TLS_KEY": str(tmp_path / "key.pem"),
            "JOBQ_TLS_CLIENT_CA": str(tmp_path / "clients.pem"),
        }
    ).start()
    try:
        tls = jobq.Tls(
            ca=ca.cert_pem.bytes(),
            cert=caller.cert_chain_pems[0].bytes(),
            key=caller.private_key_pem.bytes(),
        )
        async with jobq.Client(server.address, tls=tls) as client:
            assert (await client.enqueue("secure", b"x")).id
        # Without the client certificate the handshake fails.
        async with jobq.Client(server.address, tls=jobq.Tls(ca=ca.cert_pem.bytes())) as bare:
            with pytest.raises(jobq.JobqError) as refused:
                await bare.enqueue("secure", b"y")
            assert refused.value.code == "UNAVAILABLE"
    finally:
        server.kill()
