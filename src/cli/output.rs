//! How the command line prints answers: tables for people, JSON for
//! scripts.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use clap::ValueEnum;
use comfy_table::Table;
use jobq::grpc::pb;
use serde_json::{Value, json};

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum Output {
    /// Human-readable text and tables.
    Table,
    /// JSON, one document per command.
    Json,
}

impl Output {
    /// Prints `json` or the text `human` makes, as chosen.
    pub(super) fn print(self, json: Value, human: impl FnOnce() -> String) {
        match self {
            Output::Json => println!("{json}"),
            Output::Table => println!("{}", human()),
        }
    }
}

/// A plain table with a header row.
pub(super) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    table.to_string()
}

fn counts(info: &pb::QueueInfo) -> pb::QueueCounts {
    info.counts.unwrap_or_default()
}

fn seconds(d: Option<prost_types::Duration>) -> Option<f64> {
    d.and_then(|d| Duration::try_from(d).ok())
        .map(|d| d.as_secs_f64())
}

fn human_duration(d: Option<prost_types::Duration>) -> String {
    d.and_then(|d| Duration::try_from(d).ok())
        .map(rounded)
        .unwrap_or_else(|| "-".into())
}

/// A duration as a person reads it: milliseconds under a second, tenths of
/// a second under a minute, whole seconds beyond (`597ms`, `5.6s`,
/// `3m 5s`, `2h 3m`).
fn rounded(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    if d < Duration::from_secs(60) {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let secs = d.as_secs_f64().round() as u64;
    // Past an hour the seconds say nothing.
    let secs = if secs >= 3600 { secs / 60 * 60 } else { secs };
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

pub(super) fn time(t: Option<prost_types::Timestamp>) -> Option<String> {
    t.and_then(|t| SystemTime::try_from(t).ok())
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
}

/// One row per queue.
pub(super) fn queue_rows(queues: &[pb::QueueInfo]) -> String {
    table(
        &[
            "QUEUE",
            "READY",
            "SCHEDULED",
            "LEASED",
            "DEAD",
            "PAUSED",
            "OLDEST READY",
        ],
        queues
            .iter()
            .map(|q| {
                let c = counts(q);
                vec![
                    q.name.clone(),
                    c.ready.to_string(),
                    c.scheduled.to_string(),
                    c.leased.to_string(),
                    c.dead.to_string(),
                    if q.paused { "yes" } else { "no" }.into(),
                    human_duration(q.oldest_ready_age),
                ]
            })
            .collect(),
    )
}

/// A queue as JSON.
pub(super) fn queue_json(q: &pb::QueueInfo) -> Value {
    let c = counts(q);
    let t = q.totals.unwrap_or_default();
    let s = q.settings.unwrap_or_default();
    json!({
        "name": q.name,
        "paused": q.paused,
        "counts": {"ready": c.ready, "scheduled": c.scheduled, "leased": c.leased, "dead": c.dead},
        "totals": {
            "enqueued": t.enqueued, "leased": t.leased, "acked": t.acked,
            "nacked": t.nacked, "expired": t.expired, "dead_lettered": t.dead_lettered,
        },
        "settings": {
            "capacity": s.capacity,
            "lease_duration_seconds": seconds(s.lease_duration),
            "max_attempts": s.max_attempts,
            "backoff_base_seconds": seconds(s.backoff_base),
            "backoff_cap_seconds": seconds(s.backoff_cap),
        },
        "oldest_ready_age_seconds": seconds(q.oldest_ready_age),
    })
}

/// One queue in detail.
pub(super) fn queue_stats(q: &pb::QueueInfo) -> String {
    let c = counts(q);
    let t = q.totals.unwrap_or_default();
    let s = q.settings.unwrap_or_default();
    let rows = [
        ("queue", q.name.clone()),
        ("paused", if q.paused { "yes" } else { "no" }.into()),
        ("ready", c.ready.to_string()),
        ("scheduled", c.scheduled.to_string()),
        ("leased", c.leased.to_string()),
        ("dead", c.dead.to_string()),
        ("oldest ready", human_duration(q.oldest_ready_age)),
        ("enqueued (total)", t.enqueued.to_string()),
        ("leased (total)", t.leased.to_string()),
        ("acked (total)", t.acked.to_string()),
        ("nacked (total)", t.nacked.to_string()),
        ("expired (total)", t.expired.to_string()),
        ("dead-lettered (total)", t.dead_lettered.to_string()),
        ("capacity", s.capacity.to_string()),
        ("lease duration", human_duration(s.lease_duration)),
        ("max attempts", s.max_attempts.to_string()),
        ("backoff base", human_duration(s.backoff_base)),
        ("backoff cap", human_duration(s.backoff_cap)),
    ];
    table(
        &["FIELD", "VALUE"],
        rows.into_iter()
            .map(|(k, v)| vec![k.to_string(), v])
            .collect(),
    )
}

fn state(job: &pb::JobInfo) -> &'static str {
    match job.state() {
        pb::JobState::Unspecified => "unknown",
        pb::JobState::Ready => "ready",
        pb::JobState::Scheduled => "scheduled",
        pb::JobState::Leased => "leased",
        pb::JobState::Dead => "dead",
        pb::JobState::Acked => "acked",
        pb::JobState::Cancelled => "cancelled",
    }
}

/// A payload as a terminal can show it: its text when it is UTF-8 with no
/// control characters (tabs aside), else a hex preview of its first bytes,
/// so a binary payload never writes raw control codes to the terminal.
pub(super) fn payload_text(payload: &[u8], max: usize) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) if !text.chars().any(|c| c.is_control() && c != '\t') => preview(text, max),
        _ => {
            let shown = payload.len().min(max / 2);
            let hex: String = payload[..shown]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let more = if shown < payload.len() { "…" } else { "" };
            format!("hex {hex}{more} ({} bytes)", payload.len())
        }
    }
}

