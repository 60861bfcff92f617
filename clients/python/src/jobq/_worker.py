"""The worker runtime: a StreamLeases stream with credits equal to the
concurrency, each job run by the handler in a task of its own, acked or
nacked on the stream, its lease extended while the handler runs; drained on
SIGTERM or SIGINT, and reopened with backoff when the connection drops."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc

from . import _trace
from ._errors import Permanent, Retry
from ._wire import duration, refused
from .v1 import jobq_pb2, jobq_pb2_grpc

log = logging.getLogger("jobq")

Handler: TypeAlias = Callable[["Job"], Awaitable[None]] | Callable[["Job"], None]


@dataclass(frozen=True)
class Job:
    """One delivery of a job to this worker."""

    id: str
    queue: str
    payload: bytes
    metadata: dict[str, str]
    priority: int
    attempt: int
    max_attempts: int
    lease_token: str

    @property
    def text(self) -> str:
        """The payload as UTF-8 text."""
        return self.payload.decode()


@dataclass
class WorkerStats:
    """What a worker did until it stopped."""

    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    reconnects: int = 0


class _Session:
    """One StreamLeases stream: what to send on it, and whether it is open."""

    def __init__(self) -> None:
        self.outgoing: asyncio.Queue[jobq_pb2.StreamLeasesRequest | None] = asyncio.Queue()
        self.open = True
        self._next_id = 0

    def request_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def requests(self) -> AsyncIterator[jobq_pb2.StreamLeasesRequest]:
        while (request := await self.outgoing.get()) is not None:
            yield request


class Worker:
    """Runs a handler on `queue`'s jobs. Made by `Client.worker`."""

    def __init__(
        self,
        stub: jobq_pb2_grpc.JobQueueStub,
        metadata: Sequence[tuple[str, str]],
        queue: str,
        *,
        concurrency: int,
        lease_duration: float,
        grace: float,
        reconnect_max: float,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self._stub = stub
        self._metadata = tuple(metadata)
        self.queue = queue
        self.concurrency = concurrency
        self.lease_duration = lease_duration
        self.grace = grace
        self.reconnect_max = reconnect_max
        self.stats = WorkerStats()

    async def run(
        self,
        handler: Handler,
        *,
        stop: asyncio.Event | None = None,
        handle_signals: bool = True,
    ) -> WorkerStats:
        """Works jobs until `stop` is set (or, with `handle_signals`, until
        SIGTERM or SIGINT): then takes no new job, lets the handlers in
        flight finish and settle for up to `grace` seconds, and returns.

        The handler returns to ack the job; raises `jobq.Retry` to try it
        again (after its delay, or the queue's backoff), `jobq.Permanent`
        to dead-letter it, or anything else to retry it with the backoff.
        A plain function runs in a thread pool; a coroutine on the loop."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        installed = []
        for sig in signals:
            try:
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):
                pass  # not the main thread, or not a Unix loop
        backoff = 0.1
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            try:
                while not stop.is_set():
                    try:
                        await self._session(handler, stop, pool)
                        backoff = 0.1
                    except grpc.aio.AioRpcError as error:
                        if stop.is_set():
                            break
                        self.stats.reconnects += 1
                        log.warning(
                            "worker stream on %s lost (%s); reconnecting in %.1fs",
                            self.queue,
                            refused(error),
                            backoff,
                        )
                        # asyncio's own TimeoutError: not the builtin before 3.11.
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(stop.wait(), backoff)
                        backoff = min(backoff * 2, self.reconnect_max)
            finally:
                for sig in installed:
                    loop.remove_signal_handler(sig)
        return self.stats

    async def _session(
        self, handler: Handler, stop: asyncio.Event, pool: ThreadPoolExecutor
    ) -> None:
        session = _Session()
        session.outgoing.put_nowait(
            jobq_pb2.StreamLeasesRequest(
                open=jobq_pb2.StreamOpen(
                    queue=self.queue,
                    credits=self.concurrency,
                    lease_duration=duration(self.lease_duration),
                )
            )
        )
        call = self._stub.StreamLeases(session.requests(), metadata=self._metadata)
        in_flight: set[asyncio.Task[None]] = set()
        reader = asyncio.ensure_future(self._read(call, handler, session, in_flight, pool))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # raises what ended the stream
                return
            # Stopping: no new jobs; the ones held finish and settle.
            session.outgoing.put_nowait(jobq_pb2.StreamLeasesRequest(drain=jobq_pb2.StreamDrain()))
            if in_flight:
                _, late = await asyncio.wait(in_flight, timeout=self.grace)
                for task in late:
                    task.cancel()
                if late:
                    await asyncio.wait(late)
            session.open = False
            session.outgoing.put_nowait(None)  # half-close: the server ends the stream
            # The server ends the stream once it is half-closed; past the
            # grace it is cut.
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.TimeoutError):
                await asyncio.wait_for(reader, self.grace)
        finally:
            session.open = False
            stopping.cancel()
            if not reader.done():
                reader.cancel()
                call.cancel()

    async def _read(
        self,
        call: Any,
        handler: Handler,
        session: _Session,
        in_flight: set[asyncio.Task[None]],
        pool: ThreadPoolExecutor,
    ) -> None:
        async for message in call:
            kind = message.WhichOneof("kind")
            if kind == "lease":
                task = asyncio.ensure_future(self._work(handler, message.lease, session, pool))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            elif kind == "result" and message.result.code != 0:
                log.debug("settle refused: %s", message.result.message)

    async def _work(
        self,
        handler: Handler,
        lease: jobq_pb2.Lease,
        session: _Session,
        pool: ThreadPoolExecutor,
    ) -> None:
        job = Job(
            id=lease.job.id,
            queue=lease.job.queue or self.queue,
            payload=bytes(lease.job.payload),
            metadata=dict(lease.job.metadata),
            priority=lease.job.priority,
            attempt=lease.attempt,
            max_attempts=lease.job.max_attempts,
            lease_token=lease.lease_token,
        )
        granted = (
            lease.lease_duration.ToTimedelta().total_seconds()
            if lease.HasField("lease_duration")
            else self.lease_duration
        )
        extender = asyncio.ensure_future(self._extend(job, granted, session))
        try:
            with _trace.span(job.queue, job.id, job.attempt, job.metadata):
                if inspect.iscoroutinefunction(handler):
                    await handler(job)
                else:
                    await asyncio.get_running_loop().run_in_executor(pool, handler, job)
            outcome = jobq_pb2.StreamLeasesRequest(
                ack=jobq_pb2.StreamAck(request_id=session.request_id(), lease_token=job.lease_token)
            )
            self.stats.succeeded += 1
        except asyncio.CancelledError:
            # Past the grace period: back to the queue now, not when the
            # lease runs out.
            self._settle(session, self._nack(session, job, "the worker stopped first", 0.0))
            raise
        except Retry as retry:
            outcome = self._nack(session, job, retry.reason or "retry", retry.delay)
            self.stats.retried += 1
        except Permanent as permanent:
            nack = jobq_pb2.StreamNack(
                request_id=session.request_id(),
                lease_token=job.lease_token,
                dead_letter=True,
                reason=permanent.reason,
            )
            outcome = jobq_pb2.StreamLeasesRequest(nack=nack)
            self.stats.dead_lettered += 1
        except Exception as error:
            outcome = self._nack(session, job, f"{type(error).__name__}: {error}", None)
            self.stats.retried += 1
        finally:
            extender.cancel()
        self._settle(session, outcome)

    @staticmethod
    def _nack(
        session: _Session, job: Job, reason: str, delay: float | None
    ) -> jobq_pb2.StreamLeasesRequest:
        nack = jobq_pb2.StreamNack(
            request_id=session.request_id(), lease_token=job.lease_token, reason=reason
        )
        if delay is not None:
            nack.retry_delay.CopyFrom(duration(delay))
        return jobq_pb2.StreamLeasesRequest(nack=nack)

    @staticmethod
    def _settle(session: _Session, outcome: jobq_pb2.StreamLeasesRequest) -> None:
        # A stream that ended gave its leases back already: the job comes
        # again, and this outcome has nothing left to settle.
        if session.open:
            session.outgoing.put_nowait(outcome)

    async def _extend(self, job: Job, lease: float, session: _Session) -> None:
        """Extends the lease two thirds of the way through, again and again,
        while the handler runs."""
        while session.open:
            await asyncio.sleep(lease * 2 / 3)
            extend = jobq_pb2.StreamExtend(
                request_id=session.request_id(),
                lease_token=job.lease_token,
                lease_duration=duration(lease),
            )
            self._settle(session, jobq_pb2.StreamLeasesRequest(extend=extend))
