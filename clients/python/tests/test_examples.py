"""The email example, run as its two processes against the real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Server

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "emails.py"


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_the_email_example_delivers_retries_and_dead_letters(server: Server) -> None:
    produced = run("produce", "--server", server.address, "--count", "20")
    assert "enqueued 20 jobs" in produced
    worked = run("work", "--server", server.address, "--expect", "20")
    assert "acked 19 jobs" in worked, worked
    assert "dead-lettered 1" in worked, worked
    assert "(attempt 2)" in worked, "no send was retried"
    counts = await server.queue_counts("emails")
    assert (counts.ready, counts.scheduled, counts.leased, counts.dead) == (0, 0, 0, 1)
