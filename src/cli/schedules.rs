//! `jobq schedules …`: recurring jobs, through the Schedules service.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use jobq::grpc::pb;
use serde_json::{Value, json};

use super::Remote;
use super::commands::{parse_metadata, read_payload};
use super::output::{payload_text, table, time};

/// The schedule commands.
// Made once per process: the size of a variant does not matter.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum ScheduleCommand {
    /// List the schedules with their next fire times.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one schedule: settings, next fire times, recent fires.
    Get {
        #[command(flatten)]
        remote: Remote,
        /// The schedule.
        name: String,
    },
    /// Create a schedule, or replace its settings (the same settings
    /// again change nothing).
    Set {
        #[command(flatten)]
        remote: Remote,
        /// The schedule.
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Delete a schedule; the jobs it made stay.
    Delete {
        #[command(flatten)]
        remote: Remote,
        /// The schedule.
        name: String,
    },
    /// Stop a schedule firing.
    Pause {
        #[command(flatten)]
        remote: Remote,
        /// The schedule.
        name: String,
    },
    /// Let a paused schedule fire again.
    Resume {
        #[command(flatten)]
        remote: Remote,
        /// The schedule.
        name: String,
    },
    /// Enqueue the schedule's job now.
    Trigger {
        #[command(flatten)]
        remote: Remote,
        /// The schedule.
        name: String,
    },
}

/// What `jobq schedules set` is given.
#[derive(Debug, Args)]
pub(crate) struct SettingsArgs {
    /// The queue fired jobs go to.
    #[arg(long)]
    queue: String,
    /// A cron expression: 5 fields, 6 with seconds first, or @hourly,
    /// @daily, @weekly…; Quartz's L, W and # work.
    #[arg(long, required_unless_present = "every", conflicts_with = "every")]
    cron: Option<String>,
    /// A fixed interval instead (e.g. 90s, 15m).
    #[arg(long, value_parser = humantime::parse_duration)]
    every: Option<Duration>,
    /// The IANA time zone the cron expression is read in.
    #[arg(long, default_value = "UTC")]
    tz: String,
    /// The payload, as text.
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// The payload: this file's bytes (`-` reads standard input).
    #[arg(long, value_name = "PATH")]
    payload_file: Option<std::path::PathBuf>,
    /// A header for every fired job, as KEY=VALUE; repeat for more.
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// Higher is delivered first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Deliveries before dead-lettering (0: the queue's default).
    #[arg(long, default_value_t = 0)]
    max_attempts: u32,
    /// What to do with fire times missed while down or paused.
    #[arg(long, value_enum, default_value_t = MisfireArg::Skip)]
    misfire: MisfireArg,
    /// Whether a fire waits for the previous fire's job.
    #[arg(long, value_enum, default_value_t = OverlapArg::Allow)]
    overlap: OverlapArg,
    /// Move each fire later by up to this much (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    jitter: Option<Duration>,
    /// No fire before this time, RFC 3339.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    start: Option<SystemTime>,
    /// No fire after this time, RFC 3339.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    end: Option<SystemTime>,
}

/// The misfire policies, as the command line names them.
#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
enum MisfireArg {
    /// Fire none of the missed times.
    Skip,
    /// Fire one job now for the latest missed time.
    FireOnce,
    /// Fire each missed time (the latest 100).
    FireAll,
}

/// The overlap policies, as the command line names them.
#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
enum OverlapArg {
    /// Fire whatever the previous job is doing.
    Allow,
    /// Skip while the previous fire's job is waiting or running.
    SkipIfRunning,
}

impl SettingsArgs {
    fn into_pb(self) -> anyhow::Result<pb::ScheduleSettings> {
        let payload = match (self.payload, &self.payload_file) {
            (Some(text), _) => text.into_bytes(),
            (None, Some(path)) => read_payload(path)?,
            (None, None) => Vec::new(),
        };
        let trigger = match (self.cron, self.every) {
            (Some(cron), _) => pb::schedule_settings::Trigger::Cron(cron),
            (None, Some(every)) => pb::schedule_settings::Trigger::Every(
                every.try_into().context("--every is too long")?,
            ),
            (None, None) => anyhow::bail!("give --cron EXPRESSION or --every DURATION"),
        };
        let jitter = self
            .jitter
            .map(prost_types::Duration::try_from)
            .transpose()
            .context("--jitter is too long")?;
        Ok(pb::ScheduleSettings {
            queue: self.queue,
            job: Some(pb::JobTemplate {
                payload: payload.into(),
                metadata: parse_metadata(&self.metadata)?,
                priority: self.priority,
                max_attempts: self.max_attempts,
            }),
            trigger: Some(trigger),
            time_zone: self.tz,
            misfire: match self.misfire {
                MisfireArg::Skip => pb::MisfirePolicy::Skip,
                MisfireArg::FireOnce => pb::MisfirePolicy::FireOnce,
                MisfireArg::FireAll => pb::MisfirePolicy::FireAll,
            }
            .into(),
            overlap: match self.overlap {
                OverlapArg::Allow => pb::OverlapPolicy::Allow,
                OverlapArg::SkipIfRunning => pb::OverlapPolicy::SkipIfRunning,
            }
            .into(),
            jitter,
            start_time: self.start.map(Into::into),
            end_time: self.end.map(Into::into),
        })
    }
}

