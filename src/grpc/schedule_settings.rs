//! Schedules on the wire: checking `ScheduleSettings` into a core
//! [`ScheduleSpec`], and a [`ScheduleInfo`] back into a `Schedule`.

use std::time::{Duration, SystemTime};

use chrono_tz::Tz;

use super::convert::job_state_to_pb;
use super::pb;
use super::validate::{InvalidField, Limits, MAX_METADATA_ENTRIES, duration, invalid, shown};
use crate::engine::ScheduleInfo;
use crate::queue::{QueueName, ScheduleName};
use crate::schedule::{
    FireResult, JobTemplate, MAX_JITTER, Millis, Misfire, Overlap, ScheduleSpec, Trigger,
};

/// Metadata entries a template may hold: the limit less the three a fire
/// adds.
const MAX_TEMPLATE_METADATA: usize = MAX_METADATA_ENTRIES - 3;
/// The prefix of the metadata keys jobq adds to fired jobs.
const RESERVED_PREFIX: &str = "jobq-";

/// Checks a schedule given outside a request (a file of declared
/// schedules), by the same rules as SetSchedule.
pub fn checked_schedule(
    limits: &Limits,
    name: &str,
    settings: pb::ScheduleSettings,
) -> Result<(ScheduleName, ScheduleSpec), InvalidField> {
    Ok((schedule_name(name)?, limits.schedule_spec(Some(settings))?))
}

/// Checks a schedule name.
pub(super) fn schedule_name(name: &str) -> Result<ScheduleName, InvalidField> {
    ScheduleName::new(name).map_err(|e| invalid("name", e.to_string()))
}

/// A ListSchedules page token: the last name of the page before.
pub(super) fn page_token(token: &str) -> Result<Option<ScheduleName>, InvalidField> {
    if token.is_empty() {
        return Ok(None);
    }
    ScheduleName::new(token)
        .map(Some)
        .map_err(|_| super::validate::bad_page_token(token))
}

impl Limits {
    /// Checks a schedule's settings and converts them for the core.
    pub(super) fn schedule_spec(
        &self,
        settings: Option<pb::ScheduleSettings>,
    ) -> Result<ScheduleSpec, InvalidField> {
        let settings = settings.ok_or_else(|| invalid("settings", "is required"))?;
        let queue = QueueName::new(&settings.queue)
            .map_err(|e| invalid("settings.queue", e.to_string()))?;
        let template = self.template(settings.job.unwrap_or_default())?;
        let trigger = match settings.trigger {
            None => {
                return Err(invalid(
                    "settings.trigger",
                    "is required: set cron (such as \"0 * * * *\") or every (such as 90s)",
                ));
            }
            Some(pb::schedule_settings::Trigger::Cron(text)) => {
                Trigger::cron(&text).map_err(|e| invalid("settings.cron", e.to_string()))?
            }
            Some(pb::schedule_settings::Trigger::Every(every)) => {
                let every = duration("settings.every", every)?;
                Trigger::every(every).map_err(|e| invalid("settings.every", e.to_string()))?
            }
        };
        let spec = ScheduleSpec {
            queue,
            template,
            trigger,
            zone: time_zone(&settings.time_zone)?,
            misfire: misfire(settings.misfire)?,
            overlap: overlap(settings.overlap)?,
            jitter: jitter(settings.jitter)?,
            start: settings
                .start_time
                .map(|t| millis("settings.start_time", t))
                .transpose()?,
            end: settings
                .end_time
                .map(|t| millis("settings.end_time", t))
                .transpose()?,
        };
        spec.check()
            .map_err(|e| invalid("settings.end_time", e.to_string()))?;
        Ok(spec)
    }

    fn template(&self, job: pb::JobTemplate) -> Result<JobTemplate, InvalidField> {
        if job.metadata.len() > MAX_TEMPLATE_METADATA {
            return Err(invalid(
                "settings.job.metadata",
                format!(
                    "has {} entries; a template may have {MAX_TEMPLATE_METADATA} (each fire adds three)",
                    job.metadata.len()
                ),
            ));
        }
        if let Some(key) = job.metadata.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
            return Err(invalid(
                "settings.job.metadata",
                format!(
                    "key {:?} starts with {RESERVED_PREFIX:?}, which jobq keeps for the keys it adds",
                    shown(key)
                ),
            ));
        }
        let checked = self.new_job(
            "settings.job",
            pb::NewJob {
                payload: job.payload,
                metadata: job.metadata,
                priority: job.priority,
                max_attempts: job.max_attempts,
                ..pb::NewJob::default()
            },
        )?;
        Ok(JobTemplate {
            payload: checked.payload,
            metadata: checked.metadata,
            priority: checked.priority,
            max_attempts: checked.max_attempts,
        })
    }
}

fn time_zone(name: &str) -> Result<Tz, InvalidField> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse().map_err(|_| {
        invalid(
            "settings.time_zone",
            format!(
                "{:?} is not an IANA time zone name; use one such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"",
                shown(name)
            ),
        )
    })
}

