"""Works jobq jobs from Python, with grpcio only: long-poll Lease, then Ack
or Nack, as the Rust email worker does: a send that times out is retried
with the queue's backoff, and mail that can never be delivered (to
mallory@) is dead-lettered at once.

Stops after --expect jobs are done (acked or dead-lettered), or when no job
came for --idle seconds.

    python examples/python/worker.py --server 127.0.0.1:50051 --expect 20
"""

import argparse
import hashlib
import time

import grpc
from google.protobuf import duration_pb2

from jobq_proto import jobq_pb2, jobq_pb2_grpc


class SmtpTimeout(Exception):
    """A send that may work if tried again."""


class Rejected(Exception):
    """A send that never will."""


def send(address, attempt):
    """A flaky SMTP server: every fourth address times out on its first
    attempt (the same ones every run), and mallory@ is always refused."""
    if address.startswith("mallory@"):
        raise Rejected("550 mailbox unavailable")
    if attempt == 1 and hashlib.sha256(address.encode()).digest()[0] % 4 == 0:
        raise SmtpTimeout("smtp timeout after 10s")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--queue", default="emails")
    parser.add_argument("--expect", type=int, default=0, help="stop after this many jobs are done (0: never)")
    parser.add_argument("--idle", type=float, default=10.0, help="stop after this long without jobs")
    args = parser.parse_args()

    acked = retried = dead = 0
    last_job = time.monotonic()
    with grpc.insecure_channel(args.server) as channel:
        jobq = jobq_pb2_grpc.JobQueueStub(channel)
        while args.expect == 0 or acked + dead < args.expect:
            if time.monotonic() - last_job > args.idle:
                break
            reply = jobq.Lease(
                jobq_pb2.LeaseRequest(
                    queue=args.queue,
                    max_jobs=10,
                    lease_duration=duration_pb2.Duration(seconds=30),
                    wait_time=duration_pb2.Duration(seconds=1),
                ),
                timeout=10,
            )
            if not reply.leases:
                continue
            last_job = time.monotonic()
            done = []
            for lease in reply.leases:
                # The producer's trace context came with the job.
                traceparent = lease.job.metadata.get("traceparent", "")
                trace_id = traceparent.split("-")[1] if traceparent.count("-") == 3 else "none"
                address = lease.job.payload.decode()
                print(f"sending {lease.job.metadata['template']} email to "
                      f"{address} (attempt {lease.attempt}) in trace {trace_id}")
                try:
                    send(address, lease.attempt)
                    done.append(lease.lease_token)
                except SmtpTimeout as error:
                    # No retry_delay: the queue's exponential backoff decides.
                    jobq.Nack(jobq_pb2.NackRequest(
                        queue=args.queue, lease_token=lease.lease_token, reason=str(error),
                    ), timeout=10)
                    retried += 1
                except Rejected as error:
                    jobq.Nack(jobq_pb2.NackRequest(
                        queue=args.queue, lease_token=lease.lease_token, reason=str(error),
                        dead_letter=True,
                    ), timeout=10)
                    dead += 1
            if done:
                jobq.Ack(jobq_pb2.AckRequest(queue=args.queue, lease_tokens=done), timeout=10)
                acked += len(done)
    print(f"acked {acked} jobs, retried {retried}, dead-lettered {dead}")


if __name__ == "__main__":
    main()
