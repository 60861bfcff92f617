/** A trace carried from the producer to the worker's handler. */

import assert from "node:assert/strict";
import { test } from "node:test";
import { context, propagation, trace, type TextMapPropagator } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { Client } from "../src/index.js";
import { Server } from "./server.js";

/** W3C traceparent only, enough for the test without the SDK. */
const traceparent: TextMapPropagator = {
  inject(ctx, carrier: Record<string, string>) {
    const span = trace.getSpanContext(ctx);
    if (span !== undefined) carrier["traceparent"] = `00-${span.traceId}-${span.spanId}-01`;
  },
  extract(ctx, carrier: Record<string, string>) {
    const [, traceId, spanId] = (carrier["traceparent"] ?? "").split("-");
    if (traceId === undefined || spanId === undefined) return ctx;
    return trace.setSpanContext(ctx, { traceId, spanId, traceFlags: 1, isRemote: true });
  },
  fields: () => ["traceparent"],
};

test("the handler runs in the producer's trace", async () => {
  propagation.setGlobalPropagator(traceparent);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const server = await Server.start();
  const client = new Client(server.address);
  try {
    const sent = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: 1 };
    await context.with(trace.setSpanContext(context.active(), sent), () => client.enqueue("traced", "alice"));
    const stop = new AbortController();
    let seen: string | undefined;
    let carried: string | undefined;
    await client.worker("traced").run(
      (job) => {
        carried = job.metadata["traceparent"];
        seen = trace.getSpanContext(context.active())?.traceId;
        stop.abort();
      },
      { signal: stop.signal, handleSignals: false },
    );
    assert.ok(carried?.includes(sent.traceId), `traceparent ${carried}`);
    assert.equal(seen, sent.traceId);
  } finally {
    client.close();
    await server.kill();
    propagation.disable();
    context.disable();
  }
});
