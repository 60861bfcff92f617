"""A trace carried from the producer to the worker's handler."""

from __future__ import annotations

import asyncio

from conftest import Server
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import jobq


async def test_the_handler_runs_in_the_producers_trace(client: jobq.Client, server: Server) -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    trace.set_tracer_provider(provider)
    with tracer.start_as_current_span("signup") as producing:
        await client.enqueue("traced", b"alice")
    sent = producing.get_span_context().trace_id
    seen: list[int] = []
    done = asyncio.Event()

    async def handle(job: jobq.Job) -> None:
        assert "traceparent" in job.metadata
        seen.append(trace.get_current_span().get_span_context().trace_id)
        done.set()

    stop = asyncio.Event()
    running = asyncio.ensure_future(
        client.worker("traced").run(handle, stop=stop, handle_signals=False)
    )
    await asyncio.wait_for(done.wait(), 30)
    stop.set()
    await running
    assert seen == [sent]
