//! Jobs and their ids.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ulid::Ulid;

use super::Metadata;

/// A job's id: a ULID, unique, never reused, and sortable by creation time.
///
/// Held as two 64-bit halves, high first, rather than a `u128`: the same
/// order, but 8-byte alignment, so the id packs tightly into the queue's
/// indexes (a `u128` would pad every `(u64, JobId)` pair to 32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId([u64; 2]);

impl JobId {
    /// Wraps a ULID.
    pub fn from_ulid(ulid: Ulid) -> Self {
        Self::from_u128(ulid.0)
    }

    /// The id as a 128-bit number (the ULID's bits).
    pub fn to_u128(self) -> u128 {
        (u128::from(self.0[0]) << 64) | u128::from(self.0[1])
    }

    /// The id from its 128-bit number.
    pub fn from_u128(bits: u128) -> Self {
        // Truncation keeps the low half, as intended.
        #[allow(clippy::cast_possible_truncation)]
        Self([(bits >> 64) as u64, bits as u64])
    }
}

/// Written as one `write_str` of the ULID's text: every enqueue answers
/// with an id, and the ULID's own `Display` goes through `write!` again.
impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Ulid(self.to_u128()).array_to_str(&mut [0; ulid::ULID_LEN]))
    }
}

impl FromStr for JobId {
    type Err = ulid::DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ulid::from_string(s).map(Self::from_ulid)
    }
}

/// A job as a producer hands it in, already validated.
#[derive(Clone, Debug, Default)]
pub struct NewJob {
    /// Opaque data.
    pub payload: Bytes,
    /// String headers, in a stable order.
    pub metadata: Vec<(String, String)>,
    /// Higher is delivered first.
    pub priority: i32,
    /// How long after its enqueue the job becomes leasable; `None` or zero
    /// means at once. Relative, so the due time is known both on the
    /// monotonic clock (enqueue instant + delay, for the timers) and on the
    /// wall clock (`enqueued_at` + delay, for anything that must outlive
    /// the process).
    pub delay: Option<Duration>,
    /// Deliveries before dead-lettering; `None` takes the queue's default.
    pub max_attempts: Option<u32>,
    /// Enqueuing the same key again within the queue's idempotency window
    /// stores nothing and answers with this job's id.
    pub idempotency_key: Option<String>,
}

impl NewJob {
    /// The bytes this job counts against memory limits while it is held:
    /// payload, metadata keys and values, and the job's fixed overhead
    /// ([`JOB_OVERHEAD_BYTES`](super::cost::JOB_OVERHEAD_BYTES)).
    pub fn size(&self) -> u64 {
        super::cost::job_bytes(self.payload.len(), &self.metadata)
    }

    /// The bytes its idempotency key counts while the key is remembered
    /// (which may be longer or shorter than the job is held).
    pub fn key_bytes(&self) -> u64 {
        self.idempotency_key
            .as_deref()
            .map_or(0, super::cost::key_bytes)
    }
}

/// A stored job. Shared (behind an `Arc`) between the queue and every
/// delivery, so handing it to a worker never copies the payload.
#[derive(Clone, Debug)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// Opaque data.
    pub payload: Bytes,
    /// String headers, packed (see [`Metadata`]).
    pub metadata: Metadata,
    /// Higher is delivered first.
    pub priority: i32,
    /// Deliveries before dead-lettering, the queue's default filled in.
    pub max_attempts: u32,
    /// When the server accepted the job.
    pub enqueued_at: SystemTime,
    /// Bytes counted against memory limits (see [`NewJob::size`]).
    pub size: u64,
}
