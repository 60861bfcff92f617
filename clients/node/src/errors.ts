/** What handlers throw to say how a job failed, and what the client throws. */

/** Fail this attempt and try the job again: after `delaySeconds`, or after
 * the queue's backoff when it is not given. */
export class Retry extends Error {
  readonly delaySeconds: number | undefined;
  constructor(reason = "retry", options: { delaySeconds?: number } = {}) {
    super(reason);
    this.name = "Retry";
    this.delaySeconds = options.delaySeconds;
  }
}

/** Fail the job for good: it goes to the dead-letter set at once. */
export class Permanent extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "Permanent";
  }
}

/** A call the server refused, with its gRPC status code by name
 * (`RESOURCE_EXHAUSTED`, `INVALID_ARGUMENT`, ...) and its message. */
export class JobqError extends Error {
  readonly code: string;
  readonly details: string;
  constructor(code: string, details: string) {
    super(`${code}: ${details}`);
    this.name = "JobqError";
    this.code = code;
    this.details = details;
  }
}
