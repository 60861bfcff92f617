//! Schedules through the gRPC API and the CLI, against a real server.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::common::{FREE_PORTS, TestServer, open_stream};
use jobq::grpc::pb;
use jobq::grpc::pb::schedules_client::SchedulesClient;
use serde_json::Value;
use tokio::process::Command;
use tonic::Code;
use tonic::transport::Channel;

fn client(server: &TestServer) -> SchedulesClient<Channel> {
    SchedulesClient::new(server.channel.clone())
}

fn every_second(queue: &str) -> pb::ScheduleSettings {
    pb::ScheduleSettings {
        queue: queue.into(),
        job: Some(pb::JobTemplate {
            payload: "hourly report".into(),
            metadata: [("report".to_string(), "sales".to_string())].into(),
            ..Default::default()
        }),
        trigger: Some(pb::schedule_settings::Trigger::Cron("* * * * * *".into())),
        ..Default::default()
    }
}

async fn set(
    server: &TestServer,
    name: &str,
    settings: pb::ScheduleSettings,
) -> Result<pb::SetScheduleResponse, tonic::Status> {
    client(server)
        .set_schedule(pb::SetScheduleRequest {
            name: name.into(),
            settings: Some(settings),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn fire_time(lease: &pb::Lease) -> SystemTime {
    let job = lease.job.as_ref().expect("job");
    assert_eq!(
        job.metadata.get("jobq-schedule").map(String::as_str),
        Some("report")
    );
    assert_eq!(
        job.metadata.get("report").map(String::as_str),
        Some("sales")
    );
    let text = job.metadata.get("jobq-fire-time").expect("fire time");
    humantime::parse_rfc3339(text).expect("RFC 3339")
}

#[tokio::test]
async fn a_schedule_every_second_gives_a_worker_one_job_per_fire_time() {
    let server = TestServer::start().await;
    // Catch up every missed time, so a slow machine that wakes late still
    // delivers each fire time, once.
    let settings = pb::ScheduleSettings {
        misfire: pb::MisfirePolicy::FireAll.into(),
        ..every_second("reports")
    };
    let created = set(&server, "report", settings).await.expect("set");
    assert!(created.created && created.changed);
    let schedule = created.schedule.expect("schedule");
    assert_eq!(schedule.next_fire_times.len(), 5);

    let mut worker = open_stream(&server, "reports", 10).await;
    let mut times = BTreeSet::new();
    let mut acked = 0;
    // Leases and the results of acks arrive in any order.
    while times.len() < 3 || acked < 3 {
        match worker.next().await.expect("ok").expect("open").kind {
            Some(pb::stream_leases_response::Kind::Lease(lease)) => {
                assert!(times.insert(fire_time(&lease)), "a fire time came twice");
                worker.ack(&lease.lease_token).await;
            }
            Some(pb::stream_leases_response::Kind::Result(result)) => {
                assert_eq!(result.code, 0, "{result:?}");
                acked += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Whole seconds, one apart: each fire time once, none between.
    let times: Vec<SystemTime> = times.into_iter().collect();
    for pair in times.windows(2) {
        assert_eq!(
            pair[1].duration_since(pair[0]).expect("ordered"),
            Duration::from_secs(1)
        );
    }

    let got = client(&server)
        .get_schedule(pb::GetScheduleRequest {
            name: "report".into(),
        })
        .await
        .expect("get")
        .into_inner()
        .schedule
        .expect("schedule");
    assert!(got.fired >= 3, "{got:?}");
    let acked = got
        .recent_fires
        .iter()
        .filter(|f| f.outcome == pb::FireOutcome::Enqueued as i32)
        .filter(|f| f.job_state == pb::JobState::Acked as i32)
        .count();
    assert!(acked >= 3, "{:?}", got.recent_fires);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn setting_the_same_schedule_again_changes_nothing_and_list_pages_by_name() {
    let server = TestServer::start().await;
    let mut hourly = every_second("reports");
    hourly.trigger = Some(pb::schedule_settings::Trigger::Cron("@hourly".into()));
    for name in ["c", "a", "b"] {
        assert!(
            set(&server, name, hourly.clone())
                .await
                .expect("set")
                .created
        );
    }
    let again = set(&server, "a", hourly.clone()).await.expect("set again");
    assert!(!again.created && !again.changed);
    hourly.time_zone = "Europe/Berlin".into();
    let changed = set(&server, "a", hourly).await.expect("set new zone");
    assert!(!changed.created && changed.changed);

    let mut names = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client(&server)
            .list_schedules(pb::ListSchedulesRequest {
                page_size: 2,
                page_token,
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.schedules.len() <= 2);
        names.extend(page.schedules.into_iter().map(|s| s.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(names, ["a", "b", "c"]);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_schedules_get_invalid_argument_naming_what_is_wrong() {
    let server = TestServer::start().await;
    let cases: Vec<(&str, pb::ScheduleSettings, &str)> = vec![
        (
            "report",
            pb::ScheduleSettings {
                trigger: Some(pb::schedule_settings::Trigger::Cron("0 0 32 * *".into())),
                ..every_second("reports")
            },
            "settings.cron: field 3 (day of month) \"32\": number out of bounds; values are 1-31",
        ),
        (
            "report",
            pb::ScheduleSettings {
                trigger: Some(pb::schedule_settings::Trigger::Cron("0 0 * *".into())),
                ..every_second("reports")
            },
            "settings.cron: has 4 fields",
        ),
        (
            "report",
            pb::ScheduleSettings {
                time_zone: "Mars/Olympus".into(),
                ..every_second("reports")
            },
            "settings.time_zone: \"Mars/Olympus\" is not an IANA time zone name",
        ),
        (
            "report",
            pb::ScheduleSettings {
                trigger: None,
                ..every_second("reports")
            },
            "settings.trigger: is required",
        ),
        (
            "report",
            pb::ScheduleSettings {
                trigger: Some(pb::schedule_settings::Trigger::Every(
                    prost_types::Duration {
                        seconds: 0,
                        nanos: 500_000_000,
                    },
                )),
                ..every_second("reports")
            },
            "settings.every: is 500ms; an interval is whole seconds",
        ),
        (
            "report",
            pb::ScheduleSettings {
                job: Some(pb::JobTemplate {
                    metadata: [("jobq-schedule".to_string(), "x".to_string())].into(),
                    ..Default::default()
                }),
                ..every_second("reports")
            },
            "settings.job.metadata: key \"jobq-schedule\" starts with \"jobq-\"",
        ),
        (
            "report",
            pb::ScheduleSettings {
                start_time: Some(SystemTime::UNIX_EPOCH.into()),
                end_time: Some(SystemTime::UNIX_EPOCH.into()),
                ..every_second("reports")
            },
            "settings.end_time: end_time must be after start_time",
        ),
        ("bad name", every_second("reports"), "name: holds ' '"),
        ("report", every_second(""), "settings.queue: is empty"),
    ];
    for (name, settings, message) in cases {
        let status = set(&server, name, settings).await.expect_err(message);
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with(message),
            "{message}: {status:?}"
        );
    }
    let missing = client(&server)
        .get_schedule(pb::GetScheduleRequest {
            name: "nope".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), "schedule nope does not exist");
    for status in [
        client(&server)
            .trigger_schedule(pb::TriggerScheduleRequest {
                name: "nope".into(),
            })
            .await
            .expect_err("unknown"),
        client(&server)
            .pause_schedule(pb::PauseScheduleRequest {
                name: "nope".into(),
            })
            .await
            .expect_err("unknown"),
        client(&server)
            .delete_schedule(pb::DeleteScheduleRequest {
                name: "nope".into(),
            })
            .await
            .expect_err("unknown"),
    ] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    server.shutdown().await.expect("shutdown");
}

/// Runs `jobq ARGS` with `env`, to its end.
async fn jobq(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobq"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.expect("jobq runs")
}

/// The standard error of `jobq ARGS`, which must fail.
async fn jobq_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = jobq(args, env).await;
    assert!(!output.status.success(), "jobq {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `jobq ARGS` against the server, with JSON output.
async fn jobq_json(server: &TestServer, args: &[&str]) -> Value {
    let address = format!("http://{}", server.addr);
    let mut args = args.to_vec();
    args.extend(["--output", "json"]);
    let output = jobq(&args, &[("JOBQ_SERVER", &address)]).await;
    assert!(
        output.status.success(),
        "jobq {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

#[tokio::test]
async fn the_cli_sets_pauses_triggers_and_deletes_schedules() {
    let server = TestServer::start().await;
    let set = jobq_json(
        &server,
        &[
            "schedules",
            "set",
            "nightly",
            "--queue",
            "reports",
            "--cron",
            "30 2 * * *",
            "--tz",
            "America/New_York",
            "--payload",
            "build",
            "--metadata",
            "kind=nightly",
            "--misfire",
            "fire_once",
            "--overlap",
            "skip_if_running",
        ],
    )
    .await;
    assert_eq!(set["result"], "created");
    assert_eq!(set["schedule"]["time_zone"], "America/New_York");
    assert_eq!(set["schedule"]["misfire"], "MISFIRE_POLICY_FIRE_ONCE");
    assert_eq!(set["schedule"]["overlap"], "OVERLAP_POLICY_SKIP_IF_RUNNING");
    // 02:30 in New York is 06:30 or 07:30 UTC, depending on the season.
    let next = set["schedule"]["next_fire_times"][0]
        .as_str()
        .expect("next");
    assert!(
        next.ends_with("T06:30:00.000Z") || next.ends_with("T07:30:00.000Z"),
        "{next}"
    );

    let paused = jobq_json(&server, &["schedules", "pause", "nightly"]).await;
    assert_eq!(paused["paused"], true);
    let triggered = jobq_json(&server, &["schedules", "trigger", "nightly"]).await;
    let id = triggered["job_id"].as_str().expect("job id");
    let job = jobq_json(&server, &["job", id]).await;
    assert_eq!(job["metadata"]["jobq-triggered"], "true");
    assert_eq!(job["metadata"]["kind"], "nightly");
    let resumed = jobq_json(&server, &["schedules", "resume", "nightly"]).await;
    assert_eq!(resumed["paused"], false);

    let listed = jobq_json(&server, &["schedules", "list"]).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["fired"], 1);
    let got = jobq_json(&server, &["schedules", "get", "nightly"]).await;
    assert_eq!(got["recent_fires"][0]["job_id"], id);
    assert_eq!(got["recent_fires"][0]["job_state"], "JOB_STATE_READY");

    jobq_json(&server, &["schedules", "delete", "nightly"]).await;
    let address = format!("http://{}", server.addr);
    let stderr = jobq_fails(
        &["schedules", "get", "nightly"],
        &[("JOBQ_SERVER", &address)],
    )
    .await;
    assert!(
        stderr.contains("schedule nightly does not exist"),
        "{stderr}"
    );
    server.shutdown().await.expect("shutdown");
}

/// A schedule's state, through a channel.
async fn get(channel: &Channel, name: &str) -> pb::Schedule {
    SchedulesClient::new(channel.clone())
        .get_schedule(pb::GetScheduleRequest { name: name.into() })
        .await
        .expect("get")
        .into_inner()
        .schedule
        .expect("schedule")
}

/// Waits until `name` has fired at least `count` jobs.
async fn fired_at_least(channel: &Channel, name: &str, count: u64) -> pb::Schedule {
    let deadline = tokio::time::Instant::now() + crate::common::PATIENCE;
    loop {
        let schedule = get(channel, name).await;
        if schedule.fired >= count {
            return schedule;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never fired {count} jobs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fire times of a queue's jobs, in id order.
async fn queue_fire_times(channel: &Channel, queue: &str) -> Vec<SystemTime> {
    let page = pb::admin_client::AdminClient::new(channel.clone())
        .list_jobs(pb::ListJobsRequest {
            queue: queue.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    page.jobs
        .iter()
        .map(|info| {
            let job = info.job.as_ref().expect("job");
            let text = job.metadata.get("jobq-fire-time").expect("fire time");
            humantime::parse_rfc3339(text).expect("RFC 3339")
        })
        .collect()
}

#[tokio::test]
async fn after_sigkill_a_data_dir_keeps_firing_once_per_time_and_the_misfire_rule_covers_the_gap() {
    let dir = crate::common::certs::temp_dir("schedules-restart");
    let (mut server, addr) = crate::durable::start(&dir).await;
    let channel = crate::durable::connect(addr).await;
    for (name, misfire) in [
        ("all", pb::MisfirePolicy::FireAll),
        ("skip", pb::MisfirePolicy::Skip),
    ] {
        SchedulesClient::new(channel.clone())
            .set_schedule(pb::SetScheduleRequest {
                name: name.into(),
                settings: Some(pb::ScheduleSettings {
                    misfire: misfire.into(),
                    ..every_second(name)
                }),
            })
            .await
            .expect("set");
    }
    fired_at_least(&channel, "all", 2).await;
    fired_at_least(&channel, "skip", 2).await;
    server.kill().await.expect("SIGKILL");
    // Down long enough that fire times pass: more than the 5 s a late fire
    // still counts as on time, so the rules must decide.
    tokio::time::sleep(Duration::from_secs(7)).await;

    let (mut server, addr) = crate::durable::start(&dir).await;
    let channel = crate::durable::connect(addr).await;
    let before = queue_fire_times(&channel, "all").await.len() as u64;
    let all = fired_at_least(&channel, "all", before + 2).await;
    let skip = fired_at_least(&channel, "skip", 1).await;
    assert!(skip.skipped >= 2, "the gap was not skipped: {skip:?}");
    assert!(
        skip.recent_fires
            .iter()
            .any(|f| f.outcome == pb::FireOutcome::Misfired as i32 && f.missed >= 2),
        "{skip:?}"
    );
    assert_eq!(all.skipped, 0, "{all:?}");

    // Every second from the first fire time on, each once: fire_all caught
    // up the gap, and no restart made a fire time twice.
    let mut times = queue_fire_times(&channel, "all").await;
    let made = times.len();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), made, "a fire time was enqueued twice");
    for pair in times.windows(2) {
        assert_eq!(
            pair[1].duration_since(pair[0]).expect("ordered"),
            Duration::from_secs(1),
            "a fire time is missing: {times:?}"
        );
    }
    server.kill().await.expect("SIGKILL");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn metrics_show_each_schedules_fires_skips_next_fire_and_lag() {
    let server = TestServer::start().await;
    set(&server, "report", every_second("reports"))
        .await
        .expect("set");
    let mut paused = every_second("reports");
    paused.trigger = Some(pb::schedule_settings::Trigger::Cron("@daily".into()));
    set(&server, "paused", paused).await.expect("set");
    client(&server)
        .pause_schedule(pb::PauseScheduleRequest {
            name: "paused".into(),
        })
        .await
        .expect("pause");
    fired_at_least(&server.channel, "report", 1).await;
    let text = crate::common::scrape(&server).await;
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series).map(str::trim))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .parse()
            .expect("a number")
    };
    assert!(value("jobq_schedule_fires_total{schedule=\"report\"}") >= 1.0);
    assert_eq!(value("jobq_schedule_skips_total{schedule=\"report\"}"), 0.0);
    assert_eq!(
        value("jobq_schedule_failures_total{schedule=\"paused\"}"),
        0.0
    );
    let next = value("jobq_schedule_next_fire_seconds{schedule=\"report\"}");
    assert!((0.0..=1.0).contains(&next), "{next}");
    assert!(
        !text.contains("jobq_schedule_next_fire_seconds{schedule=\"paused\"}"),
        "a paused schedule has no next fire"
    );
    assert!(value("jobq_schedule_fire_lag_seconds_count") >= 1.0);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn schedules_declared_in_a_file_are_set_at_start_up_and_a_bad_one_stops_the_start() {
    let dir = crate::common::certs::temp_dir("declared-schedules");
    let file = dir.join("schedules.json");
    std::fs::write(
        &file,
        r#"[
          {"name": "hourly-report", "queue": "reports", "cron": "0 * * * *",
           "timeZone": "Europe/Berlin", "payload": "sales", "metadata": {"kind": "report"},
           "misfire": "fire_once", "overlap": "skip_if_running", "jitter": "30s"},
          {"name": "sync", "queue": "sync", "every": "90s"}
        ]"#,
    )
    .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let (mut server, addr, _lines) = crate::binary::start(&[("JOBQ_SCHEDULES_FILE", path)]).await;
    let channel = crate::durable::connect(format!("http://{addr}")).await;
    let report = get(&channel, "hourly-report").await;
    let settings = report.settings.expect("settings");
    assert_eq!(settings.time_zone, "Europe/Berlin");
    assert_eq!(settings.misfire, pb::MisfirePolicy::FireOnce as i32);
    assert_eq!(settings.overlap, pb::OverlapPolicy::SkipIfRunning as i32);
    assert_eq!(
        settings.jitter,
        Some(prost_types::Duration {
            seconds: 30,
            nanos: 0
        })
    );
    assert_eq!(settings.job.expect("job").payload, "sales".as_bytes());
    let sync = get(&channel, "sync").await;
    assert_eq!(
        sync.settings.expect("settings").trigger,
        Some(pb::schedule_settings::Trigger::Every(
            prost_types::Duration {
                seconds: 90,
                nanos: 0
            }
        ))
    );
    server.kill().await.expect("kill");

    std::fs::write(
        &file,
        r#"[{"name": "bad", "queue": "reports", "cron": "0 0 32 * *"}]"#,
    )
    .expect("write");
    let stderr = jobq_fails(&FREE_PORTS, &[("JOBQ_SCHEDULES_FILE", path)]).await;
    assert!(
        stderr.contains("entry 0 (\"bad\")")
            && stderr.contains("settings.cron: field 3 (day of month)"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
