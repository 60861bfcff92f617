//! One measurement's figures, and the server CPU they cost.

use super::*;

/// One measurement: how many in how long, and the latencies seen.
pub(crate) struct Report {
    pub(crate) name: String,
    pub(crate) count: usize,
    pub(crate) elapsed: Duration,
    pub(crate) latency: Histogram<u64>,
    /// The server's CPU time over the measurement, when its pid is known.
    pub(crate) server_cpu: Option<Duration>,
}

impl Report {
    pub(crate) fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn print(&self, baseline: Option<&Report>) {
        let q = |p: f64| Duration::from_nanos(self.latency.value_at_quantile(p));
        let ratio = baseline
            .map(|b| format!("  {:.2}× {}", self.rate() / b.rate(), b.name))
            .unwrap_or_default();
        let cpu = self
            .server_cpu
            .map(|cpu| {
                let per_job = cpu.as_secs_f64() * 1e6 / self.count.max(1) as f64;
                format!("  server CPU {per_job:.1} µs/job")
            })
            .unwrap_or_default();
        let percentiles = if self.latency.is_empty() {
            format!("{:>71}", "(no per-job latency)")
        } else {
            format!(
                "p50 {:>9.1?}  p90 {:>9.1?}  p99 {:>9.1?}  p99.9 {:>9.1?}",
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999)
            )
        };
        println!(
            "{:<42} {:>10.0}/s  {percentiles}{ratio}{cpu}",
            self.name,
            self.rate(),
        );
    }
}

/// The CPU time (user + system) the process `pid` has used so far, from
/// `/proc/<pid>/stat` in clock ticks of 10 ms.
pub(crate) fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // The command name, in parentheses, may hold spaces: count after it.
    // utime and stime are the 14th and 15th fields, the 12th and 13th
    // after the name.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The server CPU spent since `before` was read.
pub(crate) fn cpu_since(pid: Option<u32>, before: Option<Duration>) -> Option<Duration> {
    Some(cpu_time(pid)?.saturating_sub(before?))
}

// Constant bounds that the crate accepts: this cannot fail.
#[allow(clippy::expect_used)]
pub(crate) fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s in nanoseconds, 3 significant digits.
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid histogram bounds")
}

pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record(d.as_nanos().clamp(1_000, 100_000_000_000) as u64);
}
