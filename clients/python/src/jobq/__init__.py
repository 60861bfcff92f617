"""A client for jobq: producers enqueue over one shared stream; workers run
a handler on each job with credits, acks, retries and lease extension.

    import jobq

    async with jobq.Client("127.0.0.1:50051") as client:
        await client.enqueue("emails", b"alice@example.com")

        async def send(job: jobq.Job) -> None:
            ...  # raise jobq.Retry(delay=60) or jobq.Permanent("why")

        await client.worker("emails", concurrency=8).run(send)
"""

from ._admin import Admin
from ._client import Client, Enqueued, NewJob, Tls
from ._errors import JobqError, Permanent, Retry
from ._sync import SyncClient
from ._worker import Handler, Job, Worker, WorkerStats

__all__ = [
    "Admin",
    "Client",
    "Enqueued",
    "Handler",
    "Job",
    "JobqError",
    "NewJob",
    "Permanent",
    "Retry",
    "SyncClient",
    "Tls",
    "Worker",
    "WorkerStats",
]
