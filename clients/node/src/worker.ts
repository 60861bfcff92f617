/** The worker runtime: a StreamLeases stream with credits equal to the
 * concurrency, each job run by the handler as it arrives, acked or nacked on
 * the stream, its lease extended while the handler runs; drained on SIGTERM
 * or SIGINT (or an AbortSignal), and reopened with backoff when the
 * connection drops. */

import type { ClientDuplexStream, Metadata, ServiceError } from "@grpc/grpc-js";
import { Permanent, Retry } from "./errors.js";
import type {
  JobQueueClient,
  Lease,
  StreamLeasesRequest,
  StreamLeasesResponse,
} from "./gen/jobq/v1/jobq.js";
import { inSpan } from "./trace.js";
import { duration, refused, seconds } from "./wire.js";

/** One delivery of a job to this worker. */
export interface Job {
  id: string;
  queue: string;
  payload: Buffer;
  /** The payload as UTF-8 text. */
  text: string;
  metadata: Record<string, string>;
  priority: number;
  attempt: number;
  maxAttempts: number;
  leaseToken: string;
}

/** Resolves to ack the job; throws Retry to try it again (after its delay,
 * or the queue's backoff), Permanent to dead-letter it, or anything else
 * to retry it with the backoff. The signal aborts when the worker stops
 * and the grace period is over. */
export type Handler = (job: Job, signal: AbortSignal) => Promise<void> | void;

export interface WorkerOptions {
  /** Jobs held at once: the stream's credits. Default 8. */
  concurrency?: number;
  /** Lease asked for each job, in seconds. Default 30. */
  leaseDurationSeconds?: number;
  /** How long handlers in flight may finish after a stop. Default 30. */
  graceSeconds?: number;
  /** The longest wait between reconnects, in seconds. Default 5. */
  reconnectMaxSeconds?: number;
}

export interface RunOptions {
  /** Stops the worker when aborted. */
  signal?: AbortSignal;
  /** Stop on SIGTERM and SIGINT too. Default true. */
  handleSignals?: boolean;
}

/** What a worker did until it stopped. */
export interface WorkerStats {
  succeeded: number;
  retried: number;
  deadLettered: number;
  reconnects: number;
}

/** How a stream ended: stopped as asked, ended by the server, or lost. */
type Ended = "stopped" | "ended" | Error;

/** One StreamLeases stream and what may still be sent on it. */
class Session {
  open = true;
  private nextId = 0;
  constructor(private readonly call: ClientDuplexStream<StreamLeasesRequest, StreamLeasesResponse>) {}

  requestId(): number {
    return ++this.nextId;
  }

  send(request: StreamLeasesRequest): void {
    // A stream that ended gave its leases back already: the job comes again.
    if (this.open) {
      this.call.write(request);
    }
  }
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });

/** Runs a handler on a queue's jobs. Made by Client.worker. */
export class Worker {
  readonly concurrency: number;
  readonly leaseDuration: number;
  readonly grace: number;
  readonly reconnectMax: number;
  readonly stats: WorkerStats = { succeeded: 0, retried: 0, deadLettered: 0, reconnects: 0 };

