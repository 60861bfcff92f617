//! Enqueue and ack rates over the last minutes, per queue: the totals
//! every queue reports, sampled at a fixed interval into a short ring, so
//! the overview can draw a rate chart without the engine keeping history.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::QueueInfo;
use crate::queue::QueueName;

/// How often the totals are sampled.
pub(super) const INTERVAL: Duration = Duration::from_secs(2);
/// Samples kept per queue: five minutes' worth.
const KEPT: usize = 150;
/// Samples the current rate is taken over (the last ten seconds).
const CURRENT_OVER: usize = 5;
/// Queues charted at most (the first in name order), so the rings stay a
/// few MiB however many queues there are: 1,000 × 150 × 24 bytes.
pub(super) const MAX_CHARTED: usize = 1000;

/// One queue's totals at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    enqueued: u64,
    acked: u64,
}

/// A queue's rates, oldest first: per sampling interval, in jobs per
/// second.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Series {
    /// Jobs enqueued per second.
    pub enqueued: Vec<f64>,
    /// Jobs acked per second.
    pub acked: Vec<f64>,
}

impl Series {
    /// The rates over the last few intervals: (enqueued, acked) per second.
    pub(super) fn current(&self) -> (f64, f64) {
        let mean = |v: &[f64]| {
            let last = &v[v.len().saturating_sub(CURRENT_OVER)..];
            if last.is_empty() {
                0.0
            } else {
                last.iter().sum::<f64>() / last.len() as f64
            }
        };
        (mean(&self.enqueued), mean(&self.acked))
    }
}

/// Every queue's recent samples.
#[derive(Debug, Default)]
pub(super) struct Rates {
    // A std mutex: held for one update or read, never across an await.
    queues: Mutex<HashMap<QueueName, VecDeque<Sample>>>,
}

impl Rates {
    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<QueueName, VecDeque<Sample>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the totals of every queue (up to [`MAX_CHARTED`]) as of
    /// `at`; forgets queues no longer there.
    pub(super) fn record(&self, at: Instant, figures: &[QueueInfo]) {
        let mut queues = self.queues();
        let mut seen = HashMap::with_capacity(figures.len().min(MAX_CHARTED));
        for info in figures.iter().take(MAX_CHARTED) {
            let mut samples = queues.remove(&info.name).unwrap_or_default();
            if samples.len() == KEPT {
                samples.pop_front();
            }
            samples.push_back(Sample {
                at,
                enqueued: info.stats.enqueued,
                acked: info.stats.acked,
            });
            seen.insert(info.name.clone(), samples);
        }
        *queues = seen;
    }

    /// `queue`'s rates per interval, oldest first (empty until two samples
    /// are in); `None` for a queue not sampled (new since the last sample,
    /// or past [`MAX_CHARTED`]).
    pub(super) fn series(&self, queue: &QueueName) -> Option<Series> {
        let queues = self.queues();
        let samples = queues.get(queue)?;
        let mut series = Series::default();
        for (a, b) in samples.iter().zip(samples.iter().skip(1)) {
            let secs = b.at.duration_since(a.at).as_secs_f64();
            if secs <= 0.0 {
                continue;
            }
            series
                .enqueued
                .push(b.enqueued.saturating_sub(a.enqueued) as f64 / secs);
            series
                .acked
                .push(b.acked.saturating_sub(a.acked) as f64 / secs);
        }
        Some(series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{QueueConfig, QueueCounts, QueueStats};

    fn info(name: &str, enqueued: u64, acked: u64) -> QueueInfo {
        QueueInfo {
            name: QueueName::new(name).expect("name"),
            config: QueueConfig::default(),
            paused: false,
            counts: QueueCounts::default(),
            stats: QueueStats {
                enqueued,
                acked,
                ..QueueStats::default()
            },
            oldest_ready: None,
            workers: 0,
        }
    }

    #[test]
    fn rates_are_the_totals_differences_per_second() {
        let rates = Rates::default();
        let start = Instant::now();
        let q = QueueName::new("emails").expect("name");
        assert_eq!(rates.series(&q), None);
        rates.record(start, &[info("emails", 0, 0)]);
        assert_eq!(rates.series(&q), Some(Series::default()));
        rates.record(start + INTERVAL, &[info("emails", 100, 40)]);
        rates.record(start + 2 * INTERVAL, &[info("emails", 100, 100)]);
        let series = rates.series(&q).expect("sampled");
        assert_eq!(series.enqueued, vec![50.0, 0.0]);
        assert_eq!(series.acked, vec![20.0, 30.0]);
        assert_eq!(series.current(), (25.0, 25.0));
    }

    #[test]
    fn a_ring_keeps_five_minutes_and_a_gone_queue_is_forgotten() {
        let rates = Rates::default();
        let start = Instant::now();
        for i in 0..(KEPT as u64 + 10) {
            rates.record(
                start + INTERVAL * i as u32,
                &[info("q", i, i), info("r", 0, 0)],
            );
        }
        let q = QueueName::new("q").expect("name");
        assert_eq!(rates.series(&q).map(|s| s.enqueued.len()), Some(KEPT - 1));
        rates.record(start + INTERVAL * 500, &[info("r", 0, 0)]);
        assert_eq!(rates.series(&q), None);
    }

    #[test]
    fn only_the_first_queues_are_charted() {
        let rates = Rates::default();
        let names: Vec<String> = (0..=MAX_CHARTED).map(|i| format!("q{i:05}")).collect();
        let figures: Vec<QueueInfo> = names.iter().map(|n| info(n, 1, 1)).collect();
        let start = Instant::now();
        rates.record(start, &figures);
        rates.record(start + INTERVAL, &figures);
        let first = QueueName::new(names[0].as_str()).expect("name");
        let last = QueueName::new(names[MAX_CHARTED].as_str()).expect("name");
        assert_eq!(rates.series(&first).map(|s| s.enqueued.len()), Some(1));
        assert_eq!(rates.series(&last), None);
    }
}
