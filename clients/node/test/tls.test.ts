/** TLS with a client certificate, with certificates made by openssl. */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Client, type JobqError } from "../src/index.js";
import { Server } from "./server.js";

/** A CA, and a certificate it signs for `name` (an IP address or a DNS name). */
function issue(dir: string, prefix: string, name: string): void {
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-subj", `/CN=${prefix} test CA`, "-keyout", `${prefix}-ca.key`, "-out", `${prefix}-ca.pem`);
  run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-subj", `/CN=${name}`, "-keyout", `${prefix}.key`, "-out", `${prefix}.csr`);
  const san = /^[0-9.]+$/.test(name) ? `IP:${name}` : `DNS:${name}`;
  writeFileSync(join(dir, `${prefix}.ext`), `subjectAltName=${san}\n`);
  run("x509", "-req", "-in", `${prefix}.csr`, "-CA", `${prefix}-ca.pem`, "-CAkey", `${prefix}-ca.key`,
    "-CAcreateserial", "-days", "1", "-extfile", `${prefix}.ext`, "-out", `${prefix}.pem`);
}

test("TLS with a client certificate, and a client without one refused", async () => {
  const dir = mkdtempSync(join(tmpdir(), "jobq-node-tls-"));
  issue(dir, "server", "127.0.0.1");
  issue(dir, "client", "worker.example");
  const server = await Server.start({
    JOBQ_TLS_CERT: join(dir, "server.pem"),
    JOBQ_TLS_KEY: join(dir, "server.key"),
    JOBQ_TLS_CLIENT_CA: join(dir, "client-ca.pem"),
  });
  const read = (name: string) => readFileSync(join(dir, name));
  const ca = read("server-ca.pem");
  const client = new Client(server.address, { tls: { ca, cert: read("client.pem"), key: read("client.key") } });
  const bare = new Client(server.address, { tls: { ca } });
  try {
    assert.ok((await client.enqueue("secure", "x")).id);
    await assert.rejects(bare.enqueue("secure", "y"), (error: JobqError) => error.code === "UNAVAILABLE");
  } finally {
    client.close();
    bare.close();
    await server.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
