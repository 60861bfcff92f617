/** Operator calls: queues, jobs and schedules, through the Admin and
 * Schedules services. Results are the protocol's messages; refusals reject
 * with JobqError. */

import type { ChannelCredentials, Metadata, ServiceError } from "@grpc/grpc-js";
import {
  AdminClient,
  JobState,
  PurgeTarget,
  type JobInfo,
  type QueueInfo,
} from "./gen/jobq/v1/admin.js";
import { ScheduleSettings, SchedulesClient, type Schedule } from "./gen/jobq/v1/schedules.js";
import { refused } from "./wire.js";

type Callback<R> = (error: ServiceError | null, reply: R) => void;

/** A unary call as a promise. */
function call<R>(invoke: (done: Callback<R>) => unknown): Promise<R> {
  return new Promise((resolve, reject) => {
    invoke((error, reply) => (error !== null ? reject(refused(error)) : resolve(reply)));
  });
}

/** `client.admin`: what an operator does, from code. */
export class Admin {
  private readonly queues_: AdminClient;
  private readonly schedules_: SchedulesClient;

  constructor(
    address: string,
    credentials: ChannelCredentials,
    private readonly metadata: Metadata,
  ) {
    this.queues_ = new AdminClient(address, credentials);
    this.schedules_ = new SchedulesClient(address, credentials);
  }

  close(): void {
    this.queues_.close();
    this.schedules_.close();
  }

  /** Every queue, with its settings and counts. */
  async queues(): Promise<QueueInfo[]> {
    const found: QueueInfo[] = [];
    let pageToken = "";
    do {
      const page = await call<{ queues: QueueInfo[]; nextPageToken: string }>((done) =>
        this.queues_.listQueues({ pageSize: 1000, pageToken }, this.metadata, done),
      );
      found.push(...page.queues);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return found;
  }

  /** One queue, with its settings and counts. */
  async queue(queue: string): Promise<QueueInfo> {
    const reply = await call<{ queue?: QueueInfo }>((done) => this.queues_.getQueue({ queue }, this.metadata, done));
    if (reply.queue === undefined) throw new Error(`no queue in the answer for ${queue}`);
    return reply.queue;
  }

  /** Stops leasing from `queue`; enqueues still go in. */
  async pause(queue: string): Promise<void> {
    await call((done) => this.queues_.pauseQueue({ queue }, this.metadata, done));
  }

  /** Starts leasing from `queue` again. */
  async resume(queue: string): Promise<void> {
    await call((done) => this.queues_.resumeQueue({ queue }, this.metadata, done));
  }

  /** Deletes `queue`'s ready or dead jobs; how many. */
  async purge(queue: string, target: "ready" | "dead"): Promise<number> {
    const which = target === "ready" ? PurgeTarget.PURGE_TARGET_READY : PurgeTarget.PURGE_TARGET_DEAD;
    const reply = await call<{ purgedJobCount: number }>((done) =>
      this.queues_.purgeQueue({ queue, target: which }, this.metadata, done),
    );
    return reply.purgedJobCount;
  }

  /** One job: its state, attempts and failures. */
  async job(queue: string, jobId: string): Promise<JobInfo> {
    const reply = await call<{ job?: JobInfo }>((done) => this.queues_.getJob({ queue, jobId }, this.metadata, done));
    if (reply.job === undefined) throw new Error(`no job in the answer for ${jobId}`);
    return reply.job;
  }

  /** `queue`'s jobs in id order, in one state or all, page by page. */
  async *jobs(queue: string, state: JobState = JobState.JOB_STATE_UNSPECIFIED): AsyncGenerator<JobInfo> {
    let pageToken = "";
    do {
      const page = await call<{ jobs: JobInfo[]; nextPageToken: string }>((done) =>
        this.queues_.listJobs({ queue, state, pageSize: 1000, pageToken }, this.metadata, done),
      );
      yield* page.jobs;
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
  }

  /** Removes a job no worker holds. */
  async cancel(queue: string, jobId: string): Promise<void> {
    await call((done) => this.queues_.cancelJob({ queue, jobId }, this.metadata, done));
  }

  /** Moves dead jobs back to ready (those named, or all); how many. */
  async redrive(queue: string, jobIds?: string[]): Promise<number> {
    const reply = await call<{ redrivenJobCount: number }>((done) =>
      this.queues_.redriveJobs({ queue, jobIds: jobIds ?? [], all: jobIds === undefined }, this.metadata, done),
    );
    return reply.redrivenJobCount;
  }

  /** Creates a schedule or gives it new settings. */
  async setSchedule(name: string, settings: Partial<ScheduleSettings> & { queue: string }): Promise<Schedule> {
    const full = ScheduleSettings.fromPartial(settings);
    const reply = await call<{ schedule?: Schedule }>((done) =>
      this.schedules_.setSchedule({ name, settings: full }, this.metadata, done),
    );
    if (reply.schedule === undefined) throw new Error(`no schedule in the answer for ${name}`);
    return reply.schedule;
  }

  /** Every schedule, by name. */
  async schedules(): Promise<Schedule[]> {
    const found: Schedule[] = [];
    let pageToken = "";
    do {
      const page = await call<{ schedules: Schedule[]; nextPageToken: string }>((done) =>
        this.schedules_.listSchedules({ pageSize: 1000, pageToken }, this.metadata, done),
      );
      found.push(...page.schedules);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return found;
  }

  /** Enqueues the schedule's job now; its id. */
  async triggerSchedule(name: string): Promise<string> {
    const reply = await call<{ jobId: string }>((done) => this.schedules_.triggerSchedule({ name }, this.metadata, done));
    return reply.jobId;
  }

  /** Pauses a schedule (or, with `paused` false, resumes it). */
  async pauseSchedule(name: string, paused = true): Promise<Schedule> {
    const reply = await call<{ schedule?: Schedule }>((done) =>
      paused
        ? this.schedules_.pauseSchedule({ name }, this.metadata, done)
        : this.schedules_.resumeSchedule({ name }, this.metadata, done),
    );
    if (reply.schedule === undefined) throw new Error(`no schedule in the answer for ${name}`);
    return reply.schedule;
  }

  /** Deletes a schedule; the jobs it made stay. */
  async deleteSchedule(name: string): Promise<void> {
    await call((done) => this.schedules_.deleteSchedule({ name }, this.metadata, done));
  }
}
