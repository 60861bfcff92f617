//! How the dashboard writes numbers, sizes, spans and times: with
//! thousands separators and units, times relative with the exact time on
//! hover.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{Markup, html};

/// `1234567` as `1,234,567`.
pub(super) fn count(n: impl Into<u64>) -> String {
    let digits = n.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A rate per second, to one decimal under 100.
pub(super) fn rate(per_second: f64) -> String {
    if per_second >= 100.0 {
        format!("{}/s", count(per_second.round() as u64))
    } else {
        format!("{per_second:.1}/s")
    }
}

/// Bytes with a binary unit: `512 B`, `1.5 KiB`, `200 MiB`.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A span of time in its two largest units: `850 ms`, `12 s`,
/// `3 min 4 s`, `2 h 5 min`, `3 d 4 h`.
pub(super) fn span(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{} ms", d.as_millis()),
        1..60 => format!("{secs} s"),
        60..3600 => two(secs / 60, "min", secs % 60, "s"),
        3600..86_400 => two(secs / 3600, "h", secs % 3600 / 60, "min"),
        _ => two(secs / 86_400, "d", secs % 86_400 / 3600, "h"),
    }
}

fn two(big: u64, big_unit: &str, small: u64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big} {big_unit}")
    } else {
        format!("{big} {big_unit} {small} {small_unit}")
    }
}

/// A setting's duration as the settings form takes it back
/// (`30s`, `15m`, `1h 30m`).
pub(super) fn setting(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The exact time, as shown on hover: `2026-12-04 01:02:03 UTC`.
pub(super) fn exact(at: SystemTime) -> String {
    DateTime::<Utc>::from(at)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// `at` relative to `now` ("3 min ago", "in 5 s"), the exact time on hover
/// and in the `datetime` attribute.
pub(super) fn when(at: SystemTime, now: SystemTime) -> Markup {
    let relative = match now.duration_since(at) {
        Ok(past) if past < Duration::from_secs(1) => "just now".to_string(),
        Ok(past) => format!("{} ago", span(past)),
        Err(ahead) => format!("in {}", span(ahead.duration())),
    };
    let machine = DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Millis, true);
    html! { time datetime=(machine) title=(exact(at)) { (relative) } }
}

/// A `tokio` instant on the wall clock, given both clocks' `now`.
pub(super) fn wall(
    at: tokio::time::Instant,
    now: tokio::time::Instant,
    wall_now: SystemTime,
) -> SystemTime {
    if at >= now {
        wall_now + (at - now)
    } else {
        wall_now
            .checked_sub(now - at)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// A schedule's millisecond time on the wall clock.
pub(super) fn millis(at: i64) -> SystemTime {
    match u64::try_from(at) {
        Ok(ms) => SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0u64), "0");
        assert_eq!(count(999u64), "999");
        assert_eq!(count(1000u64), "1,000");
        assert_eq!(count(1_234_567u64), "1,234,567");
        assert_eq!(rate(2.25), "2.2/s");
        assert_eq!(rate(12_345.4), "12,345/s");
    }

    #[test]
    fn sizes_and_spans_have_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(200 << 20), "200 MiB");
        assert_eq!(span(Duration::from_millis(850)), "850 ms");
        assert_eq!(span(Duration::from_secs(12)), "12 s");
        assert_eq!(span(Duration::from_secs(184)), "3 min 4 s");
        assert_eq!(span(Duration::from_secs(7200)), "2 h");
        assert_eq!(span(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3 d 4 h");
    }

    #[test]
    fn times_are_relative_with_the_exact_time_on_hover() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let shown = when(now - Duration::from_secs(180), now).into_string();
        assert_eq!(
            shown,
            r#"<time datetime="2027-01-15T07:57:00.000Z" title="2027-01-15 07:57:00 UTC">3 min ago</time>"#
        );
        assert!(
            when(now + Duration::from_secs(5), now)
                .into_string()
                .contains(">in 5 s<")
        );
        let (i, w) = (tokio::time::Instant::now(), now);
        assert_eq!(
            wall(i + Duration::from_secs(2), i, w),
            now + Duration::from_secs(2)
        );
        assert_eq!(
            wall(i, i + Duration::from_secs(2), w),
            now - Duration::from_secs(2)
        );
    }
}
