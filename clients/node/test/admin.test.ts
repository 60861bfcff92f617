/** Operator calls through client.admin against the real server. */

import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, type JobqError } from "../src/index.js";
import { JobState } from "../src/gen/jobq/v1/admin.js";
import { Server } from "./server.js";

test("queues and jobs: pause, cancel, purge, dead letters and redrive", async () => {
  const server = await Server.start();
  const client = new Client(server.address);
  try {
    const kept = await client.enqueue("ops", "keep");
    await client.enqueue("ops", "purged");
    assert.deepEqual((await client.admin.queues()).map((q) => q.name), ["ops"]);
    await client.admin.pause("ops");
    assert.equal((await client.admin.queue("ops")).paused, true);
    await client.admin.resume("ops");
    await client.admin.cancel("ops", kept.id);
    assert.equal((await client.admin.job("ops", kept.id)).state, JobState.JOB_STATE_CANCELLED);
    assert.equal(await client.admin.purge("ops", "ready"), 1);
    const dead = await client.enqueue("ops", "dead", { maxAttempts: 1 });
    const stop = new AbortController();
    await client.worker("ops").run(
      () => {
        stop.abort();
        throw new Error("no");
      },
      { signal: stop.signal, handleSignals: false },
    );
    const listed: string[] = [];
    for await (const job of client.admin.jobs("ops", JobState.JOB_STATE_DEAD)) listed.push(job.job?.id ?? "");
    assert.deepEqual(listed, [dead.id]);
    assert.equal(await client.admin.redrive("ops"), 1);
    assert.equal((await client.admin.queue("ops")).counts?.ready, 1);
    await assert.rejects(client.admin.queue("nope"), (error: JobqError) => error.code === "NOT_FOUND");
  } finally {
    client.close();
    await server.kill();
  }
});

test("schedules: set, trigger, pause, list and delete", async () => {
  const server = await Server.start();
  const client = new Client(server.address);
  try {
    const made = await client.admin.setSchedule("nightly", {
      queue: "reports",
      job: { payload: Buffer.from("build"), metadata: {}, priority: 0, maxAttempts: 0 },
      cron: "0 3 * * *",
      timeZone: "Europe/Paris",
    });
    assert.ok(made.nextFireTimes.length > 0);
    const jobId = await client.admin.triggerSchedule("nightly");
    assert.equal((await client.admin.job("reports", jobId)).job?.payload.toString(), "build");
    assert.equal((await client.admin.pauseSchedule("nightly")).paused, true);
    assert.equal((await client.admin.pauseSchedule("nightly", false)).paused, false);
    assert.deepEqual((await client.admin.schedules()).map((s) => s.name), ["nightly"]);
    await client.admin.deleteSchedule("nightly");
    assert.deepEqual(await client.admin.schedules(), []);
  } finally {
    client.close();
    await server.kill();
  }
});
