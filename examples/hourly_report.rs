//! The hourly report, without a hand-written "wait until the next hour"
//! loop: the producer side sets a schedule once (setting the same settings
//! again changes nothing, so doing it at every deploy is fine), and any
//! number of workers build the report for each fire time. jobq fires each
//! hour once, however many workers or restarts there are.
//!
//! Run a server (`cargo run --release`), then:
//! - `cargo run --example hourly_report -- schedule` sets the schedule
//!   (`-- schedule '* * * * * *'` fires every second, to watch it work);
//! - `cargo run --example hourly_report -- work` builds reports until
//!   Ctrl-C.
//!
//! It reads `JOBQ_SERVER` (default `http://127.0.0.1:50051`).

use std::time::Duration;

use jobq_client::{Client, ClientError, Delivery, JobError};
use jobq_proto::v1 as pb;
use jobq_proto::v1::schedules_client::SchedulesClient;

const QUEUE: &str = "reports";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server =
        std::env::var("JOBQ_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".to_string());
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("schedule") => {
            let cron = args.next().unwrap_or_else(|| "0 * * * *".to_string());
            schedule(&server, cron).await
        }
        Some("work") => Ok(work(&server).await?),
        _ => Err("usage: hourly_report schedule [CRON] | work".into()),
    }
}

/// Sets the `hourly-report` schedule.
async fn schedule(server: &str, cron: String) -> Result<(), Box<dyn std::error::Error>> {
    let mut schedules = SchedulesClient::connect(server.to_string()).await?;
    let reply = schedules
        .set_schedule(pb::SetScheduleRequest {
            name: "hourly-report".into(),
            settings: Some(pb::ScheduleSettings {
                queue: QUEUE.into(),
                job: Some(pb::JobTemplate {
                    payload: r#"{"report": "sales"}"#.into(),
                    metadata: [("content-type".into(), "application/json".into())].into(),
                    ..Default::default()
                }),
                trigger: Some(pb::schedule_settings::Trigger::Cron(cron)),
                time_zone: "Europe/Berlin".into(),
                // A report missed while jobq was down is made once when it
                // is back; never two at once.
                misfire: pb::MisfirePolicy::FireOnce.into(),
                overlap: pb::OverlapPolicy::SkipIfRunning.into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let schedule = reply.schedule.unwrap_or_default();
    let result = match (reply.created, reply.changed) {
        (true, _) => "created",
        (false, true) => "updated",
        (false, false) => "unchanged",
    };
    let next = schedule
        .next_fire_times
        .first()
        .and_then(|t| std::time::SystemTime::try_from(*t).ok())
        .map_or_else(
            || "none".to_string(),
            |t| humantime::format_rfc3339(t).to_string(),
        );
    println!("schedule hourly-report {result}; next fire {next}");
    Ok(())
}

/// Builds a report for each fired job, until Ctrl-C.
async fn work(server: &str) -> Result<(), ClientError> {
    let client = Client::connect(server).await?;
    println!("building reports from queue {QUEUE}; Ctrl-C to stop");
    let stats = client
        .worker(QUEUE)
        // One report at a time is plenty.
        .concurrency(1)
        .shutdown_grace(Duration::from_secs(30))
        .run(build_report, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    println!("stopped: {stats:?}");
    Ok(())
}

/// Stands in for the real work: the report for the hour before the fire
/// time, which every fired job carries.
async fn build_report(job: Delivery) -> Result<(), JobError> {
    let fire_time = job
        .metadata
        .get("jobq-fire-time")
        .cloned()
        .ok_or_else(|| JobError::permanent("not a scheduled job: no jobq-fire-time"))?;
    let request = String::from_utf8_lossy(&job.payload);
    println!("report {request} for the hour before {fire_time}");
    Ok(())
}
