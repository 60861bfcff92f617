//! The operator commands: each one call (or one paged walk) against a
//! running server, and its answer printed as a table or as JSON.

use std::time::Duration;

use anyhow::Context;
use jobq::grpc::pb;
use serde_json::json;

use super::output::{self, job_json, job_row, queue_json, queue_rows};
use super::{DlqCommand, NewJobArgs, Remote, RemoteCommand, State};

/// Runs a command against a running server and prints its answer.
pub(crate) async fn run(command: RemoteCommand) -> anyhow::Result<()> {
    match command {
        RemoteCommand::Enqueue { remote, queue, job } => enqueue(&remote, queue, job).await,
        RemoteCommand::Queues { remote } => queues(&remote).await,
        RemoteCommand::Stats { remote, queue } => stats(&remote, queue).await,
        RemoteCommand::Jobs {
            remote,
            queue,
            state,
            limit,
        } => jobs(&remote, queue, state, limit).await,
        RemoteCommand::Job { remote, id, queue } => job(&remote, id, queue).await,
        RemoteCommand::Dlq {
            command: DlqCommand::Redrive { remote, queue, ids },
        } => redrive(&remote, queue, ids).await,
        RemoteCommand::Pause { remote, queue } => pause(&remote, queue, true).await,
        RemoteCommand::Resume { remote, queue } => pause(&remote, queue, false).await,
        RemoteCommand::Purge {
            remote,
            queue,
            dead,
            yes,
        } => purge(&remote, queue, dead, yes).await,
        RemoteCommand::UpdateQueue {
            remote,
            queue,
            capacity,
            lease,
            max_attempts,
            backoff_base,
            backoff_cap,
            create,
        } => {
            let duration = |d: Option<Duration>, flag: &str| {
                d.map(prost_types::Duration::try_from)
                    .transpose()
                    .with_context(|| format!("{flag} is too long"))
            };
            let request = pb::UpdateQueueRequest {
                queue,
                capacity,
                lease_duration: duration(lease, "--lease")?,
                max_attempts,
                backoff_base: duration(backoff_base, "--backoff-base")?,
                backoff_cap: duration(backoff_cap, "--backoff-cap")?,
                paused: None,
                allow_missing: create,
            };
            update_queue(&remote, request).await
        }
        RemoteCommand::DeleteQueue {
            remote,
            queue,
            force,
            yes,
        } => delete_queue(&remote, queue, force, yes).await,
        RemoteCommand::Cancel { remote, id, queue } => cancel(&remote, id, queue).await,
        RemoteCommand::Health { remote, service } => health(&remote, service).await,
        RemoteCommand::Schedules { command } => super::schedules::run(command).await,
    }
}

/// "1 job", "2 jobs", with `what` between: "1 ready job".
fn jobs_phrase(count: u64, what: &str) -> String {
    let noun = if count == 1 { "job" } else { "jobs" };
    match what {
        "" => format!("{count} {noun}"),
        what => format!("{count} {what} {noun}"),
    }
}

/// A payload file's bytes; `-` is standard input.
/// `--metadata KEY=VALUE` flags as a map.
pub(super) fn parse_metadata(
    pairs: &[String],
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--metadata {pair:?} is not KEY=VALUE"))
        })
        .collect()
}

pub(super) fn read_payload(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if path == std::path::Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("cannot read the payload from standard input")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("cannot read --payload-file {}", path.display()))
}

/// Whether to ask before a removal: on a terminal, unless `--yes`
/// (scripts pass --yes, or run with no terminal).
fn should_ask(yes: bool) -> bool {
    use std::io::IsTerminal;
    !yes && std::io::stdin().is_terminal()
}

/// Asks on the terminal whether to go on.
fn confirm(question: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    match answer.trim() {
        "y" | "Y" | "yes" => Ok(()),
        _ => anyhow::bail!("not confirmed; nothing was changed (pass --yes to skip the question)"),
    }
}

async fn queue_counts(remote: &Remote, queue: &str) -> anyhow::Result<pb::QueueCounts> {
    Ok(remote
        .admin()
        .await?
        .get_queue(pb::GetQueueRequest {
            queue: queue.to_string(),
        })
        .await?
        .into_inner()
        .queue
        .unwrap_or_default()
        .counts
        .unwrap_or_default())
}

