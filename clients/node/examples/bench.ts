/**
 * Jobs/s through the TypeScript client against a running server: `--jobs`
 * enqueued by 16 concurrent callers over the shared producer stream, then
 * drained by one worker with concurrency 16 and an empty handler.
 *
 *     node dist/examples/bench.js --server 127.0.0.1:50051 --jobs 20000
 */

import { parseArgs } from "node:util";
import { Client } from "../src/index.js";

const CALLERS = 16;
const { values } = parseArgs({
  options: {
    server: { type: "string", default: "127.0.0.1:50051" },
    jobs: { type: "string", default: "20000" },
    queue: { type: "string", default: `nodebench-${Date.now()}` },
  },
});
const perCaller = Math.floor(Number(values.jobs) / CALLERS);
const total = perCaller * CALLERS;
const payload = Buffer.alloc(128, "x");
const client = new Client(values.server);

let started = performance.now();
await Promise.all(
  Array.from({ length: CALLERS }, async () => {
    for (let i = 0; i < perCaller; i++) await client.enqueue(values.queue, payload);
  }),
);
let took = (performance.now() - started) / 1000;
console.log(`enqueue, ${CALLERS} callers, one stream: ${Math.round(total / took)} jobs/s`);

let done = 0;
const stop = new AbortController();
started = performance.now();
await client.worker(values.queue, { concurrency: CALLERS }).run(
  () => {
    done += 1;
    if (done === total) stop.abort();
  },
  { signal: stop.signal, handleSignals: false },
);
took = (performance.now() - started) / 1000;
console.log(`drain, one worker, concurrency ${CALLERS}: ${Math.round(total / took)} jobs/s`);
client.close();