fn preview(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// One job as a table row.
pub(super) fn job_row(info: &pb::JobInfo) -> Vec<String> {
    let job = info.job.clone().unwrap_or_default();
    vec![
        job.id.clone(),
        state(info).into(),
        info.attempts.to_string(),
        job.priority.to_string(),
        preview(&info.last_error, 40),
        payload_text(&job.payload, 40),
    ]
}

/// A job as JSON.
pub(super) fn job_json(info: &pb::JobInfo) -> Value {
    let job = info.job.clone().unwrap_or_default();
    json!({
        "id": job.id,
        "queue": job.queue,
        "state": state(info),
        "attempts": info.attempts,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        // Any bytes, so base64 (standard alphabet, padded); empty for a
        // job that has left the queue, whose payload_bytes still counts.
        "payload": base64::engine::general_purpose::STANDARD.encode(&job.payload),
        "payload_encoding": "base64",
        "payload_bytes": info.payload_bytes,
        "metadata": job.metadata,
        "enqueue_time": time(job.enqueue_time),
        "finish_time": time(info.finish_time),
        "last_error": (!info.last_error.is_empty()).then_some(&info.last_error),
        "failures": info.failures.iter().map(|f| json!({
            "attempt": f.attempt, "error": f.error, "time": time(f.time),
        })).collect::<Vec<_>>(),
    })
}

/// One job in detail.
pub(super) fn job_details(info: &pb::JobInfo) -> String {
    let job = info.job.clone().unwrap_or_default();
    let mut rows = vec![
        ("id", job.id.clone()),
        ("queue", job.queue.clone()),
        ("state", state(info).into()),
        (
            "attempts",
            format!("{} of {}", info.attempts, job.max_attempts),
        ),
        ("priority", job.priority.to_string()),
        (
            "enqueued",
            time(job.enqueue_time).unwrap_or_else(|| "-".into()),
        ),
        (
            "finished",
            time(info.finish_time).unwrap_or_else(|| "-".into()),
        ),
        ("payload", payload_text(&job.payload, 200)),
        ("payload bytes", info.payload_bytes.to_string()),
        ("last error", info.last_error.clone()),
    ];
    let mut metadata: Vec<_> = job.metadata.iter().collect();
    metadata.sort();
    let metadata: Vec<String> = metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    rows.push(("metadata", metadata.join(", ")));
    let mut text = table(
        &["FIELD", "VALUE"],
        rows.into_iter()
            .map(|(k, v)| vec![k.to_string(), v])
            .collect(),
    );
    if !info.failures.is_empty() {
        text.push_str("\n\n");
        text.push_str(&table(
            &["ATTEMPT", "FAILED AT", "ERROR"],
            info.failures
                .iter()
                .map(|f| {
                    vec![
                        f.attempt.to_string(),
                        time(f.time).unwrap_or_default(),
                        f.error.clone(),
                    ]
                })
                .collect(),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_rounded_for_people() {
        let ms = Duration::from_millis;
        assert_eq!(rounded(ms(597)), "597ms");
        assert_eq!(rounded(ms(5_640)), "5.6s");
        assert_eq!(rounded(ms(185_597)), "3m 6s");
        assert_eq!(rounded(ms(7_384_000)), "2h 3m");
    }

    #[test]
    fn a_payload_is_shown_as_text_only_when_it_is_printable() {
        assert_eq!(payload_text(b"alice@example.com", 40), "alice@example.com");
        assert_eq!(
            payload_text(&[0, 1, 0x1b, 0xff], 40),
            "hex 00011bff (4 bytes)"
        );
        assert_eq!(
            payload_text(b"a\x1b[31mred", 40),
            "hex 611b5b33316d726564 (9 bytes)"
        );
    }
}
