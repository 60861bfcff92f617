"""Starts the real jobq binary on a free port for each test that asks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

import jobq
from jobq.v1 import admin_pb2, admin_pb2_grpc

ROOT = Path(__file__).resolve().parents[3]


def binary() -> str:
    """The server binary: $JOBQ_BIN, or the repository's debug build."""
    path = os.environ.get("JOBQ_BIN") or str(ROOT / "target" / "debug" / "jobq")
    if not os.path.exists(path):
        pytest.fail(f"no jobq binary at {path}: run `cargo build` first, or set JOBQ_BIN")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A jobq process; `start` again after `kill` to restart it on the
    same address."""

    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = {**os.environ, "RUST_LOG": "warn,jobq=info", **self.env}
        command = [
            binary(),
            "--listen",
            self.address,
            "--metrics-listen",
            "127.0.0.1:0",
            "--web-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert self.process.stdout is not None
        said = []
        for line in self.process.stdout:
            try:
                fields = json.loads(line).get("fields", {})
            except json.JSONDecodeError:
                said.append(line)
                continue
            if fields.get("message") == "jobq serving":
                return self
        raise RuntimeError(f"jobq exited ({self.process.wait()}) before serving: {''.join(said)}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    async def queue_counts(self, queue: str) -> admin_pb2.QueueCounts:
        async with grpc.aio.insecure_channel(self.address) as channel:
            admin = admin_pb2_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
            reply = await admin.GetQueue(admin_pb2.GetQueueRequest(queue=queue))
            counts: admin_pb2.QueueCounts = reply.queue.counts
            return counts

    async def job(self, queue: str, job_id: str) -> admin_pb2.JobInfo:
        async with grpc.aio.insecure_channel(self.address) as channel:
            admin = admin_pb2_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
            reply = await admin.GetJob(admin_pb2.GetJobRequest(queue=queue, job_id=job_id))
            job: admin_pb2.JobInfo = reply.job
            return job


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server().start()
    yield running
    running.kill()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[jobq.Client]:
    async with jobq.Client(server.address) as c:
        yield c
