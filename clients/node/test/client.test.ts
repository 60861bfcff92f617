/** The client and worker runtime against the real server. */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Client, JobqError, Permanent, Retry, type Handler, type WorkerStats } from "../src/index.js";
import { JobState } from "../src/gen/jobq/v1/admin.js";
import { Server } from "./server.js";

let server: Server;
before(async () => {
  server = await Server.start();
});
after(async () => {
  await server.kill();
});

/** Runs a worker until `done` resolves, for at most 30 s. */
async function runUntil(
  client: Client,
  queue: string,
  handler: Handler,
  done: Promise<void>,
  options = {},
): Promise<WorkerStats> {
  const stop = new AbortController();
  const running = client.worker(queue, options).run(handler, { signal: stop.signal, handleSignals: false });
  const timeout = setTimeout(() => stop.abort(), 30_000);
  await Promise.race([done, running]);
  clearTimeout(timeout);
  stop.abort();
  return running;
}

function latch(): { done: Promise<void>; open: () => void } {
  let open = () => {};
  const done = new Promise<void>((resolve) => (open = resolve));
  return { done, open };
}

test("enqueue returns the id and an idempotency key stores one job", async () => {
  const client = new Client(server.address);
  try {
    const first = await client.enqueue("emails", "alice@example.com", { metadata: { t: "welcome" } });
    assert.ok(first.id);
    const keyed = await client.enqueue("emails", Buffer.from("bob"), { idempotencyKey: "order-7" });
    const again = await client.enqueue("emails", Buffer.from("bob"), { idempotencyKey: "order-7" });
    assert.deepEqual(again, { id: keyed.id, duplicate: true });
    assert.equal((await server.counts("emails")).ready, 2);
    const info = await server.job("emails", first.id);
    assert.equal(info.job?.metadata["t"], "welcome");
  } finally {
    client.close();
  }
});

test("many concurrent producers share one stream", async () => {
  const client = new Client(server.address);
  try {
    const callers = Array.from({ length: 16 }, async (_, n) => {
      const ids: string[] = [];
      for (let i = 0; i < 50; i++) {
        ids.push((await client.enqueue("bulk", `${n}-${i}`)).id);
      }
      return ids;
    });
    const ids = (await Promise.all(callers)).flat();
    assert.equal(new Set(ids).size, 800);
    assert.equal((await server.counts("bulk")).ready, 800);
  } finally {
    client.close();
  }
});

test("a refusal names its code, and a batch is all or none", async () => {
  const client = new Client(server.address);
  try {
    await assert.rejects(client.enqueue("no spaces allowed", "x"), (error: JobqError) => error.code === "INVALID_ARGUMENT");
    const stored = await client.enqueueBatch("batched", [{ payload: "a" }, { payload: "b", delaySeconds: 60 }]);
    assert.equal(stored.length, 2);
    const counts = await server.counts("batched");
    assert.deepEqual([counts.ready, counts.scheduled], [1, 1]);
  } finally {
    client.close();
  }
});

test("every job is worked and acked; Retry comes again, Permanent dead-letters", async () => {
  const client = new Client(server.address);
  try {
    const flaky = await client.enqueue("mail", "flaky");
    const bad = await client.enqueue("mail", "mallory");
    const crash = await client.enqueue("mail", "crash");
    const attempts: Record<string, number[]> = {};
    const { done, open } = latch();
    const stats = await runUntil(
      client,
      "mail",
      (job) => {
        (attempts[job.text] ??= []).push(job.attempt);
        if (job.text === "mallory") throw new Permanent("550 mailbox unavailable");
        if (job.attempt === 1 && job.text === "flaky") throw new Retry("smtp timeout", { delaySeconds: 0.1 });
        if (job.attempt === 1 && job.text === "crash") throw new Error("boom");
        if (attempts["flaky"]?.length === 2 && attempts["crash"]?.length === 2) open();
      },
      done,
      { concurrency: 2 },
    );
    assert.deepEqual(attempts, { flaky: [1, 2], mallory: [1], crash: [1, 2] });
    assert.deepEqual([stats.succeeded, stats.retried, stats.deadLettered], [2, 2, 1]);
    const dead = await server.job("mail", bad.id);
    assert.equal(dead.state, JobState.JOB_STATE_DEAD);
    assert.equal(dead.lastError, "550 mailbox unavailable");
    assert.equal((await server.job("mail", flaky.id)).state, JobState.JOB_STATE_ACKED);
    assert.equal((await server.job("mail", crash.id)).failures[0]?.error, "Error: boom");
  } finally {
    client.close();
  }
});

