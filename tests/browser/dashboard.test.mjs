// The web dashboard in a real headless Chromium, against the jobq binary:
// live counts, a dead job redriven, bulk redrive, login with a token, and
// reading with JavaScript off. Every page is saved as a screenshot under
// target/browser-screenshots; with UPDATE_SCREENSHOTS=1 the README's two
// are rewritten under tests/browser/screenshots.

import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { Client, Permanent } from "@jobq/client";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const binary = process.env.JOBQ_BIN ?? join(root, "target", "debug", "jobq");
const shots = join(root, "target", "browser-screenshots");
const readmeShots = join(root, "tests", "browser", "screenshots");
const ADMIN = "admin-token-for-the-browser-test";
const VIEWER = "viewer-token-for-the-browser-test";
// Long enough for a slow shared machine; a page that updates at all does
// so within two seconds.
const PATIENCE = 15_000;

/** Starts the binary on free loopback ports; resolves once it serves. */
function startServer(env = {}) {
  if (!existsSync(binary)) {
    throw new Error(`no jobq binary at ${binary}: run \`cargo build\` first, or set JOBQ_BIN`);
  }
  const child = spawn(
    binary,
    ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0", "--log-format", "json"],
    { env: { ...process.env, RUST_LOG: "warn,jobq=info", ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const said = [];
  child.stderr.on("data", (chunk) => said.push(chunk.toString()));
  return new Promise((resolve, reject) => {
    const found = {};
    createInterface({ input: child.stdout }).on("line", (line) => {
      let fields;
      try {
        fields = JSON.parse(line).fields ?? {};
      } catch {
        said.push(line);
        return;
      }
      if (fields.message === "web dashboard") found.web = fields.url.replace(/\/$/, "");
      if (fields.message === "jobq listening") found.grpc = fields.addr;
      if (fields.message === "jobq serving") {
        resolve({ ...found, kill: () => child.kill("SIGKILL") });
      }
    });
    child.on("exit", (code) => reject(new Error(`jobq exited (${code}) before serving: ${said.join("")}`)));
  });
}

/** Runs `jobq ARGS` against the server. */
function cli(server, ...args) {
  return execFileSync(binary, [...args], { env: { ...process.env, JOBQ_SERVER: server.grpc } }).toString();
}

let server;
let client;
let browser;
before(async () => {
  mkdirSync(shots, { recursive: true });
  server = await startServer();
  client = new Client(server.grpc);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
});
after(async () => {
  await browser?.close();
  client?.close();
  server?.kill();
});

/** A page that fails the test on any script error or CSP violation. */
async function open(context) {
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(message.text());
  });
  page.problems = problems;
  return page;
}

async function shoot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  if (process.env.UPDATE_SCREENSHOTS === "1" && (name === "overview" || name === "job")) {
    mkdirSync(readmeShots, { recursive: true });
    copyFileSync(join(shots, `${name}.png`), join(readmeShots, `${name}.png`));
  }
}

/** Text of the overview's row for `queue`, cells joined by `|`. */
function row(page, queue) {
  return page.evaluate((name) => {
    const link = [...document.querySelectorAll("#queues td.name a")].find((a) => a.textContent === name);
    return link ? [...link.closest("tr").cells].map((c) => c.textContent.trim()).join("|") : "";
  }, queue);
}

