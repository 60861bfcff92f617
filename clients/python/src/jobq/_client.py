"""The client: a channel to jobq, producer calls multiplexed over one
shared StreamEnqueue stream, and the worker runtime's factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from . import _trace
from ._admin import Admin
from ._errors import JobqError
from ._wire import code_name, duration, refused
from ._worker import Worker
from .v1 import jobq_pb2, jobq_pb2_grpc


@dataclass(frozen=True)
class Tls:
    """TLS for the channel: the CA that signed the server's certificate
    (PEM; None trusts the system's roots), and a client certificate and
    key (PEM) when the server asks for one."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None


@dataclass(frozen=True)
class Enqueued:
    """A stored job: its id, and whether its idempotency key had been seen
    within the window (so nothing new was stored)."""

    id: str
    duplicate: bool = False


@dataclass
class NewJob:
    """One job of a batch enqueue."""

    payload: bytes | str
    metadata: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    delay: float | None = None
    max_attempts: int = 0
    idempotency_key: str = ""


def new_job(job: NewJob) -> jobq_pb2.NewJob:
    """The message for `job`, with the current trace context in its
    metadata when OpenTelemetry is installed."""
    payload = job.payload.encode() if isinstance(job.payload, str) else bytes(job.payload)
    metadata = dict(job.metadata)
    _trace.inject(metadata)
    message = jobq_pb2.NewJob(
        payload=payload,
        metadata=metadata,
        priority=job.priority,
        max_attempts=job.max_attempts,
        idempotency_key=job.idempotency_key,
    )
    if job.delay is not None and job.delay > 0:
        message.delay.CopyFrom(duration(job.delay))
    return message


def _stream_error(code: grpc.StatusCode, details: str) -> JobqError:
    """Why the producer stream ended, as its callers are told."""
    # A write into a call the connection already lost ends it with grpc's
    # own INTERNAL: that is the stream breaking, to retry.
    if code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL):
        return JobqError(
            "UNAVAILABLE", f"the producer stream broke ({details}); retry with idempotency keys"
        )
    return JobqError(code.name, details)