test("a handler slower than its lease keeps it", async () => {
  const client = new Client(server.address);
  try {
    await client.enqueue("slow", "report");
    const attempts: number[] = [];
    const { done, open } = latch();
    const stats = await runUntil(
      client,
      "slow",
      async (job) => {
        attempts.push(job.attempt);
        await new Promise((r) => setTimeout(r, 5_000)); // more than twice the lease
        open();
      },
      done,
      { concurrency: 2, leaseDurationSeconds: 2 },
    );
    assert.deepEqual(attempts, [1], "the lease ran out and the job came again");
    assert.equal(stats.succeeded, 1);
  } finally {
    client.close();
  }
});

test("SIGTERM lets the job in flight finish and takes no new one", async () => {
  const client = new Client(server.address);
  try {
    const first = await client.enqueue("drain", "first");
    const started = latch();
    const release = latch();
    const running = client.worker("drain", { concurrency: 1 }).run(async () => {
      started.open();
      await release.done;
    });
    await started.done;
    await client.enqueue("drain", "second");
    process.kill(process.pid, "SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    let stopped = false;
    void running.then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(stopped, false, "the worker stopped before its job finished");
    release.open();
    const stats = await running;
    assert.equal(stats.succeeded, 1);
    assert.equal((await server.job("drain", first.id)).state, JobState.JOB_STATE_ACKED);
    const counts = await server.counts("drain");
    assert.deepEqual([counts.ready, counts.leased], [1, 0], "the second job was left for another worker");
  } finally {
    client.close();
  }
});

test("the worker reconnects after a server restart", async () => {
  const own = await Server.start();
  const client = new Client(own.address);
  try {
    const got: string[] = [];
    const { done, open } = latch();
    const stop = new AbortController();
    const running = client
      .worker("q", { concurrency: 1, reconnectMaxSeconds: 0.5 })
      .run(
        (job) => {
          got.push(job.text);
          if (job.text === "after") open();
        },
        { signal: stop.signal, handleSignals: false },
      );
    await client.enqueue("q", "before");
    await own.kill();
    await own.restart(); // the same address, an empty queue
    for (let i = 0; i < 100; i++) {
      try {
        await client.enqueue("q", "after");
        break;
      } catch (error) {
        assert.equal((error as JobqError).code, "UNAVAILABLE");
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await done;
    stop.abort();
    const stats = await running;
    assert.ok(stats.reconnects >= 1);
    assert.equal(got.at(-1), "after");
  } finally {
    client.close();
    await own.kill();
  }
});

test("a token is sent, and a missing one is refused", async () => {
  const own = await Server.start({ JOBQ_AUTH_TOKENS: "producer:producer-secret-0001,worker:worker-secret-00001" });
  const anonymous = new Client(own.address);
  const producer = new Client(own.address, { token: "producer-secret-0001" });
  const worker = new Client(own.address, { token: "worker-secret-00001" });
  try {
    await assert.rejects(anonymous.enqueue("q", "x"), (error: JobqError) => error.code === "UNAUTHENTICATED");
    assert.ok((await producer.enqueue("q", "x")).id);
    const { done, open } = latch();
    const stats = await runUntil(worker, "q", () => open(), done);
    assert.equal(stats.succeeded, 1);
  } finally {
    anonymous.close();
    producer.close();
    worker.close();
    await own.kill();
  }
});
