"""Enqueues email jobs into jobq from Python, with grpcio only.

    python examples/python/producer.py --server 127.0.0.1:50051 --count 20
"""

import argparse
import secrets

import grpc

from jobq_proto import jobq_pb2, jobq_pb2_grpc


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--queue", default="emails")
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()

    with grpc.insecure_channel(args.server) as channel:
        jobq = jobq_pb2_grpc.JobQueueStub(channel)
        for i in range(args.count):
            # One address every twenty the mail server always refuses.
            address = "mallory@example.com" if i % 20 == 7 else f"user{i}@example.com"
            job = jobq_pb2.NewJob(
                payload=address.encode(),
                metadata={"template": "welcome", "source": "python"},
            )
            # W3C trace context, by hand: jobq stores it with the job and
            # hands it to the worker, which continues the same trace.
            trace_id = secrets.token_hex(16)
            traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
            reply = jobq.Enqueue(
                jobq_pb2.EnqueueRequest(queue=args.queue, job=job),
                metadata=[("traceparent", traceparent)],
                timeout=10,
            )
            print(f"enqueued {reply.job_id} in trace {trace_id}")
    print(f"enqueued {args.count} jobs")


if __name__ == "__main__":
    main()
