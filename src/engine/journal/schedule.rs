//! Schedules as journal records, and back: each record holds a schedule's
//! settings and state whole, so replay keeps the last one. The postgres
//! store keeps the same message, encoded, as a schedule's row.

use std::time::Duration;

use super::record::{self, Change, Id, Record};
use crate::queue::{QueueName, ScheduleName};
use crate::schedule::{
    Fire, FireResult, JobTemplate, Misfire, Overlap, ScheduleSpec, ScheduleState, Trigger,
};

/// The record of a schedule as it is now.
pub fn schedule_record(name: &ScheduleName, spec: &ScheduleSpec, state: &ScheduleState) -> Record {
    Record {
        change: Some(Change::Schedule(message(name, spec, state))),
    }
}

/// A schedule as it is now, as bytes: the record's message alone.
pub fn encode(name: &ScheduleName, spec: &ScheduleSpec, state: &ScheduleState) -> Vec<u8> {
    prost::Message::encode_to_vec(&message(name, spec, state))
}

/// A schedule back from [`encode`]'s bytes; `Err` says why it cannot be.
pub fn decode(bytes: &[u8]) -> Result<(ScheduleName, ScheduleSpec, ScheduleState), String> {
    let message: record::Schedule =
        prost::Message::decode(bytes).map_err(|e| format!("not a schedule record: {e}"))?;
    from_record(message)
}

fn message(name: &ScheduleName, spec: &ScheduleSpec, state: &ScheduleState) -> record::Schedule {
    let (cron, every_millis) = match &spec.trigger {
        Trigger::Cron(_) => (spec.trigger.expression().unwrap_or_default().to_string(), 0),
        Trigger::Every(every) => (String::new(), every.as_millis() as u64),
    };
    record::Schedule {
        name: name.to_string(),
        queue: spec.queue.to_string(),
        payload: spec.template.payload.clone(),
        metadata: spec
            .template
            .metadata
            .iter()
            .map(|(key, value)| record::Entry {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        priority: spec.template.priority,
        max_attempts: spec.template.max_attempts.unwrap_or(0),
        cron,
        every_millis,
        zone: spec.zone.name().to_string(),
        misfire: match spec.misfire {
            Misfire::Skip => 0,
            Misfire::FireOnce => 1,
            Misfire::FireAll => 2,
        },
        overlap: match spec.overlap {
            Overlap::Allow => 0,
            Overlap::SkipIfRunning => 1,
        },
        jitter_millis: spec.jitter.as_millis() as u64,
        start_millis: spec.start,
        end_millis: spec.end,
        paused: state.paused,
        anchor_millis: state.anchor,
        resume_from_millis: state.resume_from(),
        fired: state.fired,
        skipped: state.skipped,
        failed: state.failed,
        recent: state.recent.iter().map(fire_record).collect(),
        last_job: state.last_job.map(Id::of),
        created_millis: state.created,
        updated_millis: state.updated,
    }
}

/// The record of a schedule's deletion.
pub fn deleted_record(name: &ScheduleName) -> Record {
    Record {
        change: Some(Change::ScheduleDeleted(record::ScheduleRef {
            name: name.to_string(),
        })),
    }
}

fn fire_record(fire: &Fire) -> record::ScheduleFire {
    let mut out = record::ScheduleFire {
        fire_millis: fire.fire_time,
        handled_millis: fire.handled_at,
        ..Default::default()
    };
    match &fire.result {
        FireResult::Enqueued(id) => out.job = Some(Id::of(*id)),
        FireResult::StillRunning(id) => {
            out.kind = 1;
            out.job = Some(Id::of(*id));
        }
        FireResult::Misfired { count } => {
            out.kind = 2;
            out.count = *count;
        }
        FireResult::Failed(why) => {
            out.kind = 3;
            out.error = why.clone();
        }
    }
    out
}

/// A schedule back from its record; `Err` says why it cannot be (a name,
/// zone or expression this version refuses).
pub fn from_record(
    r: record::Schedule,
) -> Result<(ScheduleName, ScheduleSpec, ScheduleState), String> {
    let name = ScheduleName::new(&r.name).map_err(|e| format!("name {:?} {e}", r.name))?;
    let queue = QueueName::new(&r.queue).map_err(|e| format!("queue {:?} {e}", r.queue))?;
    let trigger = if r.cron.is_empty() {
        Trigger::every(Duration::from_millis(r.every_millis)).map_err(|e| e.to_string())?
    } else {
        Trigger::cron(&r.cron).map_err(|e| format!("cron {:?} {e}", r.cron))?
    };
    let zone = r
        .zone
        .parse()
        .map_err(|_| format!("time zone {:?} is not known", r.zone))?;
    let spec = ScheduleSpec {
        queue,
        template: JobTemplate {
            payload: r.payload,
            metadata: r.metadata.into_iter().map(|e| (e.key, e.value)).collect(),
            priority: r.priority,
            max_attempts: (r.max_attempts > 0).then_some(r.max_attempts),
        },
        trigger,
        zone,
        misfire: match r.misfire {
            1 => Misfire::FireOnce,
            2 => Misfire::FireAll,
            _ => Misfire::Skip,
        },
        overlap: match r.overlap {
            1 => Overlap::SkipIfRunning,
            _ => Overlap::Allow,
        },
        jitter: Duration::from_millis(r.jitter_millis),
        start: r.start_millis,
        end: r.end_millis,
    };
    let state = ScheduleState {
        paused: r.paused,
        anchor: r.anchor_millis,
        next_fire: r.resume_from_millis,
        in_flight: Default::default(),
        fired: r.fired,
        skipped: r.skipped,
        failed: r.failed,
        recent: r.recent.into_iter().map(fire_of).collect(),
        last_job: r.last_job.map(Id::job),
        created: r.created_millis,
        updated: r.updated_millis,
    };
    Ok((name, spec, state))
}

fn fire_of(r: record::ScheduleFire) -> Fire {
    let job = r.job.map(Id::job);
    let result = match (r.kind, job) {
        (0, Some(id)) => FireResult::Enqueued(id),
        (1, Some(id)) => FireResult::StillRunning(id),
        (2, _) => FireResult::Misfired { count: r.count },
        _ => FireResult::Failed(r.error),
    };
    Fire {
        fire_time: r.fire_millis,
        handled_at: r.handled_millis,
        result,
    }
}
