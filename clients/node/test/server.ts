/** Starts the real jobq binary on a free port for a test. */

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { credentials } from "@grpc/grpc-js";
import { AdminClient, type JobInfo, type QueueCounts } from "../src/gen/jobq/v1/admin.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");

/** The server binary: $JOBQ_BIN, or the repository's debug build. */
function binary(): string {
  const path = process.env["JOBQ_BIN"] ?? join(root, "target", "debug", "jobq");
  if (!existsSync(path)) {
    throw new Error(`no jobq binary at ${path}: run \`cargo build\` first, or set JOBQ_BIN`);
  }
  return path;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

export class Server {
  private process: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    private readonly env: Record<string, string>,
  ) {}

  static async start(env: Record<string, string> = {}): Promise<Server> {
    const server = new Server(await freePort(), env);
    await server.restart();
    return server;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts it (again) on its address, resolving once it serves. */
  async restart(): Promise<void> {
    const child = spawn(
      binary(),
      ["--listen", this.address, "--metrics-listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0", "--log-format", "json"],
      { env: { ...process.env, RUST_LOG: "warn,jobq=info", ...this.env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    this.process = child;
    const said: string[] = [];
    child.stderr?.on("data", (chunk: Buffer) => said.push(chunk.toString()));
    const lines = createInterface({ input: child.stdout! });
    await new Promise<void>((resolve, reject) => {
      lines.on("line", (line) => {
        try {
          const fields = (JSON.parse(line) as { fields?: { message?: string } }).fields;
          if (fields?.message === "jobq serving") {
            resolve();
          }
        } catch {
          said.push(line);
        }
      });
      child.on("exit", (code) => reject(new Error(`jobq exited (${code}) before serving: ${said.join("")}`)));
    });
  }

  kill(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (child === undefined || child.exitCode !== null) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      child.on("exit", () => resolve());
      child.kill("SIGKILL");
    });
  }

  private admin(): AdminClient {
    return new AdminClient(this.address, credentials.createInsecure());
  }

  async counts(queue: string): Promise<QueueCounts> {
    const admin = this.admin();
    try {
      return await new Promise((resolve, reject) =>
        admin.getQueue({ queue }, (error, reply) =>
          error !== null ? reject(error) : resolve(reply.queue?.counts ?? { ready: 0, scheduled: 0, leased: 0, dead: 0 }),
        ),
      );
    } finally {
      admin.close();
    }
  }

  async job(queue: string, jobId: string): Promise<JobInfo> {
    const admin = this.admin();
    try {
      return await new Promise((resolve, reject) =>
        admin.getJob({ queue, jobId }, (error, reply) =>
          error !== null || reply.job === undefined ? reject(error ?? new Error("no job")) : resolve(reply.job),
        ),
      );
    } finally {
      admin.close();
    }
  }
}
