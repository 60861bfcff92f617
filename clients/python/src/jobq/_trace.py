"""Trace context from producer to worker, when `opentelemetry-api` is
installed: the producer's context goes into the job's metadata
(`traceparent`), and the worker runs the handler in a span continuing it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

try:
    from opentelemetry import propagate, trace

    AVAILABLE = True
except ImportError:  # optional: tracing is off without it
    AVAILABLE = False


def inject(metadata: MutableMapping[str, str]) -> None:
    """Adds the current trace context to `metadata`, if there is one."""
    if AVAILABLE:
        propagate.inject(metadata)


@contextlib.contextmanager
def span(queue: str, job_id: str, attempt: int, metadata: dict[str, str]) -> Iterator[Any]:
    """A consumer span around a handler, child of the producer's."""
    if not AVAILABLE:
        yield None
        return
    tracer = trace.get_tracer("jobq")
    with tracer.start_as_current_span(
        f"process {queue}",
        context=propagate.extract(metadata),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "jobq",
            "messaging.destination.name": queue,
            "messaging.message.id": job_id,
            "jobq.attempt": attempt,
        },
    ) as current:
        yield current
