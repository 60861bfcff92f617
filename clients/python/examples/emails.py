"""The email scenario with jobq-client: a producer enqueues welcome emails,
a worker sends them through a flaky SMTP server. A timeout is retried with
the queue's backoff; mail that can never be delivered (to mallory@) is
dead-lettered at once. The worker drains on SIGTERM or SIGINT, or stops
once --expect jobs are done.

    python examples/emails.py produce --server 127.0.0.1:50051 --count 20
    python examples/emails.py work --server 127.0.0.1:50051 --expect 20
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib

import jobq


class SmtpTimeout(Exception):
    """A send that may work if tried again."""


def send(address: str, attempt: int) -> None:
    """A flaky SMTP server: every fourth address times out on its first
    attempt (the same ones every run), and mallory@ is always refused."""
    if address.startswith("mallory@"):
        raise jobq.Permanent("550 mailbox unavailable")
    if attempt == 1 and hashlib.sha256(address.encode()).digest()[0] % 4 == 0:
        raise SmtpTimeout("smtp timeout after 10s")


async def produce(client: jobq.Client, queue: str, count: int) -> None:
    jobs = []
    for i in range(count):
        # One address every twenty the mail server always refuses.
        address = "mallory@example.com" if i % 20 == 7 else f"user{i}@example.com"
        jobs.append(client.enqueue(queue, address, metadata={"template": "welcome"}))
    for stored in await asyncio.gather(*jobs):
        print(f"enqueued {stored.id}")
    print(f"enqueued {count} jobs")


async def work(client: jobq.Client, queue: str, expect: int) -> None:
    stop = asyncio.Event()
    done = 0

    def handle(job: jobq.Job) -> None:  # blocking, like an SMTP client: runs in a thread
        nonlocal done
        print(f"sending {job.metadata['template']} email to {job.text} (attempt {job.attempt})")
        try:
            send(job.text, job.attempt)
        except jobq.Permanent:
            done += 1
            raise
        done += 1
        if expect and done >= expect:
            loop.call_soon_threadsafe(stop.set)

    loop = asyncio.get_running_loop()
    stats = await client.worker(queue, concurrency=4).run(handle, stop=stop)
    print(
        f"acked {stats.succeeded} jobs, retried {stats.retried}, "
        f"dead-lettered {stats.dead_lettered}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["produce", "work"])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--queue", default="emails")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--expect", type=int, default=0, help="stop after this many (0: never)")
    args = parser.parse_args()
    async with jobq.Client(args.server) as client:
        if args.role == "produce":
            await produce(client, args.queue, args.count)
        else:
            await work(client, args.queue, args.expect)


if __name__ == "__main__":
    asyncio.run(main())
