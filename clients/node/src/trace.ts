/** Trace context from producer to worker, when `@opentelemetry/api` is
 * installed: the producer's context goes into the job's metadata
 * (`traceparent`), and the worker runs the handler in a span continuing it. */

import type * as Otel from "@opentelemetry/api";

let otel: typeof Otel | undefined;
try {
  otel = await import("@opentelemetry/api");
} catch {
  otel = undefined; // optional: tracing is off without it
}

/** Adds the current trace context to `metadata`, if there is one. */
export function inject(metadata: Record<string, string>): void {
  otel?.propagation.inject(otel.context.active(), metadata);
}

/** Runs `work` in a consumer span, child of the producer's. */
export async function inSpan<T>(
  queue: string,
  jobId: string,
  attempt: number,
  metadata: Record<string, string>,
  work: () => Promise<T>,
): Promise<T> {
  const api = otel;
  if (api === undefined) {
    return work();
  }
  const parent = api.propagation.extract(api.context.active(), metadata);
  const tracer = api.trace.getTracer("jobq");
  return tracer.startActiveSpan(
    `process ${queue}`,
    {
      kind: api.SpanKind.CONSUMER,
      attributes: {
        "messaging.system": "jobq",
        "messaging.destination.name": queue,
        "messaging.message.id": jobId,
        "jobq.attempt": attempt,
      },
    },
    parent,
    async (span) => {
      try {
        return await work();
      } finally {
        span.end();
      }
    },
  );
}
