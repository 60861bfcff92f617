-- Recurring schedules. A row holds one schedule's settings and firing
-- state whole, as the journal's schedule record (protobuf) encodes it, so
-- the stores share one format. `due_at` (wall-clock milliseconds) is when
-- its next fire is due, or NULL while it is paused or has no fire left:
-- the firing replicas look only at due rows, through the partial index.
-- Each fire locks its row (FOR UPDATE SKIP LOCKED), enqueues the job and
-- writes the new state in one transaction, so one fire time makes one job
-- whichever replica fires it.
CREATE TABLE jobq_schedules (
    name   text PRIMARY KEY,
    record bytea NOT NULL,
    due_at bigint
);

CREATE INDEX jobq_schedules_due ON jobq_schedules (due_at) WHERE due_at IS NOT NULL;