  constructor(
    private readonly stub: JobQueueClient,
    private readonly metadata: Metadata,
    readonly queue: string,
    options: WorkerOptions = {},
  ) {
    this.concurrency = options.concurrency ?? 8;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new RangeError(`concurrency must be a whole number of at least 1, not ${this.concurrency}`);
    }
    this.leaseDuration = options.leaseDurationSeconds ?? 30;
    this.grace = options.graceSeconds ?? 30;
    this.reconnectMax = options.reconnectMaxSeconds ?? 5;
  }

  /** Works jobs until stopped (the signal, or SIGTERM/SIGINT): then takes
   * no new job, lets the handlers in flight finish and settle for up to
   * the grace period, and resolves with what it did. */
  async run(handler: Handler, options: RunOptions = {}): Promise<WorkerStats> {
    const stop = new AbortController();
    const onStop = () => stop.abort();
    if (options.signal?.aborted === true) {
      stop.abort();
    }
    options.signal?.addEventListener("abort", onStop, { once: true });
    const handleSignals = options.handleSignals ?? true;
    if (handleSignals) {
      process.on("SIGTERM", onStop);
      process.on("SIGINT", onStop);
    }
    let backoff = 0.1;
    try {
      while (!stop.signal.aborted) {
        const ended = await this.session(handler, stop.signal);
        if (ended === "stopped" || stop.signal.aborted) {
          break;
        }
        if (ended === "ended") {
          backoff = 0.1;
          continue;
        }
        this.stats.reconnects += 1;
        console.warn(`jobq: worker stream on ${this.queue} lost (${ended.message}); reconnecting in ${backoff}s`);
        await sleep(backoff * 1000, stop.signal);
        backoff = Math.min(backoff * 2, this.reconnectMax);
      }
    } finally {
      options.signal?.removeEventListener("abort", onStop);
      if (handleSignals) {
        process.off("SIGTERM", onStop);
        process.off("SIGINT", onStop);
      }
    }
    return this.stats;
  }

  private session(handler: Handler, stop: AbortSignal): Promise<Ended> {
    return new Promise((resolve) => {
      const call = this.stub.streamLeases(this.metadata);
      const session = new Session(call);
      const handlers = new AbortController();
      // Jobs being worked, by lease token, and whether each still settles.
      const inFlight = new Map<string, { done: Promise<void>; abandoned: boolean }>();
      let stopping = false;
      let finished = false;
      const finish = (ended: Ended) => {
        session.open = false;
        if (!finished) {
          finished = true;
          stop.removeEventListener("abort", onAbort);
          resolve(ended);
        }
      };
      // Every job in flight has settled, however many came meanwhile.
      const settled = async () => {
        while (inFlight.size > 0) {
          await Promise.allSettled([...inFlight.values()].map((j) => j.done));
        }
      };
      const onAbort = () => {
        stopping = true;
        session.send({ drain: {} });
        // After this turn: a handler may stop the worker from inside, before
        // its own job is counted in flight.
        const drained = new Promise(setImmediate).then(settled);
        const graceOver = new AbortController();
        void Promise.race([drained, sleep(this.grace * 1000, graceOver.signal)]).then(() => {
          graceOver.abort(); // no timer left to keep the process up
          // Past the grace period: back to the queue now, not when the
          // lease runs out.
          for (const [leaseToken, job] of inFlight) {
            job.abandoned = true;
            session.send({
              nack: {
                requestId: session.requestId(),
                leaseToken,
                retryDelay: duration(0),
                deadLetter: false,
                reason: "the worker stopped first",
              },
            });
          }
          handlers.abort();
          call.end(); // half-close: the server ends the stream
        });
      };
      call.on("data", (message: StreamLeasesResponse) => {
        if (message.lease !== undefined) {
          const lease = message.lease;
          const entry = { done: Promise.resolve(), abandoned: false };
          inFlight.set(lease.leaseToken, entry);
          entry.done = this.work(handler, lease, session, handlers.signal, entry).finally(() =>
            inFlight.delete(lease.leaseToken),
          );
        }
      });
      call.on("error", (error: ServiceError) => finish(stopping ? "stopped" : refused(error)));
      call.on("end", () => finish(stopping ? "stopped" : "ended"));
      call.write({
        open: { queue: this.queue, credits: this.concurrency, leaseDuration: duration(this.leaseDuration) },
      });
      if (stop.aborted) {
        onAbort();
      } else {
        stop.addEventListener("abort", onAbort, { once: true });
      }
    });
  }

  private async work(
    handler: Handler,
    lease: Lease,
    session: Session,
    signal: AbortSignal,
    entry: { abandoned: boolean },
  ): Promise<void> {
    const payload = lease.job?.payload ?? Buffer.alloc(0);
    const job: Job = {
      id: lease.job?.id ?? "",
      queue: lease.job?.queue || this.queue,
      payload,
      text: payload.toString("utf8"),
      metadata: { ...(lease.job?.metadata ?? {}) },
      priority: lease.job?.priority ?? 0,
      attempt: lease.attempt,
      maxAttempts: lease.job?.maxAttempts ?? 0,
      leaseToken: lease.leaseToken,
    };
    const granted = lease.leaseDuration !== undefined ? seconds(lease.leaseDuration) : this.leaseDuration;
    // Two thirds of the way through, again and again, while it runs.
    const extender = setInterval(() => {
      session.send({
        extend: { requestId: session.requestId(), leaseToken: job.leaseToken, leaseDuration: duration(granted) },
      });
    }, (granted * 1000 * 2) / 3);
    let outcome: StreamLeasesRequest;
    try {
      await inSpan(job.queue, job.id, job.attempt, job.metadata, async () => handler(job, signal));
      outcome = { ack: { requestId: session.requestId(), leaseToken: job.leaseToken } };
      this.stats.succeeded += 1;
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      if (failure instanceof Permanent) {
        outcome = {
          nack: { requestId: session.requestId(), leaseToken: job.leaseToken, deadLetter: true, reason: failure.message },
        };
        this.stats.deadLettered += 1;
      } else {
        const delay = failure instanceof Retry ? failure.delaySeconds : undefined;
        const reason = failure instanceof Retry ? failure.message : `${failure.name}: ${failure.message}`;
        outcome = {
          nack: {
            requestId: session.requestId(),
            leaseToken: job.leaseToken,
            deadLetter: false,
            reason,
            retryDelay: delay !== undefined ? duration(delay) : undefined,
          },
        };
        this.stats.retried += 1;
      }
    } finally {
      clearInterval(extender);
    }
    if (!entry.abandoned) {
      session.send(outcome);
    }
  }
}
