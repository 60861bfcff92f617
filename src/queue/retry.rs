//! Exponential backoff for retries.

use std::time::Duration;

use super::JobId;

/// Exponential backoff: attempt `a` waits `base × 2^(a−1)`, capped at `cap`,
/// then spread by ±`jitter` so that jobs failing together do not retry
/// together. The result never exceeds `cap`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt. Default 1 s.
    pub base: Duration,
    /// The longest wait. Default 15 min.
    pub cap: Duration,
    /// The relative spread, from 0.0 to 1.0. Default 0.2 (±20 %).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(15 * 60),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based). `unit` is a
    /// random number in `[0, 1)` that picks the point within the jitter band.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(63);
        let factor = 2f64.powi(exponent as i32);
        let nominal = (self.base.as_secs_f64() * factor).min(self.cap.as_secs_f64());
        let spread = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((nominal * spread).clamp(0.0, self.cap.as_secs_f64()))
    }

    /// The point in the jitter band for `attempt` of job `id`, in `[0, 1)`:
    /// spread like a random number over jobs and attempts, but derived
    /// from them, so replaying a journal of the same nacks reproduces the
    /// same retry times.
    pub fn jitter_unit(id: JobId, attempt: u32) -> f64 {
        // SplitMix64's finalizer over the id's bits and the attempt: a
        // two-line bijective mix, not worth a dependency.
        let bits = id.to_u128();
        let mut z = (bits as u64) ^ ((bits >> 64) as u64).rotate_left(29) ^ u64::from(attempt);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The top 53 bits, as a double in [0, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            jitter: 0.2,
        }
    }

    #[test]
    fn doubles_per_attempt_without_jitter_at_the_midpoint() {
        let p = policy();
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(p.delay(2, 0.5), Duration::from_secs(2));
        assert_eq!(p.delay(5, 0.5), Duration::from_secs(16));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = policy();
        assert_eq!(p.delay(3, 0.0), Duration::from_secs_f64(3.2));
        assert_eq!(p.delay(3, 1.0), Duration::from_secs_f64(4.8));
    }

    #[test]
    fn jitter_is_a_function_of_job_and_attempt_spread_over_the_band() {
        let ids: Vec<JobId> = (0..2000u128)
            .map(|n| JobId::from_u128(n << 80 | n))
            .collect();
        for id in &ids[..10] {
            assert_eq!(
                RetryPolicy::jitter_unit(*id, 3),
                RetryPolicy::jitter_unit(*id, 3),
                "the same input gives the same point"
            );
        }
        let units: Vec<f64> = ids
            .iter()
            .map(|id| RetryPolicy::jitter_unit(*id, 1))
            .collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        // Jobs failing together spread over the band: each tenth of it gets
        // a share near a tenth of the jobs.
        for decile in 0..10 {
            let low = f64::from(decile) / 10.0;
            let share = units
                .iter()
                .filter(|u| (low..low + 0.1).contains(*u))
                .count();
            assert!(
                (120..=280).contains(&share),
                "decile {decile}: {share} of 2000"
            );
        }
        // And the attempts of one job do not all land on one point.
        let id = ids[7];
        let per_attempt: Vec<f64> = (1..=8).map(|a| RetryPolicy::jitter_unit(id, a)).collect();
        assert!(per_attempt.windows(2).any(|w| (w[0] - w[1]).abs() > 0.05));
    }

    #[test]
    fn never_exceeds_the_cap_even_for_huge_attempts() {
        let p = policy();
        for attempt in [7, 8, 30, 64, u32::MAX] {
            for unit in [0.0, 0.5, 0.999] {
                let d = p.delay(attempt, unit);
                assert!(d <= p.cap, "attempt {attempt}: {d:?}");
                assert!(d >= p.cap.mul_f64(0.8), "attempt {attempt}: {d:?}");
            }
        }
    }
}
