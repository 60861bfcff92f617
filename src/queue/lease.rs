//! Lease tokens and what workers get and give back.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Job, JobId};

/// Names one delivery of one job. The delivery number comes from a counter
/// that only grows, so every delivery of a job has a different token and a
/// token from an earlier delivery never matches the live lease.
///
/// Its text form is 48 hex digits: the job id's 128 bits, then the delivery
/// number's 64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseToken {
    /// The leased job.
    pub job: JobId,
    /// Which delivery of the queue this is.
    pub delivery: u64,
}

/// Characters in a lease token: the job id's 32 hex digits, then the
/// delivery's 16.
const TOKEN_LEN: usize = 48;

impl LeaseToken {
    /// The token's hex digits. Written out here rather than with
    /// `format!("{:032x}{:016x}")`: every delivery carries one, and the
    /// padded formatting costs several times this loop.
    fn digits(&self) -> [u8; TOKEN_LEN] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0; TOKEN_LEN];
        let (id, delivery) = (self.job.to_u128(), self.delivery);
        for (i, digit) in out.iter_mut().enumerate() {
            let nibble = if i < 32 {
                (id >> (4 * (31 - i))) & 0xf
            } else {
                u128::from(delivery >> (4 * (47 - i))) & 0xf
            };
            // A nibble is below 16.
            #[allow(clippy::cast_possible_truncation)]
            let nibble = nibble as usize;
            *digit = HEX[nibble];
        }
        out
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.digits();
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

/// Why a string is not a lease token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lease token {0:?} is malformed: expected the 48 hex digits a lease returned")]
pub struct ParseLeaseTokenError(pub String);

impl FromStr for LeaseToken {
    type Err = ParseLeaseTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseLeaseTokenError(s.chars().take(64).collect());
        if s.len() != TOKEN_LEN {
            return Err(bad());
        }
        // By hand rather than `from_str_radix` after a check of every
        // digit: every ack parses a token, and this is one pass.
        let hex = |digits: &[u8]| {
            digits.iter().try_fold(0u128, |n, &b| {
                let digit = match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    b'A'..=b'F' => b - b'A' + 10,
                    _ => return None,
                };
                Some((n << 4) | u128::from(digit))
            })
        };
        let (job, delivery) = s.as_bytes().split_at(32);
        let job = hex(job).ok_or_else(bad)?;
        // 16 hex digits fit in 64 bits.
        let delivery = u64::try_from(hex(delivery).ok_or_else(bad)?).map_err(|_| bad())?;
        Ok(Self {
            job: JobId::from_u128(job),
            delivery,
        })
    }
}

/// Names a lease holder: a worker stream, whose leases are counted against
/// its credits and all given back when it closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HolderId(pub u64);

/// One job handed to a worker.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The job, shared with the queue.
    pub job: Arc<Job>,
    /// Names this delivery in ack, nack and extend.
    pub token: LeaseToken,
    /// 1 for the first delivery, 2 for the second, and so on.
    pub attempt: u32,
    /// Deliveries allowed before it is dead-lettered: the job's
    /// `max_attempts`, plus one for each delivery dropped with its worker
    /// stream.
    pub max_attempts: u32,
    /// When the lease runs out.
    pub deadline: Instant,
}

/// How a worker gives a job back.
#[derive(Clone, Debug, Default)]
pub struct NackRequest {
    /// Retry after exactly this long; `None` uses the queue's backoff.
    pub retry_delay: Option<Duration>,
    /// Skip the remaining attempts and dead-letter the job now.
    pub dead_letter: bool,
    /// Why the attempt failed; kept as the job's last error.
    pub reason: String,
}

/// What a nack did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NackOutcome {
    /// The job will be ready again at this time.
    RetryAt(Instant),
    /// The job is in the dead-letter set.
    DeadLettered,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_round_trips() {
        let token = LeaseToken {
            job: JobId::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            delivery: 42,
        };
        let text = token.to_string();
        assert_eq!(text, "0123456789abcdef0123456789abcdef000000000000002a");
        assert_eq!(text.parse::<LeaseToken>(), Ok(token));
        for (job, delivery) in [(0, 0), (u128::MAX, u64::MAX), (1 << 127, 1 << 63), (15, 15)] {
            let token = LeaseToken {
                job: JobId::from_u128(job),
                delivery,
            };
            let text = token.to_string();
            assert_eq!(text, format!("{job:032x}{delivery:016x}"));
            assert_eq!(text.parse::<LeaseToken>(), Ok(token));
            assert_eq!(text.to_uppercase().parse::<LeaseToken>(), Ok(token));
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "xyz",
            &"g".repeat(48),
            &"0".repeat(47),
            "+0000000000000000000000000000000000000000000000",
        ] {
            assert!(bad.parse::<LeaseToken>().is_err(), "{bad:?}");
        }
    }
}
