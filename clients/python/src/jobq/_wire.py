"""Small conversions between Python values and the wire's."""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2

from ._errors import JobqError


def duration(seconds: float) -> duration_pb2.Duration:
    """A protobuf Duration of `seconds`."""
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def code_name(code: int) -> str:
    """A gRPC status code's name (`RESOURCE_EXHAUSTED` for 8)."""
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return str(status.name)
    return str(code)


def refused(error: grpc.aio.AioRpcError) -> JobqError:
    """The server's refusal as this library raises it."""
    return JobqError(error.code().name, error.details() or "")