/// Runs a schedule command and prints its answer.
pub(crate) async fn run(command: ScheduleCommand) -> anyhow::Result<()> {
    match command {
        ScheduleCommand::List { remote } => list(&remote).await,
        ScheduleCommand::Get { remote, name } => {
            let reply = remote
                .schedules()
                .await?
                .get_schedule(pb::GetScheduleRequest { name })
                .await?
                .into_inner();
            print_schedule(&remote, &reply.schedule.unwrap_or_default());
            Ok(())
        }
        ScheduleCommand::Set {
            remote,
            name,
            settings,
        } => {
            let settings = settings.into_pb()?;
            let reply = remote
                .schedules()
                .await?
                .set_schedule(pb::SetScheduleRequest {
                    name,
                    settings: Some(settings),
                })
                .await?
                .into_inner();
            let schedule = reply.schedule.unwrap_or_default();
            let what = match (reply.created, reply.changed) {
                (true, _) => "created",
                (false, true) => "updated",
                (false, false) => "unchanged",
            };
            remote.output.print(
                json!({"schedule": schedule_json(&schedule), "result": what}),
                || {
                    format!(
                        "schedule {} {what}; next fire: {}",
                        schedule.name,
                        next_fire(&schedule)
                    )
                },
            );
            Ok(())
        }
        ScheduleCommand::Delete { remote, name } => {
            remote
                .schedules()
                .await?
                .delete_schedule(pb::DeleteScheduleRequest { name: name.clone() })
                .await?;
            remote.output.print(json!({"deleted": name}), || {
                format!("schedule {name} deleted")
            });
            Ok(())
        }
        ScheduleCommand::Pause { remote, name } => {
            let reply = remote
                .schedules()
                .await?
                .pause_schedule(pb::PauseScheduleRequest { name })
                .await?
                .into_inner();
            print_schedule(&remote, &reply.schedule.unwrap_or_default());
            Ok(())
        }
        ScheduleCommand::Resume { remote, name } => {
            let reply = remote
                .schedules()
                .await?
                .resume_schedule(pb::ResumeScheduleRequest { name })
                .await?
                .into_inner();
            print_schedule(&remote, &reply.schedule.unwrap_or_default());
            Ok(())
        }
        ScheduleCommand::Trigger { remote, name } => {
            let reply = remote
                .schedules()
                .await?
                .trigger_schedule(pb::TriggerScheduleRequest { name })
                .await?
                .into_inner();
            remote
                .output
                .print(json!({"job_id": reply.job_id}), || reply.job_id.clone());
            Ok(())
        }
    }
}

async fn list(remote: &Remote) -> anyhow::Result<()> {
    let mut client = remote.schedules().await?;
    let mut schedules = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_schedules(pb::ListSchedulesRequest {
                page_size: 1000,
                page_token,
            })
            .await?
            .into_inner();
        schedules.extend(page.schedules);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    remote.output.print(
        json!(schedules.iter().map(schedule_json).collect::<Vec<_>>()),
        || {
            let rows = schedules
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        settings(s).queue,
                        trigger_text(s),
                        if s.paused { "paused" } else { "active" }.into(),
                        next_fire(s),
                        s.fired.to_string(),
                        s.skipped.to_string(),
                    ]
                })
                .collect();
            table(
                &[
                    "SCHEDULE",
                    "QUEUE",
                    "WHEN",
                    "STATE",
                    "NEXT FIRE",
                    "FIRED",
                    "SKIPPED",
                ],
                rows,
            )
        },
    );
    Ok(())
}

/// A schedule's settings (the server always sends them; empty if not).
fn settings(s: &pb::Schedule) -> pb::ScheduleSettings {
    s.settings.clone().unwrap_or_default()
}

fn trigger_text(s: &pb::Schedule) -> String {
    let settings = settings(s);
    let zone = match settings.time_zone.as_str() {
        "" | "UTC" => String::new(),
        zone => format!(" ({zone})"),
    };
    match &settings.trigger {
        Some(pb::schedule_settings::Trigger::Cron(cron)) => format!("{cron}{zone}"),
        Some(pb::schedule_settings::Trigger::Every(every)) => {
            let every = Duration::try_from(*every).unwrap_or_default();
            format!("every {}", humantime::format_duration(every))
        }
        None => "-".into(),
    }
}

