//! Job ids.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use ulid::Generator;

use crate::queue::JobId;

/// Makes job ids that are unique and increase strictly within the process,
/// even when many are made in one millisecond or the wall clock steps back.
#[derive(Default)]
pub struct IdGenerator {
    // A std mutex: held only to bump a counter, never across an await.
    inner: Mutex<Generator>,
}

impl std::fmt::Debug for IdGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdGenerator").finish_non_exhaustive()
    }
}

impl IdGenerator {
    /// `n` new ids, in increasing order.
    pub fn next_n(&self, n: usize) -> Vec<JobId> {
        let mut generator = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (0..n)
            .map(|_| {
                let ulid = generator.generate().or_else(|_| {
                    // The random part overflowed within one millisecond
                    // (odds about n in 2^80): continue in the next one.
                    generator.generate_from_datetime(SystemTime::now() + Duration::from_millis(1))
                });
                JobId::from_ulid(ulid.unwrap_or_else(|_| ulid::Ulid::new()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_strictly() {
        let ids = IdGenerator::default().next_n(10_000);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
