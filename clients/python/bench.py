"""Jobs/s through the Python client against a running server: `--jobs`
enqueued by 16 concurrent callers over the shared producer stream, then
drained by one worker with concurrency 16 and an empty handler.

    python bench.py --server 127.0.0.1:50051 --jobs 20000
"""

from __future__ import annotations

import argparse
import asyncio
import time

import jobq

CALLERS = 16


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--queue", default=f"pybench-{int(time.time())}")
    args = parser.parse_args()
    per_caller = args.jobs // CALLERS
    total = per_caller * CALLERS
    payload = b"x" * 128
    async with jobq.Client(args.server) as client:

        async def caller() -> None:
            for _ in range(per_caller):
                await client.enqueue(args.queue, payload)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
        took = time.perf_counter() - started
        print(f"enqueue, {CALLERS} callers, one stream: {total / took:8.0f} jobs/s")

        done = 0
        stop = asyncio.Event()

        async def handle(job: jobq.Job) -> None:
            nonlocal done
            done += 1
            if done == total:
                stop.set()

        started = time.perf_counter()
        await client.worker(args.queue, concurrency=CALLERS).run(
            handle, stop=stop, handle_signals=False
        )
        took = time.perf_counter() - started
        print(f"drain, one worker, concurrency {CALLERS}: {total / took:8.0f} jobs/s")


if __name__ == "__main__":
    asyncio.run(main())