class _ProducerStream:
    """One StreamEnqueue stream shared by every caller: each request gets
    an id, and the answer with that id completes its caller's future."""

    def __init__(self, stub: jobq_pb2_grpc.JobQueueStub, metadata: Sequence[tuple[str, str]]):
        self._call = stub.StreamEnqueue(metadata=metadata)
        self._pending: dict[int, asyncio.Future[jobq_pb2.StreamEnqueueResponse]] = {}
        self._next_id = 1
        self._writing = asyncio.Lock()
        self._opened = False
        self.broken = False
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def send(self, queue: str, job: jobq_pb2.NewJob) -> jobq_pb2.StreamEnqueueResponse:
        request_id = self._next_id
        self._next_id += 1
        answer: asyncio.Future[jobq_pb2.StreamEnqueueResponse] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[request_id] = answer
        request = jobq_pb2.StreamEnqueueRequest(request_id=request_id, queue=queue, job=job)
        try:
            async with self._writing:
                if not self._opened:
                    # The server answers the call's headers at once, or
                    # refuses it (a missing token): learn which before
                    # writing, since a write racing the refusal loses its
                    # reason inside grpc.
                    await self._call.initial_metadata()
                    if self._call.done():
                        self._pending.pop(request_id, None)
                        self.broken = True
                        raise await self._ended()
                    self._opened = True
                await self._call.write(request)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as error:
            # The call ended before this write: say why it ended (a
            # refused token, the server going away), not that it did.
            self._pending.pop(request_id, None)
            self.broken = True
            raise await self._ended() from error
        return await answer

    async def _ended(self) -> JobqError:
        """Why the call ended, once it has."""
        return _stream_error(await self._call.code(), await self._call.details() or "")

    async def _read(self) -> None:
        error = _stream_error(grpc.StatusCode.OK, "it ended")
        try:
            async for answer in self._call:
                waiting = self._pending.pop(answer.request_id, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer)
        except grpc.aio.AioRpcError as cut:
            error = _stream_error(cut.code(), cut.details() or "")
        finally:
            self.broken = True
            # Jobs whose answers never came may or may not be stored.
            for waiting in self._pending.values():
                if not waiting.done():
                    waiting.set_exception(error)
            self._pending.clear()

    async def close(self) -> None:
        self._call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Client:
    """A connection to jobq. Cheap to share: every producer call of the
    client goes over one stream, and workers open their own.

        async with jobq.Client("127.0.0.1:50051") as client:
            job = await client.enqueue("emails", b"alice@example.com")
    """

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        tls: Tls | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if tls is None:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
            )
            self._channel = grpc.aio.secure_channel(address, credentials, options=options)
        # The generated stub is untyped; its messages are typed (.pyi).
        self.stub: Any = jobq_pb2_grpc.JobQueueStub(self._channel)  # type: ignore[no-untyped-call]
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self.admin = Admin(self._channel, self.metadata)
        self._producer: _ProducerStream | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Ends the producer stream and closes the channel."""
        if self._producer is not None:
            await self._producer.close()
            self._producer = None
        await self._channel.close()

    def _stream(self) -> _ProducerStream:
        if self._producer is None or self._producer.broken:
            self._producer = _ProducerStream(self.stub, self.metadata)
        return self._producer

    async def enqueue(
        self,
        queue: str,
        payload: bytes | str,
        *,
        metadata: Mapping[str, str] | None = None,
        priority: int = 0,
        delay: float | None = None,
        max_attempts: int = 0,
        idempotency_key: str = "",
        wait_for_room: bool = False,
    ) -> Enqueued:
        """Stores one job and returns its id. Over the shared producer
        stream; with `wait_for_room`, a full queue is waited on (a unary
        call, since a stream refuses at once). Raises JobqError when
        refused, UNAVAILABLE when the answer was lost: retry with an
        idempotency key to be sure of one job."""
        job = new_job(
            NewJob(
                payload=payload,
                metadata=metadata or {},
                priority=priority,
                delay=delay,
                max_attempts=max_attempts,
                idempotency_key=idempotency_key,
            )
        )
        if wait_for_room:
            try:
                reply = await self.stub.Enqueue(
                    jobq_pb2.EnqueueRequest(queue=queue, job=job, wait_for_room=True),
                    metadata=self.metadata,
                )
            except grpc.aio.AioRpcError as error:
                raise refused(error) from error
            return Enqueued(reply.job_id, reply.duplicate)
        answer = await self._stream().send(queue, job)
        if answer.code != grpc.StatusCode.OK.value[0]:
            raise JobqError(code_name(answer.code), answer.message)
        return Enqueued(answer.job_id, answer.duplicate)

    async def enqueue_batch(
        self, queue: str, jobs: Sequence[NewJob], *, wait_for_room: bool = False
    ) -> list[Enqueued]:
        """Stores `jobs` in one call, all or none."""
        request = jobq_pb2.BatchEnqueueRequest(
            queue=queue, jobs=[new_job(j) for j in jobs], wait_for_room=wait_for_room
        )
        try:
            reply = await self.stub.BatchEnqueue(request, metadata=self.metadata)
        except grpc.aio.AioRpcError as error:
            raise refused(error) from error
        return [Enqueued(i, d) for i, d in zip(reply.job_ids, reply.duplicates, strict=True)]

    def worker(
        self,
        queue: str,
        *,
        concurrency: int = 8,
        lease_duration: float = 30.0,
        grace: float = 30.0,
        reconnect_max: float = 5.0,
    ) -> Worker:
        """A worker for `queue` holding at most `concurrency` jobs at once
        (see Worker.run)."""
        return Worker(
            self.stub,
            self.metadata,
            queue,
            concurrency=concurrency,
            lease_duration=lease_duration,
            grace=grace,
            reconnect_max=reconnect_max,
        )
