//! A queue's enqueue and ack rates as a small SVG line chart, drawn on the
//! server so it needs no script (its colours come from the stylesheet).

use maud::{Markup, html};

use super::format;
use super::rates::Series;

const WIDTH: f64 = 150.0;
const HEIGHT: f64 = 32.0;

/// The chart: enqueues and acks per second over the last minutes (as many
/// as have been sampled, up to five), scaled to the highest rate seen,
/// with both current rates in its title. `class` sizes it.
pub(super) fn rates(series: &Series, class: &str) -> Markup {
    let peak = series
        .enqueued
        .iter()
        .chain(&series.acked)
        .fold(0.0_f64, |a, &b| a.max(b));
    let (enq, ack) = series.current();
    let title = format!(
        "over the last {}: now {} enqueued, {} acked; peak {}",
        format::span(super::rates::INTERVAL * series.enqueued.len() as u32),
        format::rate(enq),
        format::rate(ack),
        format::rate(peak)
    );
    html! {
        svg class={ "spark " (class) } viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } preserveAspectRatio="none" role="img" aria-label=(title) {
            title { (title) }
            line.base x1="0" y1=(HEIGHT - 0.5) x2=(WIDTH) y2=(HEIGHT - 0.5) vector-effect="non-scaling-stroke" {}
            polyline.enq points=(points(&series.enqueued, peak)) vector-effect="non-scaling-stroke" {}
            polyline.ack points=(points(&series.acked, peak)) vector-effect="non-scaling-stroke" {}
        }
    }
}

/// The values as polyline points across the chart's width.
fn points(values: &[f64], peak: f64) -> String {
    let step = WIDTH / values.len().saturating_sub(1).max(1) as f64;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let y = if peak > 0.0 {
                (HEIGHT - 2.0) - (v / peak) * (HEIGHT - 4.0)
            } else {
                HEIGHT - 2.0
            };
            format!("{:.1},{:.1}", step * i as f64, y)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_rate_reaches_the_top_and_zero_the_bottom() {
        let series = Series {
            enqueued: vec![0.0, 10.0],
            acked: vec![5.0, 0.0],
        };
        let svg = rates(&series, "").into_string();
        assert!(svg.contains(r#"points="0.0,30.0 150.0,2.0""#), "{svg}");
        assert!(svg.contains(r#"points="0.0,16.0 150.0,30.0""#), "{svg}");
        assert!(svg.contains("over the last 4 s"), "{svg}");
        assert!(svg.contains("now 5.0/s enqueued, 2.5/s acked"), "{svg}");
    }
}
