//! Schedules declared in a file (`--schedules-file`, which the Helm chart
//! renders from its `schedules:` values), created or updated at start-up,
//! so that schedules can be kept in git beside the deployment.
//!
//! The file is a JSON list. Each entry is checked by the same rules as a
//! SetSchedule call, before the server starts serving; a bad entry stops
//! the start with a message naming the file, the entry and the field.
//! Upserting the same settings changes nothing, so a restart keeps each
//! schedule's state (and its misfire rule's view of the downtime).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::engine::Engine;
use crate::grpc::{Limits, checked_schedule, pb};
use crate::queue::ScheduleName;
use crate::schedule::{ScheduleSpec, Upserted};

/// One entry of the file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Declared {
    name: String,
    queue: String,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    every: Option<String>,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    max_attempts: u32,
    #[serde(default)]
    misfire: Option<String>,
    #[serde(default)]
    overlap: Option<String>,
    #[serde(default)]
    jitter: Option<String>,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

/// Reads and checks the schedules in `path`.
pub(super) fn read(
    path: &Path,
    limits: &Limits,
) -> anyhow::Result<Vec<(ScheduleName, ScheduleSpec)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --schedules-file {}", path.display()))?;
    let entries: Vec<Declared> = serde_json::from_str(&text).with_context(|| {
        format!(
            "--schedules-file {} is not a JSON list of schedules",
            path.display()
        )
    })?;
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let name = entry.name.clone();
            let at = || format!("--schedules-file {} entry {i} ({name:?})", path.display());
            if !seen.insert(name.clone()) {
                bail!("{}: the name is declared twice", at());
            }
            let settings = settings(entry).with_context(at)?;
            checked_schedule(limits, &name, settings).with_context(at)
        })
        .collect()
}

fn duration(field: &str, text: &str) -> anyhow::Result<prost_types::Duration> {
    let parsed: Duration = humantime::parse_duration(text)
        .with_context(|| format!("{field}: {text:?} is not a duration such as 90s or 15m"))?;
    prost_types::Duration::try_from(parsed).with_context(|| format!("{field} is too long"))
}

fn time(field: &str, text: &str) -> anyhow::Result<prost_types::Timestamp> {
    let parsed: SystemTime = humantime::parse_rfc3339_weak(text).with_context(|| {
        format!("{field}: {text:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z")
    })?;
    Ok(parsed.into())
}

fn settings(entry: Declared) -> anyhow::Result<pb::ScheduleSettings> {
    let trigger = match (entry.cron, entry.every) {
        (Some(cron), None) => pb::schedule_settings::Trigger::Cron(cron),
        (None, Some(every)) => pb::schedule_settings::Trigger::Every(duration("every", &every)?),
        _ => bail!("give exactly one of cron (such as \"0 * * * *\") and every (such as \"90s\")"),
    };
    let misfire = match entry.misfire.as_deref() {
        None | Some("skip") => pb::MisfirePolicy::Skip,
        Some("fire_once") => pb::MisfirePolicy::FireOnce,
        Some("fire_all") => pb::MisfirePolicy::FireAll,
        Some(other) => bail!("misfire: {other:?} is not skip, fire_once or fire_all"),
    };
    let overlap = match entry.overlap.as_deref() {
        None | Some("allow") => pb::OverlapPolicy::Allow,
        Some("skip_if_running") => pb::OverlapPolicy::SkipIfRunning,
        Some(other) => bail!("overlap: {other:?} is not allow or skip_if_running"),
    };
    Ok(pb::ScheduleSettings {
        queue: entry.queue,
        job: Some(pb::JobTemplate {
            payload: entry.payload.into_bytes().into(),
            metadata: entry.metadata,
            priority: entry.priority,
            max_attempts: entry.max_attempts,
        }),
        trigger: Some(trigger),
        time_zone: entry.time_zone,
        misfire: misfire.into(),
        overlap: overlap.into(),
        jitter: entry.jitter.map(|j| duration("jitter", &j)).transpose()?,
        start_time: entry.start.map(|t| time("start", &t)).transpose()?,
        end_time: entry.end.map(|t| time("end", &t)).transpose()?,
    })
}

/// Creates or updates each schedule in `engine`, and logs what changed.
pub(super) async fn apply(
    engine: &dyn Engine,
    schedules: Vec<(ScheduleName, ScheduleSpec)>,
) -> anyhow::Result<()> {
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for (name, spec) in schedules {
        let (_, upserted) = engine
            .set_schedule(name.clone(), spec)
            .await
            .with_context(|| format!("cannot set declared schedule {name}"))?;
        match upserted {
            Upserted::Created => created += 1,
            Upserted::Updated => updated += 1,
            Upserted::Unchanged => unchanged += 1,
        }
    }
    tracing::info!(created, updated, unchanged, "declared schedules set");
    Ok(())
}
