/**
 * A client for jobq: producers enqueue over one shared stream; workers run
 * a handler on each job with credits, acks, retries and lease extension.
 *
 *     import { Client, Retry, Permanent } from "@jobq/client";
 *
 *     const client = new Client("127.0.0.1:50051");
 *     await client.enqueue("emails", "alice@example.com");
 *     await client.worker("emails", { concurrency: 8 }).run(async (job) => {
 *       // throw new Retry("later", { delaySeconds: 60 }) or new Permanent("why")
 *     });
 */

export { Admin } from "./admin.js";
export { Client, type ClientOptions, type Enqueued, type EnqueueOptions, type NewJob, type Tls } from "./client.js";
export { JobqError, Permanent, Retry } from "./errors.js";
export { Worker, type Handler, type Job, type RunOptions, type WorkerOptions, type WorkerStats } from "./worker.js";