fn next_fire(s: &pb::Schedule) -> String {
    time(s.next_fire_times.first().copied()).unwrap_or_else(|| "none".into())
}

fn outcome(fire: &pb::ScheduleFire) -> String {
    match pb::FireOutcome::try_from(fire.outcome) {
        Ok(pb::FireOutcome::Enqueued) => {
            let state = match pb::JobState::try_from(fire.job_state) {
                Ok(pb::JobState::Unspecified) | Err(_) => "gone".to_string(),
                Ok(state) => state
                    .as_str_name()
                    .trim_start_matches("JOB_STATE_")
                    .to_lowercase(),
            };
            format!("enqueued {} ({state})", fire.job_id)
        }
        Ok(pb::FireOutcome::SkippedRunning) => {
            format!("skipped: {} still running", fire.job_id)
        }
        Ok(pb::FireOutcome::Misfired) => format!("missed {} fire times", fire.missed),
        Ok(pb::FireOutcome::Failed) => format!("failed: {}", fire.error),
        Ok(pb::FireOutcome::Unspecified) | Err(_) => "-".into(),
    }
}

fn schedule_json(s: &pb::Schedule) -> Value {
    let settings = settings(s);
    let job = settings.job.clone().unwrap_or_default();
    let (cron, every) = match &settings.trigger {
        Some(pb::schedule_settings::Trigger::Cron(cron)) => (Some(cron.clone()), None),
        Some(pb::schedule_settings::Trigger::Every(every)) => (
            None,
            Duration::try_from(*every).ok().map(|d| d.as_secs_f64()),
        ),
        None => (None, None),
    };
    json!({
        "name": s.name,
        "queue": settings.queue,
        "cron": cron,
        "every_seconds": every,
        "time_zone": settings.time_zone,
        "misfire": pb::MisfirePolicy::try_from(settings.misfire).map(|p| p.as_str_name()).unwrap_or("?"),
        "overlap": pb::OverlapPolicy::try_from(settings.overlap).map(|p| p.as_str_name()).unwrap_or("?"),
        "payload": payload_text(&job.payload, usize::MAX),
        "metadata": job.metadata,
        "paused": s.paused,
        "next_fire_times": s.next_fire_times.iter().map(|t| time(Some(*t))).collect::<Vec<_>>(),
        "recent_fires": s.recent_fires.iter().map(|f| json!({
            "fire_time": time(f.fire_time),
            "outcome": pb::FireOutcome::try_from(f.outcome).map(|o| o.as_str_name()).unwrap_or("?"),
            "job_id": f.job_id,
            "job_state": pb::JobState::try_from(f.job_state).map(|o| o.as_str_name()).unwrap_or("?"),
            "missed": f.missed,
            "error": f.error,
        })).collect::<Vec<_>>(),
        "fired": s.fired,
        "skipped": s.skipped,
        "failed": s.failed,
    })
}

fn print_schedule(remote: &Remote, s: &pb::Schedule) {
    remote.output.print(schedule_json(s), || {
        let settings = settings(s);
        let mut text = format!(
            "schedule {}\n  queue:    {}\n  when:     {}\n  state:    {}\n  misfire:  {}\n  overlap:  {}\n  fired {}, skipped {}, failed {}\n  next fire times:\n",
            s.name,
            settings.queue,
            trigger_text(s),
            if s.paused { "paused" } else { "active" },
            pb::MisfirePolicy::try_from(settings.misfire)
                .map(|p| p.as_str_name().trim_start_matches("MISFIRE_POLICY_").to_lowercase())
                .unwrap_or_default(),
            pb::OverlapPolicy::try_from(settings.overlap)
                .map(|p| p.as_str_name().trim_start_matches("OVERLAP_POLICY_").to_lowercase())
                .unwrap_or_default(),
            s.fired,
            s.skipped,
            s.failed,
        );
        for at in &s.next_fire_times {
            text.push_str(&format!("    {}\n", time(Some(*at)).unwrap_or_default()));
        }
        if s.next_fire_times.is_empty() {
            text.push_str("    none\n");
        }
        text.push_str("  recent fires:\n");
        let rows: Vec<Vec<String>> = s
            .recent_fires
            .iter()
            .rev()
            .map(|f| vec![time(f.fire_time).unwrap_or_default(), outcome(f)])
            .collect();
        if rows.is_empty() {
            text.push_str("    none");
        } else {
            text.push_str(&table(&["FIRE TIME", "OUTCOME"], rows));
        }
        text
    });
}
