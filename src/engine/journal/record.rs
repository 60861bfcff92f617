//! What the journal records: each change that a restart must reproduce,
//! as a protobuf message (prost), so records written by one version of
//! jobq stay readable by the next.
//!
//! Records describe outcomes, not requests: an enqueue records the job as
//! stored (its id and enqueue time included), a nack where the job went.
//! Replaying them needs no clock and no random numbers. Times are wall
//! clock, in microseconds since the Unix epoch, because they must mean the
//! same after a restart; a due time that passed while the server was down
//! makes the job ready at once.

/// One change.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    /// The change; `None` only in a record from a newer jobq.
    #[prost(oneof = "Change", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13")]
    pub change: Option<Change>,
}

/// The kinds of change.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Change {
    /// A job was stored.
    #[prost(message, tag = "1")]
    Enqueued(Enqueued),
    /// A job was handed to a worker (written without waiting: it only keeps
    /// attempt counts right after a crash).
    #[prost(message, tag = "2")]
    Leased(Leased),
    /// A job will be ready again (at once, or at `due_micros`) after a
    /// failed attempt.
    #[prost(message, tag = "3")]
    Retried(Retried),
    /// A job moved to the dead-letter set.
    #[prost(message, tag = "4")]
    DeadLettered(DeadLettered),
    /// A dead job is ready again, its attempts reset.
    #[prost(message, tag = "5")]
    Redriven(JobRef),
    /// A job left the queue: acked, cancelled or purged.
    #[prost(message, tag = "6")]
    Removed(JobRef),
    /// A queue's settings, as they are after a change.
    #[prost(message, tag = "7")]
    QueueSettings(QueueSettings),
    /// A queue and every job in it were deleted.
    #[prost(message, tag = "8")]
    QueueDeleted(QueueRef),
    /// A server started on the journal: lease tokens of this run carry
    /// `epoch`, so none from an earlier run matches.
    #[prost(message, tag = "9")]
    Booted(Booted),
    /// A job as it is now, copied forward so the segment that first
    /// recorded it can be deleted: replaces whatever came before.
    #[prost(message, tag = "10")]
    Snapshot(Snapshot),
    /// An idempotency key still inside its window, copied forward so the
    /// segment that first recorded it can be deleted.
    #[prost(message, tag = "11")]
    Key(Key),
    /// A schedule as it is after a change of settings or a fire: replaces
    /// whatever came before.
    #[prost(message, tag = "12")]
    Schedule(Schedule),
    /// A schedule was deleted.
    #[prost(message, tag = "13")]
    ScheduleDeleted(ScheduleRef),
}

/// One schedule, named.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScheduleRef {
    /// The schedule.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// A schedule's settings and state. Times are milliseconds since the
/// Unix epoch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Schedule {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The queue it fires into.
    #[prost(string, tag = "2")]
    pub queue: String,
    /// Each job's payload.
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: bytes::Bytes,
    /// Each job's metadata.
    #[prost(message, repeated, tag = "4")]
    pub metadata: Vec<Entry>,
    /// Each job's priority.
    #[prost(int32, tag = "5")]
    pub priority: i32,
    /// Each job's deliveries before dead-lettering; 0 for the queue's.
    #[prost(uint32, tag = "6")]
    pub max_attempts: u32,
    /// The cron expression, or empty for an interval.
    #[prost(string, tag = "7")]
    pub cron: String,
    /// The interval, for no cron expression.
    #[prost(uint64, tag = "8")]
    pub every_millis: u64,
    /// The IANA time zone.
    #[prost(string, tag = "9")]
    pub zone: String,
    /// 0 skip, 1 fire once, 2 fire all.
    #[prost(uint32, tag = "10")]
    pub misfire: u32,
    /// 0 allow, 1 skip if running.
    #[prost(uint32, tag = "11")]
    pub overlap: u32,
    /// The jitter.
    #[prost(uint64, tag = "12")]
    pub jitter_millis: u64,
    /// No fire before.
    #[prost(int64, optional, tag = "13")]
    pub start_millis: Option<i64>,
    /// No fire after.
    #[prost(int64, optional, tag = "14")]
    pub end_millis: Option<i64>,
    /// Whether paused.
    #[prost(bool, tag = "15")]
    pub paused: bool,
    /// Where an interval counts from.
    #[prost(int64, tag = "16")]
    pub anchor_millis: i64,
    /// The earliest fire time not known to be done; unset when none is
    /// left.
    #[prost(int64, optional, tag = "17")]
    pub resume_from_millis: Option<i64>,
    /// Jobs enqueued.
    #[prost(uint64, tag = "18")]
    pub fired: u64,
    /// Fire times skipped.
    #[prost(uint64, tag = "19")]
    pub skipped: u64,
    /// Fires the queue refused.
    #[prost(uint64, tag = "20")]
    pub failed: u64,
    /// The latest fires, oldest first.
    #[prost(message, repeated, tag = "21")]
    pub recent: Vec<ScheduleFire>,
    /// The latest fire's job.
    #[prost(message, optional, tag = "22")]
    pub last_job: Option<Id>,
    /// When created.
    #[prost(int64, tag = "23")]
    pub created_millis: i64,
    /// When its settings last changed.
    #[prost(int64, tag = "24")]
    pub updated_millis: i64,
}

/// One fire of a schedule.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScheduleFire {
    /// The fire time.
    #[prost(int64, tag = "1")]
    pub fire_millis: i64,
    /// When it was handled.
    #[prost(int64, tag = "2")]
    pub handled_millis: i64,
    /// 0 enqueued, 1 skipped while running, 2 misfired, 3 failed.
    #[prost(uint32, tag = "3")]
    pub kind: u32,
    /// The job enqueued, or the one still running.
    #[prost(message, optional, tag = "4")]
    pub job: Option<Id>,
    /// Fire times misfired.
    #[prost(uint64, tag = "5")]
    pub count: u64,
    /// Why the queue refused it.
    #[prost(string, tag = "6")]
    pub error: String,
}

