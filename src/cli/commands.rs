//! The operator commands: each one call (or one paged walk) against a
//! running server, and its answer printed as a table or as JSON.

use std::time::Duration;

use anyhow::Context;
use jobq::grpc::pb;
use serde_json::json;

use super::output::{self, job_json, job_row, queue_json, queue_rows};
use super::{DlqCommand, Remote, RemoteCommand, State};

/// Runs a command against a running server and prints its answer.
pub(crate) async fn run(command: RemoteCommand) -> anyhow::Result<()> {
    match command {
        RemoteCommand::Enqueue {
            remote,
            queue,
            payload,
            metadata,
            priority,
            delay,
            max_attempts,
            idempotency_key,
        } => {
            let job = NewJobArgs {
                payload,
                metadata,
                priority,
                delay,
                max_attempts,
                idempotency_key,
            };
            enqueue(&remote, queue, job).await
        }
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
        } => purge(&remote, queue, dead).await,
    }
}

/// The job `jobq enqueue` was given.
struct NewJobArgs {
    payload: String,
    metadata: Vec<String>,
    priority: i32,
    delay: Option<Duration>,
    max_attempts: u32,
    idempotency_key: Option<String>,
}

impl NewJobArgs {
    fn into_pb(self) -> anyhow::Result<pb::NewJob> {
        let metadata = self
            .metadata
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .with_context(|| format!("--metadata {pair:?} is not KEY=VALUE"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(pb::NewJob {
            payload: self.payload.into_bytes().into(),
            metadata,
            priority: self.priority,
            schedule: self
                .delay
                .map(|d| d.try_into().map(pb::new_job::Schedule::Delay))
                .transpose()
                .context("--delay is too long")?,
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
    remote
        .output
        .print(queue_json(&info), || output::queue_stats(&info));
    Ok(())
}

async fn jobs(
    remote: &Remote,
    queue: String,
    state: Option<State>,
    limit: usize,
) -> anyhow::Result<()> {
    let mut admin = remote.admin().await?;
    let mut jobs = Vec::new();
    let mut page_token = String::new();
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
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
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
        format!("{count} dead-lettered jobs of {queue} are ready again")
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

async fn purge(remote: &Remote, queue: String, dead: bool) -> anyhow::Result<()> {
    let target = if dead {
        pb::PurgeTarget::Dead
    } else {
        pb::PurgeTarget::Ready
    };
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
    let what = if dead { "dead-lettered" } else { "ready" };
    remote.output.print(json!({"purged": purged}), || {
        format!("purged {purged} {what} jobs from {queue}")
    });
    Ok(())
}
