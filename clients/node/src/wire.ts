/** Small conversions between JavaScript values and the wire's. */

import { status, type ServiceError } from "@grpc/grpc-js";
import { JobqError } from "./errors.js";
import type { Duration } from "./gen/google/protobuf/duration.js";

/** A protobuf Duration of `seconds`. */
export function duration(seconds: number): Duration {
  const whole = Math.trunc(seconds);
  return { seconds: whole, nanos: Math.round((seconds - whole) * 1e9) };
}

/** Seconds in a protobuf Duration. */
export function seconds(d: Duration): number {
  return d.seconds + d.nanos / 1e9;
}

/** A gRPC status code's name (`RESOURCE_EXHAUSTED` for 8). */
export function codeName(code: number): string {
  return status[code] ?? String(code);
}

/** The server's refusal as this library throws it. */
export function refused(error: ServiceError | Error): JobqError {
  if ("code" in error && typeof error.code === "number") {
    return new JobqError(codeName(error.code), (error as ServiceError).details ?? error.message);
  }
  return new JobqError("UNAVAILABLE", error.message);
}