fn misfire(value: i32) -> Result<Misfire, InvalidField> {
    match pb::MisfirePolicy::try_from(value) {
        Ok(pb::MisfirePolicy::Unspecified | pb::MisfirePolicy::Skip) => Ok(Misfire::Skip),
        Ok(pb::MisfirePolicy::FireOnce) => Ok(Misfire::FireOnce),
        Ok(pb::MisfirePolicy::FireAll) => Ok(Misfire::FireAll),
        Err(_) => Err(invalid(
            "settings.misfire",
            format!("{value} is not a MisfirePolicy; use SKIP, FIRE_ONCE or FIRE_ALL"),
        )),
    }
}

fn overlap(value: i32) -> Result<Overlap, InvalidField> {
    match pb::OverlapPolicy::try_from(value) {
        Ok(pb::OverlapPolicy::Unspecified | pb::OverlapPolicy::Allow) => Ok(Overlap::Allow),
        Ok(pb::OverlapPolicy::SkipIfRunning) => Ok(Overlap::SkipIfRunning),
        Err(_) => Err(invalid(
            "settings.overlap",
            format!("{value} is not an OverlapPolicy; use ALLOW or SKIP_IF_RUNNING"),
        )),
    }
}

fn jitter(value: Option<prost_types::Duration>) -> Result<Duration, InvalidField> {
    let Some(value) = value else {
        return Ok(Duration::ZERO);
    };
    let jitter = duration("settings.jitter", value)?;
    if jitter > MAX_JITTER {
        return Err(invalid(
            "settings.jitter",
            format!("is {jitter:?}; the limit is 24h"),
        ));
    }
    Ok(jitter)
}

fn millis(field: &str, at: prost_types::Timestamp) -> Result<Millis, InvalidField> {
    let at = SystemTime::try_from(at).map_err(|_| invalid(field, "is not a valid timestamp"))?;
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| invalid(field, "is before 1970"))?;
    Ok(since.as_millis() as Millis)
}

/// A wall-clock time in milliseconds as a protobuf timestamp.
fn timestamp(at: Millis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.div_euclid(1000),
        nanos: (at.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A schedule as clients see it.
pub(super) fn schedule_to_pb(info: ScheduleInfo) -> pb::Schedule {
    let spec = &info.spec;
    let trigger = match &spec.trigger {
        Trigger::Cron(_) => spec
            .trigger
            .expression()
            .map(|e| pb::schedule_settings::Trigger::Cron(e.to_string())),
        Trigger::Every(every) => prost_types::Duration::try_from(*every)
            .ok()
            .map(pb::schedule_settings::Trigger::Every),
    };
    let settings = pb::ScheduleSettings {
        queue: spec.queue.to_string(),
        job: Some(pb::JobTemplate {
            payload: spec.template.payload.clone(),
            metadata: spec.template.metadata.iter().cloned().collect(),
            priority: spec.template.priority,
            max_attempts: spec.template.max_attempts.unwrap_or(0),
        }),
        trigger,
        time_zone: spec.zone.name().to_string(),
        misfire: match spec.misfire {
            Misfire::Skip => pb::MisfirePolicy::Skip,
            Misfire::FireOnce => pb::MisfirePolicy::FireOnce,
            Misfire::FireAll => pb::MisfirePolicy::FireAll,
        }
        .into(),
        overlap: match spec.overlap {
            Overlap::Allow => pb::OverlapPolicy::Allow,
            Overlap::SkipIfRunning => pb::OverlapPolicy::SkipIfRunning,
        }
        .into(),
        jitter: (!spec.jitter.is_zero())
            .then(|| prost_types::Duration::try_from(spec.jitter).ok())
            .flatten(),
        start_time: spec.start.map(timestamp),
        end_time: spec.end.map(timestamp),
    };
    let recent_fires = info
        .state
        .recent
        .iter()
        .zip(&info.outcomes)
        .map(|(fire, state)| {
            let mut out = pb::ScheduleFire {
                fire_time: Some(timestamp(fire.fire_time)),
                handle_time: Some(timestamp(fire.handled_at)),
                job_state: state
                    .map_or(pb::JobState::Unspecified, job_state_to_pb)
                    .into(),
                ..pb::ScheduleFire::default()
            };
            match &fire.result {
                FireResult::Enqueued(id) => {
                    out.outcome = pb::FireOutcome::Enqueued.into();
                    out.job_id = id.to_string();
                }
                FireResult::StillRunning(id) => {
                    out.outcome = pb::FireOutcome::SkippedRunning.into();
                    out.job_id = id.to_string();
                }
                FireResult::Misfired { count } => {
                    out.outcome = pb::FireOutcome::Misfired.into();
                    out.missed = *count;
                }
                FireResult::Failed(why) => {
                    out.outcome = pb::FireOutcome::Failed.into();
                    out.error = why.clone();
                }
            }
            out
        })
        .collect();
    pb::Schedule {
        name: info.name.to_string(),
        settings: Some(settings),
        paused: info.state.paused,
        next_fire_times: info.upcoming.iter().copied().map(timestamp).collect(),
        recent_fires,
        fired: info.state.fired,
        skipped: info.state.skipped,
        failed: info.state.failed,
        create_time: Some(timestamp(info.state.created)),
        update_time: Some(timestamp(info.state.updated)),
    }
}
