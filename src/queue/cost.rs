//! What the memory budget counts for each thing a queue holds: the bytes a
//! client sent, plus a fixed overhead per entry for the maps, indexes and
//! allocations that hold it (estimates from the resident size of a
//! million jobs, rounded up: see BENCHMARKS.md), so a flood of empty jobs
//! or tiny keys is counted too.

/// Per job: its entry in the queue's map and indexes and its shared
/// record.
pub const JOB_OVERHEAD_BYTES: u64 = 320;
/// Per idempotency key: its entries in the key map and the expiry order
/// (the key's bytes are counted twice, once in each).
pub const KEY_OVERHEAD_BYTES: u64 = 160;
/// Per record of a finished job kept for `GetJob` (no payload, no
/// metadata), beside its failure history.
pub const FINISHED_OVERHEAD_BYTES: u64 = 320;
/// Per failed attempt in a job's history, beside its error text.
pub const FAILURE_OVERHEAD_BYTES: u64 = 48;
/// Per job with a failure history, for the history itself.
pub const HISTORY_OVERHEAD_BYTES: u64 = 64;

/// What a job costs while it is held: its payload, its metadata's keys and
/// values, and [`JOB_OVERHEAD_BYTES`].
pub fn job_bytes(payload: usize, metadata: &[(String, String)]) -> u64 {
    let meta: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    (payload + meta) as u64 + JOB_OVERHEAD_BYTES
}

/// What an idempotency key costs while it is remembered.
pub fn key_bytes(key: &str) -> u64 {
    2 * key.len() as u64 + KEY_OVERHEAD_BYTES
}