/** Waits until the overview's row for `queue` matches `pattern`. */
async function waitForRow(page, queue, pattern) {
  const deadline = Date.now() + PATIENCE;
  let seen = "";
  while (Date.now() < deadline) {
    seen = await row(page, queue);
    if (pattern.test(seen)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`the row of ${queue} never matched ${pattern}: ${seen}`);
}

/** Runs a worker on `queue` with `handler` until `until()` holds. */
async function work(queue, handler, until) {
  const stop = new AbortController();
  const running = client.worker(queue, { concurrency: 4 }).run(handler, { signal: stop.signal, handleSignals: false });
  const deadline = Date.now() + PATIENCE;
  while (!(await until()) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  stop.abort();
  await running;
}

test("the overview shows a new queue and its counts change without a reload", async () => {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await open(context);
  await page.goto(`${server.web}/`);
  await page.getByText("No queues yet").waitFor();
  await page.evaluate(() => (window.loadedOnce = true));

  const enqueued = Date.now();
  for (let n = 0; n < 3; n++) await client.enqueue("emails", `{"to":"user${n}@example.com"}`);
  await waitForRow(page, "emails", /^emails\|3\|/);
  // A figure for people, not a pass mark: how soon the open page showed it.
  console.log(`the open overview showed the new queue ${Date.now() - enqueued} ms after its first enqueue`);
  for (let n = 0; n < 1234; n++) await client.enqueue("emails", `{"to":"user${n}@example.com"}`);
  await waitForRow(page, "emails", /^emails\|1,237\|/);
  assert.equal(await page.evaluate(() => window.loadedOnce), true, "the page was not reloaded");
  assert.deepEqual(page.problems, []);
  await context.close();
});

test("a dead job is opened from the dead letters and redriven, and the counts change", async () => {
  for (let n = 0; n < 3; n++) {
    await client.enqueue("thumbnails", Buffer.from([0x89, 0x50, 0x4e, 0x47, n]), { metadata: { image: `photo-${n}.png`, size: "1024x768" } });
  }
  let dead = 0;
  await work(
    "thumbnails",
    async () => {
      dead++;
      throw new Permanent("convert: unsupported colour profile <sRGB IEC61966-2.1>");
    },
    async () => dead >= 3,
  );
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await open(context);
  await page.goto(`${server.web}/dead?queue=thumbnails`);
  await page.getByRole("link", { name: /^[0-9A-Z]{26}$/ }).first().waitFor();
  assert.equal(await page.locator("tbody tr").count(), 3);
  await shoot(page, "dead-letters");

  await page.getByRole("link", { name: /^[0-9A-Z]{26}$/ }).first().click();
  await page.getByText("convert: unsupported colour profile <sRGB IEC61966-2.1>").first().waitFor();
  assert.ok(await page.getByText("00000000  89 50 4e 47").isVisible(), "the binary payload shows as hex");
  await shoot(page, "job");
  await page.getByRole("button", { name: "Redrive" }).click();
  await page.getByText(/Redrove job .*: it is ready again/).waitFor();
  assert.equal((await page.locator("h1 .badge").textContent()).trim(), "ready");

  await page.goto(`${server.web}/`);
  assert.match(await row(page, "thumbnails"), /^thumbnails\|1\|0\|0\|2\|/);
  assert.deepEqual(page.problems, []);
  await context.close();
});

test("select-all redrives every dead job on the page at once", async () => {
  const context = await browser.newContext();
  const page = await open(context);
  await page.goto(`${server.web}/dead?queue=thumbnails`);
  await page.getByLabel("Select all on this page").check();
  assert.equal(await page.locator("input[name=id]:checked").count(), 2);
  await page.getByRole("button", { name: "Redrive selected" }).click();
  await page.getByText("Redrove 2 of the 2 jobs selected.").waitFor();
  assert.ok(await page.getByText("No dead letters.").isVisible());
  assert.deepEqual(page.problems, []);
  await context.close();
});

test("every page renders, on a laptop, a phone and in the dark", async () => {
  cli(server, "schedules", "set", "hourly-report", "--queue", "reports", "--cron", "0 * * * *", "--payload", "sales");
  cli(server, "schedules", "trigger", "hourly-report");
  // Ten seconds of traffic rising and falling, so the rate charts draw.
  let [sent, acked] = [0, 0];
  const producing = (async () => {
    for (let n = 0; n < 60; n++) {
      const batch = Math.round(20 + 15 * Math.sin(n / 6));
      await Promise.all(Array.from({ length: batch }, () => client.enqueue("reports", `{"report":"sales","n":${sent++}}`)));
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  let produced = false;
  producing.then(() => (produced = true));
  await work("reports", async () => { acked++; }, async () => produced && acked >= sent);
  await producing;

  const laptop = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await open(laptop);
  await page.goto(`${server.web}/`);
  await shoot(page, "overview");
  await page.getByRole("link", { name: "emails", exact: true }).click();
  await page.getByRole("heading", { name: "Recent rates" }).waitFor();
  await shoot(page, "queue");
  await page.goto(`${server.web}/queue/purge?name=emails&target=ready`);
  await page.getByRole("button", { name: "Delete 1,237 ready jobs" }).waitFor();
  await shoot(page, "purge-confirm");
  await page.goto(`${server.web}/schedules`);
  await page.getByRole("link", { name: "hourly-report" }).click();
  await page.getByText("Fire now").waitFor();
  await shoot(page, "schedule");
  assert.deepEqual(page.problems, []);
  await laptop.close();

  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const small = await open(phone);
  await small.goto(`${server.web}/`);
  const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the overview fits a phone's width (overflows by ${overflow}px)`);
  await shoot(small, "overview-phone");
  await phone.close();

  const dark = await browser.newContext({ colorScheme: "dark", viewport: { width: 1366, height: 900 } });
  const night = await open(dark);
  await night.goto(`${server.web}/`);
  const background = await night.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(background, "rgb(15, 18, 22)");
  await shoot(night, "overview-dark");
  await dark.close();
});

test("pages read with JavaScript off", async () => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await open(context);
  await page.goto(`${server.web}/`);
  assert.match(await row(page, "emails"), /^emails\|1,237\|/);
  await page.getByRole("link", { name: "emails", exact: true }).click();
  const first = page.getByRole("link", { name: /^[0-9A-Z]{26}$/ }).first();
  await first.click();
  await page.getByText('"to": "user0@example.com"').waitFor();
  await context.close();
});

test("with tokens, the dashboard asks for a token once and a viewer cannot act", async () => {
  const guarded = await startServer({ JOBQ_AUTH_TOKENS: `admin:${ADMIN},viewer:${VIEWER}` });
  try {
    const producer = new Client(guarded.grpc, { token: ADMIN });
    await producer.enqueue("emails", "hello");
    producer.close();

    const context = await browser.newContext();
    const page = await open(context);
    await page.goto(`${guarded.web}/queue?name=emails`);
    assert.match(page.url(), /\/login\?next=/);
    await shoot(page, "login");
    await page.getByLabel("Token (viewer or admin)").fill("not-a-real-token-000000");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByText("That token is not one of the server's tokens.").waitFor();
    await page.getByLabel("Token (viewer or admin)").fill(ADMIN);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("button", { name: "Pause leasing" }).waitFor();
    assert.match(page.url(), /\/queue\?name=emails$/);
    // The session cookie keeps it: a new page asks no more.
    await page.goto(`${guarded.web}/`);
    await page.getByText("Signed in as").waitFor();
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByLabel("Token (viewer or admin)").waitFor();
    await context.close();

    const viewing = await browser.newContext();
    const viewer = await open(viewing);
    await viewer.goto(`${guarded.web}/login?next=/queue%3Fname%3Demails`);
    await viewer.getByLabel("Token (viewer or admin)").fill(VIEWER);
    await viewer.getByRole("button", { name: "Log in" }).click();
    await viewer.getByText("Only an admin may change settings.").waitFor();
    assert.equal(await viewer.getByRole("button", { name: "Pause leasing" }).count(), 0);
    assert.deepEqual(viewer.problems, []);
    await viewing.close();
  } finally {
    guarded.kill();
  }
});
