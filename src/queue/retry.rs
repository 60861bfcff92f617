//! Exponential backoff for retries.

use std::time::Duration;

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
