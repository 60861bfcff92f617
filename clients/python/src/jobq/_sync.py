"""A blocking producer for synchronous code (Django, Flask): the async
client on an event loop of its own, in a daemon thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from ._client import Client, Enqueued, NewJob, Tls

T = TypeVar("T")


class SyncClient:
    """As `Client`, for producers that cannot await. Safe to share between
    threads; every call goes over the one producer stream.

        client = jobq.SyncClient("127.0.0.1:50051")
        client.enqueue("emails", b"alice@example.com")
    """

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        tls: Tls | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jobq", daemon=True)
        self._thread.start()
        self._timeout = timeout

        async def make() -> Client:
            return Client(address, token=token, tls=tls)

        self._client = self._call(make())

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(self._timeout)

    def enqueue(
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
        """See `Client.enqueue`."""
        return self._call(
            self._client.enqueue(
                queue,
                payload,
                metadata=metadata,
                priority=priority,
                delay=delay,
                max_attempts=max_attempts,
                idempotency_key=idempotency_key,
                wait_for_room=wait_for_room,
            )
        )

    def enqueue_batch(self, queue: str, jobs: Sequence[NewJob]) -> list[Enqueued]:
        """See `Client.enqueue_batch`."""
        return self._call(self._client.enqueue_batch(queue, jobs))

    def close(self) -> None:
        """Closes the client and stops its thread."""
        self._call(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout)
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
