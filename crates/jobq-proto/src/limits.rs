//! The protocol's fixed limits: what every jobq server accepts, whatever
//! its configuration. (Limits an operator sets, such as the largest
//! payload, come from the server's flags instead.)

use std::time::Duration;

/// Highest per-job or per-queue `max_attempts`.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1000;
/// Most jobs in one batch enqueue.
pub const MAX_BATCH_JOBS: usize = 1000;
/// Most jobs one lease call returns.
pub const MAX_LEASE_JOBS: u32 = 100;
/// Most tokens in one ack.
pub const MAX_ACK_TOKENS: usize = 1000;
/// Furthest a job may be scheduled ahead, or a retry delayed.
pub const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Shortest lease.
pub const MIN_LEASE: Duration = Duration::from_millis(1);
/// Most metadata entries per job.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 256;
/// Longest metadata value, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Longest nack reason, in bytes.
pub const MAX_REASON_BYTES: usize = MAX_TEXT_BYTES;
/// Most credits one lease stream may hold.
pub const MAX_STREAM_CREDITS: u32 = 10_000;
