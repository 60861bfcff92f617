/** The client: a channel to jobq, producer calls multiplexed over one shared
 * StreamEnqueue stream, and the worker runtime's factory. */

import {
  credentials as grpcCredentials,
  Metadata,
  status,
  type ChannelCredentials,
  type ClientDuplexStream,
  type ServiceError,
} from "@grpc/grpc-js";
import { Admin } from "./admin.js";
import { JobqError } from "./errors.js";
import {
  JobQueueClient,
  NewJob as NewJobMessage,
  type StreamEnqueueRequest,
  type StreamEnqueueResponse,
} from "./gen/jobq/v1/jobq.js";
import { inject } from "./trace.js";
import { codeName, duration, refused } from "./wire.js";
import { Worker, type WorkerOptions } from "./worker.js";

/** TLS for the channel: the CA that signed the server's certificate (PEM;
 * none trusts the system's roots), and a client certificate and key (PEM)
 * when the server asks for one. */
export interface Tls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface ClientOptions {
  /** Sent as `authorization: Bearer <token>` with every call. */
  token?: string;
  tls?: Tls;
}

/** One job to store. */
export interface NewJob {
  payload: Buffer | string;
  metadata?: Record<string, string>;
  priority?: number;
  /** Seconds to wait before the job is ready. */
  delaySeconds?: number;
  maxAttempts?: number;
  idempotencyKey?: string;
}

export interface EnqueueOptions extends Omit<NewJob, "payload"> {
  /** Wait for room in a full queue instead of failing (a unary call: a
   * stream refuses at once). */
  waitForRoom?: boolean;
}

/** A stored job: its id, and whether its idempotency key had been seen
 * within the window (so nothing new was stored). */
export interface Enqueued {
  id: string;
  duplicate: boolean;
}

function message(job: NewJob): NewJobMessage {
  const metadata = { ...(job.metadata ?? {}) };
  inject(metadata);
  return NewJobMessage.fromPartial({
    payload: typeof job.payload === "string" ? Buffer.from(job.payload) : job.payload,
    metadata,
    priority: job.priority ?? 0,
    delay: job.delaySeconds !== undefined && job.delaySeconds > 0 ? duration(job.delaySeconds) : undefined,
    maxAttempts: job.maxAttempts ?? 0,
    idempotencyKey: job.idempotencyKey ?? "",
  });
}

/** One StreamEnqueue stream shared by every caller: each request gets an
 * id, and the answer with that id settles its caller's promise. */
class ProducerStream {
  broken = false;
  private readonly call: ClientDuplexStream<StreamEnqueueRequest, StreamEnqueueResponse>;
  private readonly pending = new Map<number, { resolve: (a: StreamEnqueueResponse) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  constructor(stub: JobQueueClient, metadata: Metadata) {
    this.call = stub.streamEnqueue(metadata);
    this.call.on("data", (answer: StreamEnqueueResponse) => {
      const waiting = this.pending.get(answer.requestId);
      this.pending.delete(answer.requestId);
      waiting?.resolve(answer);
    });
    const end = (error: Error) => {
      this.broken = true;
      // Jobs whose answers never came may or may not be stored.
      for (const waiting of this.pending.values()) {
        waiting.reject(error);
      }
      this.pending.clear();
    };
    this.call.on("error", (error: ServiceError) => end(refused(error)));
    this.call.on("end", () =>
      end(new JobqError("UNAVAILABLE", "the producer stream ended; retry with idempotency keys")),
    );
  }

  send(queue: string, job: NewJobMessage): Promise<StreamEnqueueResponse> {
    if (this.broken) {
      return Promise.reject(new JobqError("UNAVAILABLE", "the producer stream broke"));
    }
    const requestId = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(requestId, { resolve, reject });
      this.call.write({ requestId, queue, job });
    });
  }

  close(): void {
    this.broken = true;
    this.call.cancel();
  }
}

/** A connection to jobq. Cheap to share: every producer call of the client
 * goes over one stream, and workers open their own.
 *
 *     const client = new Client("127.0.0.1:50051");
 *     const { id } = await client.enqueue("emails", "alice@example.com");
 */
export class Client {
  readonly stub: JobQueueClient;
  readonly metadata: Metadata;
  /** Operator calls: queues, jobs and schedules. */
  readonly admin: Admin;
  private producer: ProducerStream | undefined;

  constructor(address: string, options: ClientOptions = {}) {
    let channel: ChannelCredentials = grpcCredentials.createInsecure();
    if (options.tls !== undefined) {
      const { ca, key, cert } = options.tls;
      channel = grpcCredentials.createSsl(ca ?? null, key ?? null, cert ?? null);
    }
    this.stub = new JobQueueClient(address, channel);
    this.metadata = new Metadata();
    if (options.token !== undefined) {
      this.metadata.set("authorization", `Bearer ${options.token}`);
    }
    this.admin = new Admin(address, channel, this.metadata);
  }

  /** Ends the producer stream and closes the channel. */
  close(): void {
    this.producer?.close();
    this.producer = undefined;
    this.stub.close();
    this.admin.close();
  }

  private stream(): ProducerStream {
    if (this.producer === undefined || this.producer.broken) {
      this.producer = new ProducerStream(this.stub, this.metadata);
    }
    return this.producer;
  }

  /** Stores one job over the shared producer stream and returns its id.
   * Throws JobqError when refused, UNAVAILABLE when the answer was lost:
   * retry with an idempotency key to be sure of one job. */
  async enqueue(queue: string, payload: Buffer | string, options: EnqueueOptions = {}): Promise<Enqueued> {
    const job = message({ payload, ...options });
    if (options.waitForRoom === true) {
      return new Promise((resolve, reject) => {
        this.stub.enqueue({ queue, job, waitForRoom: true }, this.metadata, (error, reply) => {
          if (error !== null) {
            reject(refused(error));
          } else {
            resolve({ id: reply.jobId, duplicate: reply.duplicate });
          }
        });
      });
    }
    const answer = await this.stream().send(queue, job);
    if (answer.code !== status.OK) {
      throw new JobqError(codeName(answer.code), answer.message);
    }
    return { id: answer.jobId, duplicate: answer.duplicate };
  }

  /** Stores `jobs` in one call, all or none. */
  enqueueBatch(queue: string, jobs: NewJob[], options: { waitForRoom?: boolean } = {}): Promise<Enqueued[]> {
    const request = { queue, jobs: jobs.map(message), waitForRoom: options.waitForRoom ?? false };
    return new Promise((resolve, reject) => {
      this.stub.batchEnqueue(request, this.metadata, (error, reply) => {
        if (error !== null) {
          reject(refused(error));
        } else {
          resolve(reply.jobIds.map((id, i) => ({ id, duplicate: reply.duplicates[i] ?? false })));
        }
      });
    });
  }

  /** A worker for `queue` holding at most `concurrency` jobs at once (see
   * Worker.run). */
  worker(queue: string, options: WorkerOptions = {}): Worker {
    return new Worker(this.stub, this.metadata, queue, options);
  }
}
