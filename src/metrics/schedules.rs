//! Each schedule's fires, skips, failures and time to its next fire,
//! encoded from what the last scrape read from the engine: per schedule
//! for the first [`NAMED_SCHEDULES`] by name, and summed under
//! `schedule="(other)"` for the rest, so a scrape stays bounded however
//! many schedules there are.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::jobs::OTHER_QUEUES;
use super::queues::Described;
use crate::engine::ScheduleFigures;

/// Schedules exported under their own name, the first by name.
pub const NAMED_SCHEDULES: usize = 500;

/// A `schedule` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabel {
    schedule: String,
}

/// One label's figures.
#[derive(Clone, Debug, Default)]
pub(super) struct ScheduleRow {
    label: String,
    fired: u64,
    skipped: u64,
    failed: u64,
    /// Seconds until the next fire is due; `None` when none is.
    next_in: Option<f64>,
}

/// The rows to export from every schedule's figures.
pub(super) fn rows(figures: &[ScheduleFigures]) -> Vec<ScheduleRow> {
    let row = |f: &ScheduleFigures| ScheduleRow {
        label: f.name.to_string(),
        fired: f.fired,
        skipped: f.skipped,
        failed: f.failed,
        next_in: f.until_next.map(|d| d.as_secs_f64()),
    };
    let mut out: Vec<ScheduleRow> = figures.iter().take(NAMED_SCHEDULES).map(row).collect();
    let mut rest = figures.iter().skip(NAMED_SCHEDULES).map(row).peekable();
    if rest.peek().is_some() {
        let other = rest.fold(
            ScheduleRow {
                label: OTHER_QUEUES.to_string(),
                ..ScheduleRow::default()
            },
            |mut sum, r| {
                sum.fired += r.fired;
                sum.skipped += r.skipped;
                sum.failed += r.failed;
                // The soonest of them.
                sum.next_in = match (sum.next_in, r.next_in) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                sum
            },
        );
        out.push(other);
    }
    out
}

// A std mutex: held only to swap or read one scrape's rows, never across
// an `.await`.
pub(super) fn lock(rows: &Mutex<Vec<ScheduleRow>>) -> std::sync::MutexGuard<'_, Vec<ScheduleRow>> {
    rows.lock().unwrap_or_else(|e| e.into_inner())
}

/// Encodes each schedule's figures as the scrape read them.
#[derive(Debug)]
pub(super) struct ScheduleCollector {
    pub(super) rows: Arc<Mutex<Vec<ScheduleRow>>>,
}

impl Collector for ScheduleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = lock(&self.rows);
        let label = |row: &ScheduleRow| ScheduleLabel {
            schedule: row.label.clone(),
        };
        let counters: [Described<ScheduleRow, u64>; 3] = [
            ("schedule_fires", "Jobs a schedule enqueued", |r| r.fired),
            (
                "schedule_skips",
                "Fire times a schedule skipped, by its misfire or overlap rule",
                |r| r.skipped,
            ),
            (
                "schedule_failures",
                "Fires whose job the queue refused",
                |r| r.failed,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for row in rows.iter() {
                ConstCounter::new(value(row)).encode(family.encode_family(&label(row))?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "schedule_next_fire_seconds",
            "Seconds until a schedule's next fire is due (none for a paused or finished one)",
            None,
            MetricType::Gauge,
        )?;
        for row in rows.iter() {
            if let Some(next_in) = row.next_in {
                ConstGauge::new(next_in).encode(family.encode_family(&label(row))?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::queue::ScheduleName;

    #[test]
    fn schedules_past_the_named_ones_are_summed_under_other() {
        let figures: Vec<ScheduleFigures> = (0..NAMED_SCHEDULES + 3)
            .map(|i| ScheduleFigures {
                name: ScheduleName::new(format!("s{i:05}")).expect("name"),
                fired: 1,
                skipped: 2,
                failed: 0,
                until_next: (i % 2 == 0).then(|| Duration::from_secs(10 + i as u64)),
            })
            .collect();
        let rows = rows(&figures);
        assert_eq!(rows.len(), NAMED_SCHEDULES + 1);
        let other = rows.last().expect("other");
        assert_eq!(other.label, OTHER_QUEUES);
        assert_eq!((other.fired, other.skipped), (3, 6));
        // The soonest next fire among the three summed.
        assert_eq!(other.next_in, Some((10 + NAMED_SCHEDULES) as f64));
    }
}