async fn update_queue(remote: &Remote, request: pb::UpdateQueueRequest) -> anyhow::Result<()> {
    let info = remote
        .admin()
        .await?
        .update_queue(request)
        .await?
        .into_inner()
        .queue
        .unwrap_or_default();
    print_queue(remote, &info);
    Ok(())
}

/// A queue's settings, counts and totals, as the output format says.
fn print_queue(remote: &Remote, info: &pb::QueueInfo) {
    remote
        .output
        .print(queue_json(info), || output::queue_stats(info));
}

async fn delete_queue(
    remote: &Remote,
    queue: String,
    force: bool,
    yes: bool,
) -> anyhow::Result<()> {
    if should_ask(yes) {
        let c = queue_counts(remote, &queue).await?;
        let held = c.ready + c.scheduled + c.leased + c.dead;
        confirm(&format!(
            "delete queue {queue} and its {}?",
            jobs_phrase(held, "")
        ))?;
    }
    let deleted = remote
        .admin()
        .await?
        .delete_queue(pb::DeleteQueueRequest {
            queue: queue.clone(),
            force,
        })
        .await?
        .into_inner()
        .deleted_job_count;
    remote
        .output
        .print(json!({"queue": queue, "deleted_jobs": deleted}), || {
            format!("deleted queue {queue} and its {}", jobs_phrase(deleted, ""))
        });
    Ok(())
}

async fn cancel(remote: &Remote, id: String, queue: Option<String>) -> anyhow::Result<()> {
    remote
        .admin()
        .await?
        .cancel_job(pb::CancelJobRequest {
            job_id: id.clone(),
            queue: queue.unwrap_or_default(),
        })
        .await?;
    remote
        .output
        .print(json!({"job_id": id, "cancelled": true}), || {
            format!("cancelled {id}")
        });
    Ok(())
}

impl NewJobArgs {
    fn into_pb(self) -> anyhow::Result<pb::NewJob> {
        let payload = match (self.payload, &self.payload_file) {
            (Some(text), _) => text.into_bytes(),
            (None, Some(path)) => read_payload(path)?,
            (None, None) => anyhow::bail!("give --payload TEXT or --payload-file PATH"),
        };
        let metadata = parse_metadata(&self.metadata)?;
        let schedule = match (self.delay, self.not_before) {
            (Some(delay), _) => Some(pb::new_job::Schedule::Delay(
                delay.try_into().context("--delay is too long")?,
            )),
            (None, Some(at)) => Some(pb::new_job::Schedule::NotBefore(at.into())),
            (None, None) => None,
        };
        Ok(pb::NewJob {
            payload: payload.into(),
            metadata,
            priority: self.priority,
            schedule,
            max_attempts: self.max_attempts,
            idempotency_key: self.idempotency_key.unwrap_or_default(),
        })
    }
}

async fn enqueue(remote: &Remote, queue: String, job: NewJobArgs) -> anyhow::Result<()> {
    let job = job.into_pb()?;
    let reply = remote
        .job_queue()
        .await?
        .enqueue(pb::EnqueueRequest {
            queue,
            job: Some(job),
            wait_for_room: false,
        })
        .await?
        .into_inner();
    remote.output.print(
        json!({"job_id": reply.job_id, "duplicate": reply.duplicate}),
        || match reply.duplicate {
            true => format!("{} (duplicate: nothing stored)", reply.job_id),
            false => reply.job_id.clone(),
        },
    );
    Ok(())
}

async fn queues(remote: &Remote) -> anyhow::Result<()> {
    let mut admin = remote.admin().await?;
    let mut queues = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_queues(pb::ListQueuesRequest {
                page_size: 1000,
                page_token,
            })
            .await?
            .into_inner();
        queues.extend(page.queues);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    remote.output.print(
        json!(queues.iter().map(queue_json).collect::<Vec<_>>()),
        || queue_rows(&queues),
    );
    Ok(())
}

async fn stats(remote: &Remote, queue: String) -> anyhow::Result<()> {
    let info = remote
        .admin()
        .await?
        .get_queue(pb::GetQueueRequest { queue })
        .await?
        .into_inner()
        .queue
        .unwrap_or_default();
    print_queue(remote, &info);
    Ok(())
}

