/** The email example, run as its two processes against the real server. */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { Server } from "./server.js";

const example = join(dirname(fileURLToPath(import.meta.url)), "..", "examples", "emails.js");

test("the email example delivers, retries and dead-letters", async () => {
  const server = await Server.start();
  try {
    const run = (...args: string[]) =>
      execFileSync(process.execPath, [example, ...args, "--server", server.address], { encoding: "utf8", timeout: 60_000 });
    assert.match(run("produce", "--count", "20"), /enqueued 20 jobs/);
    const worked = run("work", "--expect", "20");
    assert.match(worked, /acked 19 jobs/);
    assert.match(worked, /dead-lettered 1/);
    assert.match(worked, /\(attempt 2\)/, "no send was retried");
    const counts = await server.counts("emails");
    assert.deepEqual([counts.ready, counts.scheduled, counts.leased, counts.dead], [0, 0, 0, 1]);
  } finally {
    await server.kill();
  }
});
