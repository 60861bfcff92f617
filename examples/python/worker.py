"""Works jobq jobs from Python, with grpcio only: long-poll Lease, then Ack.

Stops after --expect jobs, or when no job came for --idle seconds.

    python examples/python/worker.py --server 127.0.0.1:50051 --expect 20
"""

import argparse
import time

import grpc
from google.protobuf import duration_pb2

from jobq_proto import jobq_pb2, jobq_pb2_grpc


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--queue", default="emails")
    parser.add_argument("--expect", type=int, default=0, help="stop after this many jobs (0: never)")
    parser.add_argument("--idle", type=float, default=10.0, help="stop after this long without jobs")
    args = parser.parse_args()

    acked = 0
    last_job = time.monotonic()
    with grpc.insecure_channel(args.server) as channel:
        jobq = jobq_pb2_grpc.JobQueueStub(channel)
        while args.expect == 0 or acked < args.expect:
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
            for lease in reply.leases:
                # The producer's trace context came with the job.
                traceparent = lease.job.metadata.get("traceparent", "")
                trace_id = traceparent.split("-")[1] if traceparent.count("-") == 3 else "none"
                print(f"sending {lease.job.metadata['template']} email to "
                      f"{lease.job.payload.decode()} (attempt {lease.attempt}) in trace {trace_id}")
            jobq.Ack(
                jobq_pb2.AckRequest(
                    queue=args.queue,
                    lease_tokens=[lease.lease_token for lease in reply.leases],
                ),
                timeout=10,
            )
            acked += len(reply.leases)
    print(f"acked {acked} jobs")


if __name__ == "__main__":
    main()