async fn jobs(
    remote: &Remote,
    queue: String,
    state: Option<State>,
    limit: usize,
) -> anyhow::Result<()> {
    let mut admin = remote.admin().await?;
    let limit = if limit == 0 { usize::MAX } else { limit };
    let mut jobs = Vec::new();
    let mut page_token = String::new();
    let mut more = false;
    while jobs.len() < limit {
        let page = admin
            .list_jobs(pb::ListJobsRequest {
                queue: queue.clone(),
                state: state.map_or(pb::JobState::Unspecified, Into::into).into(),
                page_size: (limit - jobs.len()).min(1000) as u32,
                page_token,
            })
            .await?
            .into_inner();
        jobs.extend(page.jobs);
        more = !page.next_page_token.is_empty();
        if !more {
            break;
        }
        page_token = page.next_page_token;
    }
    if more {
        // On standard error, so the JSON on standard output stays whole.
        eprintln!(
            "showing the first {}; more remain: pass --limit 0 for all, or a larger --limit",
            jobs_phrase(jobs.len() as u64, "")
        );
    }
    remote
        .output
        .print(json!(jobs.iter().map(job_json).collect::<Vec<_>>()), || {
            output::table(
                &[
                    "ID",
                    "STATE",
                    "ATTEMPTS",
                    "PRIORITY",
                    "LAST ERROR",
                    "PAYLOAD",
                ],
                jobs.iter().map(job_row).collect(),
            )
        });
    Ok(())
}

async fn job(remote: &Remote, id: String, queue: Option<String>) -> anyhow::Result<()> {
    let job = remote
        .admin()
        .await?
        .get_job(pb::GetJobRequest {
            job_id: id,
            queue: queue.unwrap_or_default(),
        })
        .await?
        .into_inner()
        .job
        .unwrap_or_default();
    remote
        .output
        .print(job_json(&job), || output::job_details(&job));
    Ok(())
}

async fn redrive(remote: &Remote, queue: String, ids: Vec<String>) -> anyhow::Result<()> {
    let all = ids.is_empty();
    let reply = remote
        .admin()
        .await?
        .redrive_jobs(pb::RedriveJobsRequest {
            queue: queue.clone(),
            job_ids: ids,
            all,
        })
        .await?
        .into_inner();
    let count = reply.redriven_job_count;
    remote.output.print(json!({"redriven": count}), || {
        let verb = if count == 1 { "is" } else { "are" };
        format!(
            "{} of {queue} {verb} ready again",
            jobs_phrase(count, "dead-lettered")
        )
    });
    Ok(())
}

async fn pause(remote: &Remote, queue: String, paused: bool) -> anyhow::Result<()> {
    let mut admin = remote.admin().await?;
    if paused {
        admin
            .pause_queue(pb::PauseQueueRequest {
                queue: queue.clone(),
            })
            .await?;
    } else {
        admin
            .resume_queue(pb::ResumeQueueRequest {
                queue: queue.clone(),
            })
            .await?;
    }
    remote
        .output
        .print(json!({"queue": queue, "paused": paused}), || match paused {
            true => format!("{queue} paused: jobs are accepted but not handed out"),
            false => format!("{queue} resumed"),
        });
    Ok(())
}

async fn purge(remote: &Remote, queue: String, dead: bool, yes: bool) -> anyhow::Result<()> {
    let target = if dead {
        pb::PurgeTarget::Dead
    } else {
        pb::PurgeTarget::Ready
    };
    let what = if dead { "dead-lettered" } else { "ready" };
    if should_ask(yes) {
        let c = queue_counts(remote, &queue).await?;
        let count = if dead { c.dead } else { c.ready };
        confirm(&format!("purge {} from {queue}?", jobs_phrase(count, what)))?;
    }
    let purged = remote
        .admin()
        .await?
        .purge_queue(pb::PurgeQueueRequest {
            queue: queue.clone(),
            target: target.into(),
        })
        .await?
        .into_inner()
        .purged_job_count;
    remote.output.print(json!({"purged": purged}), || {
        format!("purged {} from {queue}", jobs_phrase(purged, what))
    });
    Ok(())
}

async fn health(remote: &Remote, service: String) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let status = remote
        .health()
        .await?
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.clone(),
        })
        .await?
        .into_inner()
        .status();
    let name = status.as_str_name();
    remote
        .output
        .print(json!({"service": service, "status": name}), || {
            name.to_string()
        });
    let what = if service.is_empty() {
        "the server"
    } else {
        service.as_str()
    };
    anyhow::ensure!(status == ServingStatus::Serving, "{what} is {name}");
    Ok(())
}