/// An idempotency key and the job it made.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Key {
    /// The job the key made, with its queue.
    #[prost(message, optional, tag = "1")]
    pub job: Option<JobRef>,
    /// The key.
    #[prost(string, tag = "2")]
    pub key: String,
    /// When the key was first seen: its window runs from then.
    #[prost(int64, tag = "3")]
    pub stored_at_micros: i64,
}

/// A job's whole state.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Snapshot {
    /// The job as stored, with the due time it has now (0 if none).
    #[prost(message, optional, tag = "1")]
    pub job: Option<Enqueued>,
    /// Deliveries so far.
    #[prost(uint32, tag = "2")]
    pub attempts: u32,
    /// Its failed attempts, oldest first.
    #[prost(message, repeated, tag = "3")]
    pub failures: Vec<Failure>,
    /// Held by a worker when copied.
    #[prost(bool, tag = "4")]
    pub leased: bool,
    /// In the dead-letter set.
    #[prost(bool, tag = "5")]
    pub dead: bool,
    /// Of its deliveries, those dropped with their worker stream.
    #[prost(uint32, tag = "6")]
    pub drops: u32,
}

/// A server's start.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Booted {
    /// One more than the last run's.
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
}

/// A job id's two 64-bit halves, high first.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Id {
    /// The high half.
    #[prost(fixed64, tag = "1")]
    pub high: u64,
    /// The low half.
    #[prost(fixed64, tag = "2")]
    pub low: u64,
}

impl Id {
    /// The record of `id`.
    pub fn of(id: crate::queue::JobId) -> Self {
        let bits = id.to_u128();
        Self {
            high: (bits >> 64) as u64,
            low: bits as u64,
        }
    }

    /// The job id it records.
    pub fn job(self) -> crate::queue::JobId {
        crate::queue::JobId::from_u128((u128::from(self.high) << 64) | u128::from(self.low))
    }
}

/// One job of one queue.
#[derive(Clone, PartialEq, prost::Message)]
pub struct JobRef {
    /// The queue.
    #[prost(string, tag = "1")]
    pub queue: String,
    /// The job.
    #[prost(message, optional, tag = "2")]
    pub id: Option<Id>,
}

/// A job handed to a worker.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Leased {
    /// The job.
    #[prost(message, optional, tag = "1")]
    pub job: Option<JobRef>,
    /// Which delivery this is, from 1.
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}

/// One queue.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueueRef {
    /// The queue.
    #[prost(string, tag = "1")]
    pub queue: String,
}

/// A job as it was stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Enqueued {
    /// The job's queue and id.
    #[prost(message, optional, tag = "1")]
    pub job: Option<JobRef>,
    /// Its payload.
    #[prost(bytes = "bytes", tag = "2")]
    pub payload: bytes::Bytes,
    /// Its metadata, in the stored order.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<Entry>,
    /// Higher is delivered first.
    #[prost(int32, tag = "4")]
    pub priority: i32,
    /// Deliveries before dead-lettering, the queue's default filled in.
    #[prost(uint32, tag = "5")]
    pub max_attempts: u32,
    /// When the server accepted it.
    #[prost(int64, tag = "6")]
    pub enqueued_at_micros: i64,
    /// When it becomes leasable; 0 for at once.
    #[prost(int64, tag = "7")]
    pub due_micros: i64,
    /// The idempotency key it was stored under, if any.
    #[prost(string, tag = "8")]
    pub idempotency_key: String,
}

/// One metadata entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// Its key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A failed attempt.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Failure {
    /// Which attempt failed.
    #[prost(uint32, tag = "1")]
    pub attempt: u32,
    /// Why.
    #[prost(string, tag = "2")]
    pub error: String,
    /// When.
    #[prost(int64, tag = "3")]
    pub at_micros: i64,
}

/// A job back in line after a failed attempt.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Retried {
    /// The job.
    #[prost(message, optional, tag = "1")]
    pub job: Option<JobRef>,
    /// Why the attempt failed.
    #[prost(message, optional, tag = "2")]
    pub failure: Option<Failure>,
    /// When it is ready again; 0 for at once.
    #[prost(int64, tag = "3")]
    pub due_micros: i64,
    /// The delivery ended with its worker stream: a drop, not a failed
    /// attempt.
    #[prost(bool, tag = "4")]
    pub dropped: bool,
}

/// A job moved to the dead-letter set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeadLettered {
    /// The job.
    #[prost(message, optional, tag = "1")]
    pub job: Option<JobRef>,
    /// The attempt that ended it.
    #[prost(message, optional, tag = "2")]
    pub failure: Option<Failure>,
}

/// A queue's settings.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueueSettings {
    /// The queue.
    #[prost(string, tag = "1")]
    pub queue: String,
    /// Jobs held at most.
    #[prost(uint64, tag = "2")]
    pub capacity: u64,
    /// Default lease.
    #[prost(uint64, tag = "3")]
    pub lease_micros: u64,
    /// Default deliveries before dead-lettering.
    #[prost(uint32, tag = "4")]
    pub max_attempts: u32,
    /// Backoff after the first failure.
    #[prost(uint64, tag = "5")]
    pub backoff_base_micros: u64,
    /// Longest backoff.
    #[prost(uint64, tag = "6")]
    pub backoff_cap_micros: u64,
    /// Relative spread of the backoff.
    #[prost(double, tag = "7")]
    pub backoff_jitter: f64,
    /// Whether leasing is paused.
    #[prost(bool, tag = "8")]
    pub paused: bool,
}
