"""What handlers raise to say how a job failed, and what the client raises."""

from __future__ import annotations


class Retry(Exception):
    """Fail this attempt and try the job again: after `delay` seconds, or
    after the queue's backoff when `delay` is None."""

    def __init__(self, reason: str = "", *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Permanent(Exception):
    """Fail the job for good: it goes to the dead-letter set at once."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobqError(Exception):
    """A call the server refused, with its gRPC status code (by name:
    `RESOURCE_EXHAUSTED`, `INVALID_ARGUMENT`, ...) and its message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
