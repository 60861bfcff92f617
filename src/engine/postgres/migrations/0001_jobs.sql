-- jobq's tables on PostgreSQL.
--
-- Hot rows stay small: a job's payload and metadata are written once to
-- jobq_payloads and deleted once, while its row in jobq_jobs (a few dozen
-- bytes) changes state in place. Each partial index holds a job only while
-- it is in the states the index serves, so a job in line costs one entry
-- in the ready index, not one in every index.

CREATE TABLE jobq_queues (
    name                  text PRIMARY KEY,
    capacity              bigint NOT NULL,
    lease_ms              bigint NOT NULL,
    max_attempts          integer NOT NULL,
    backoff_base_ms       bigint NOT NULL,
    backoff_cap_ms        bigint NOT NULL,
    backoff_jitter        double precision NOT NULL,
    idempotency_window_ms bigint NOT NULL,
    finished_retention_ms bigint NOT NULL,
    paused                boolean NOT NULL DEFAULT false,
    -- Jobs held in every state but finished: what capacity is checked
    -- against, kept exact by every change that adds or removes one.
    held                  bigint NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);

-- state: 1 ready, 2 scheduled, 3 leased, 4 dead, 5 acked, 6 cancelled.
-- due_at: ready, when it became ready (its place in line); scheduled,
-- when it becomes ready; leased, when the lease runs out; dead, when it
-- died; acked or cancelled, when it is forgotten.
CREATE TABLE jobq_jobs (
    id             uuid PRIMARY KEY,
    queue          text NOT NULL,
    state          smallint NOT NULL,
    priority       integer NOT NULL,
    due_at         timestamptz NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    drops          integer NOT NULL DEFAULT 0,
    -- Grows with every delivery, never goes back: a lease token carries
    -- it, so a token of an earlier delivery never matches.
    delivery       bigint NOT NULL DEFAULT 0,
    max_attempts   integer NOT NULL,
    -- The replica and worker stream holding a lease taken by a stream.
    holder_replica uuid,
    holder         bigint,
    leased_at      timestamptz,
    enqueued_at    timestamptz NOT NULL,
    finished_at    timestamptz,
    size           bigint NOT NULL,
    payload_bytes  bigint NOT NULL,
    last_error     text
) WITH (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.05
);

CREATE INDEX jobq_jobs_ready ON jobq_jobs (queue, priority DESC, due_at, id) WHERE state = 1;
CREATE INDEX jobq_jobs_timers ON jobq_jobs (due_at) WHERE state IN (2, 3);
CREATE INDEX jobq_jobs_forget ON jobq_jobs (due_at) WHERE state IN (5, 6);
CREATE INDEX jobq_jobs_by_state ON jobq_jobs (queue, state, id);

-- Metadata: a JSON array of [key, value] pairs, in the job's order.
CREATE TABLE jobq_payloads (
    id       uuid PRIMARY KEY REFERENCES jobq_jobs (id) ON DELETE CASCADE,
    payload  bytea NOT NULL,
    metadata jsonb NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0);

CREATE TABLE jobq_failures (
    job     uuid NOT NULL REFERENCES jobq_jobs (id) ON DELETE CASCADE,
    seq     bigint GENERATED ALWAYS AS IDENTITY,
    attempt integer NOT NULL,
    error   text NOT NULL,
    at      timestamptz NOT NULL,
    PRIMARY KEY (job, seq)
);

CREATE TABLE jobq_keys (
    queue      text NOT NULL,
    key        text NOT NULL,
    job        uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (queue, key)
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);
CREATE INDEX jobq_keys_expiry ON jobq_keys (expires_at);

-- Each running replica's heartbeat; a replica that stops beating has its
-- worker streams' leases given back by the others.
CREATE TABLE jobq_replicas (
    id         uuid PRIMARY KEY,
    host       text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);

-- Worker streams open per replica and queue, written with the heartbeat.
CREATE TABLE jobq_workers (
    replica uuid NOT NULL REFERENCES jobq_replicas (id) ON DELETE CASCADE,
    queue   text NOT NULL,
    streams integer NOT NULL,
    PRIMARY KEY (replica, queue)
);

-- Totals since a queue was created, one row per replica (added to every
-- 2 s), so no two replicas update the same row.
CREATE TABLE jobq_queue_totals (
    queue         text NOT NULL,
    replica       uuid NOT NULL,
    enqueued      bigint NOT NULL DEFAULT 0,
    leased        bigint NOT NULL DEFAULT 0,
    acked         bigint NOT NULL DEFAULT 0,
    nacked        bigint NOT NULL DEFAULT 0,
    expired       bigint NOT NULL DEFAULT 0,
    dead_lettered bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, replica)
);
