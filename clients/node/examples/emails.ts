/**
 * The email scenario with @jobq/client: a producer enqueues welcome emails,
 * a worker sends them through a flaky SMTP server. A timeout is retried with
 * the queue's backoff; mail that can never be delivered (to mallory@) is
 * dead-lettered at once. The worker drains on SIGTERM or SIGINT, or stops
 * once --expect jobs are done.
 *
 *     node dist/examples/emails.js produce --server 127.0.0.1:50051 --count 20
 *     node dist/examples/emails.js work --server 127.0.0.1:50051 --expect 20
 */

import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { Client, Permanent, type Job } from "../src/index.js";

/** Every fourth address times out on its first attempt (the same ones
 * every run), and mallory@ is always refused. */
function send(address: string, attempt: number): void {
  if (address.startsWith("mallory@")) throw new Permanent("550 mailbox unavailable");
  const digest = createHash("sha256").update(address).digest();
  if (attempt === 1 && (digest[0] ?? 0) % 4 === 0) throw new Error("smtp timeout after 10s");
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    server: { type: "string", default: "127.0.0.1:50051" },
    queue: { type: "string", default: "emails" },
    count: { type: "string", default: "10" },
    expect: { type: "string", default: "0" },
  },
});
const client = new Client(values.server);
const queue = values.queue;

if (positionals[0] === "produce") {
  const count = Number(values.count);
  const stored = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      // One address every twenty the mail server always refuses.
      client.enqueue(queue, i % 20 === 7 ? "mallory@example.com" : `user${i}@example.com`, {
        metadata: { template: "welcome" },
      }),
    ),
  );
  for (const { id } of stored) console.log(`enqueued ${id}`);
  console.log(`enqueued ${count} jobs`);
} else if (positionals[0] === "work") {
  const expect = Number(values.expect);
  const stop = new AbortController();
  let done = 0;
  const stats = await client.worker(queue, { concurrency: 4 }).run(
    (job: Job) => {
      console.log(`sending ${job.metadata["template"]} email to ${job.text} (attempt ${job.attempt})`);
      try {
        send(job.text, job.attempt);
      } catch (error) {
        if (error instanceof Permanent) done += 1;
        throw error;
      }
      done += 1;
      if (expect > 0 && done >= expect) stop.abort();
    },
    { signal: stop.signal },
  );
  console.log(`acked ${stats.succeeded} jobs, retried ${stats.retried}, dead-lettered ${stats.deadLettered}`);
} else {
  console.error("usage: emails.js produce|work [--server host:port] [--count N] [--expect N]");
  process.exitCode = 2;
}
client.close();
