"""The hourly report, from Python with grpcio only: the producer side sets
a schedule (once per deploy is enough: setting the same settings again
changes nothing), and a worker builds the report for each fire time.

    python examples/python/hourly_report.py schedule --server 127.0.0.1:50051
    python examples/python/hourly_report.py work --server 127.0.0.1:50051

`schedule --cron` takes any cron expression (`--cron '* * * * * *'` fires
every second, to watch it work); `work --expect N` stops after N reports.
"""

import argparse
import json
import time

import grpc
from google.protobuf import duration_pb2

from jobq_proto import jobq_pb2, jobq_pb2_grpc, schedules_pb2, schedules_pb2_grpc


def schedule(args):
    with grpc.insecure_channel(args.server) as channel:
        schedules = schedules_pb2_grpc.SchedulesStub(channel)
        reply = schedules.SetSchedule(
            schedules_pb2.SetScheduleRequest(
                name="hourly-report",
                settings=schedules_pb2.ScheduleSettings(
                    queue=args.queue,
                    job=schedules_pb2.JobTemplate(
                        payload=json.dumps({"report": "sales"}).encode(),
                        metadata={"content-type": "application/json"},
                    ),
                    cron=args.cron,
                    time_zone=args.time_zone,
                    # A report missed while jobq was down is made once when it is back.
                    misfire=schedules_pb2.MISFIRE_POLICY_FIRE_ONCE,
                    # Never two reports at once.
                    overlap=schedules_pb2.OVERLAP_POLICY_SKIP_IF_RUNNING,
                ),
            )
        )
        result = "created" if reply.created else "updated" if reply.changed else "unchanged"
        next_fire = reply.schedule.next_fire_times[0].ToDatetime().isoformat()
        print(f"schedule hourly-report {result}; next fire {next_fire}Z")


def build_report(payload, fire_time):
    """Stands in for the real work: a report for the hour that ended at
    the fire time."""
    request = json.loads(payload)
    return f"{request['report']} report for the hour before {fire_time}"


def work(args):
    made = 0
    last_job = time.monotonic()
    with grpc.insecure_channel(args.server) as channel:
        jobq = jobq_pb2_grpc.JobQueueStub(channel)
        while args.expect == 0 or made < args.expect:
            if time.monotonic() - last_job > args.idle:
                break
            reply = jobq.Lease(
                jobq_pb2.LeaseRequest(
                    queue=args.queue,
                    max_jobs=1,
                    lease_duration=duration_pb2.Duration(seconds=300),
                    wait_time=duration_pb2.Duration(seconds=1),
                )
            )
            for lease in reply.leases:
                last_job = time.monotonic()
                # Every fired job names its schedule and fire time.
                fire_time = lease.job.metadata["jobq-fire-time"]
                print(build_report(lease.job.payload, fire_time), flush=True)
                jobq.Ack(jobq_pb2.AckRequest(queue=args.queue, lease_tokens=[lease.lease_token]))
                made += 1
    print(f"made {made} reports")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=["schedule", "work"])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--queue", default="reports")
    parser.add_argument("--cron", default="0 * * * *")
    parser.add_argument("--time-zone", default="UTC")
    parser.add_argument("--expect", type=int, default=0, help="stop after this many reports (0: never)")
    parser.add_argument("--idle", type=float, default=3600.0, help="stop after this long without a job")
    args = parser.parse_args()
    schedule(args) if args.role == "schedule" else work(args)


if __name__ == "__main__":
    main()
