//! The `jobq` command line: the server (the default) and operator commands
//! that talk to a running server.

mod output;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use jobq::config::Config;
use jobq::grpc::pb::{self, admin_client::AdminClient, job_queue_client::JobQueueClient};
use jobq_client::{Bearer, ClientOptions};
use serde_json::json;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use output::{Output, job_json, job_row, queue_json, queue_rows};

/// A job queue served over gRPC. With no command, `jobq` runs the server.
#[derive(Debug, Parser)]
#[command(name = "jobq", version, about, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Config,
}

impl Cli {
    /// The server settings, if this invocation runs the server.
    pub(crate) fn into_action(self) -> Action {
        match self.command {
            None => Action::Serve(self.serve),
            Some(Command::Serve(config)) => Action::Serve(config),
            Some(Command::Remote(command)) => Action::Remote(command),
        }
    }
}

/// What an invocation does.
// Made once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Action {
    /// Run the server.
    Serve(Config),
    /// Talk to a running server.
    Remote(RemoteCommand),
}

/// Every command.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    /// Run the server (what `jobq` with no command does).
    Serve(Config),
    /// Commands that talk to a running server.
    #[command(flatten)]
    Remote(RemoteCommand),
}

/// Commands that talk to a running server.
#[derive(Debug, Subcommand)]
pub(crate) enum RemoteCommand {
    /// Enqueue one job.
    Enqueue {
        #[command(flatten)]
        remote: Remote,
        /// The queue.
        queue: String,
        /// The payload, as text.
        #[arg(long)]
        payload: String,
        /// A header, as KEY=VALUE; repeat for more.
        #[arg(long = "metadata", value_name = "KEY=VALUE")]
        metadata: Vec<String>,
        /// Higher is delivered first.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// Make the job leasable only after this long (e.g. 30s, 5m).
        #[arg(long, value_parser = humantime::parse_duration)]
        delay: Option<Duration>,
        /// Deliveries before dead-lettering (0: the queue's default).
        #[arg(long, default_value_t = 0)]
        max_attempts: u32,
        /// Store nothing if this key was used on the queue within the
        /// server's idempotency window.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List the queues with their counts.
    Queues {
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one queue's settings, counts and totals.
    Stats {
        #[command(flatten)]
        remote: Remote,
        /// The queue.
        queue: String,
    },
    /// List a queue's jobs without leasing them.
    Jobs {
        #[command(flatten)]
        remote: Remote,
        /// The queue.
        queue: String,
        /// Only jobs in this state.
        #[arg(long, value_enum)]
        state: Option<State>,
        /// Show at most this many jobs.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one job, by id.
    Job {
        #[command(flatten)]
        remote: Remote,
        /// The job's id.
        id: String,
        /// Its queue, if known (otherwise every queue is searched).
        #[arg(long)]
        queue: Option<String>,
    },
    /// Dead-letter commands.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Stop leasing from a queue; enqueues are still accepted.
    Pause {
        #[command(flatten)]
        remote: Remote,
        /// The queue.
        queue: String,
    },
    /// Start leasing from a paused queue again.
    Resume {
        #[command(flatten)]
        remote: Remote,
        /// The queue.
        queue: String,
    },
    /// Remove a queue's ready jobs (or, with --dead, its dead letters).
    Purge {
        #[command(flatten)]
        remote: Remote,
        /// The queue.
        queue: String,
        /// Purge the dead-letter set instead of the ready jobs.
        #[arg(long)]
        dead: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// Move dead-lettered jobs back to ready, attempts reset: the ids
    /// given, or every dead job of the queue.
    Redrive {
        #[command(flatten)]
        remote: Remote,
        /// The queue.
        queue: String,
        /// Only these jobs.
        ids: Vec<String>,
    },
}

/// Where the server is and how to print answers.
#[derive(Debug, Args)]
pub(crate) struct Remote {
    /// The server's address (`https://` for TLS).
    #[arg(long, env = "JOBQ_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Bearer token to send (an admin token for the operator commands).
    #[arg(long, env = "JOBQ_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificates to trust the server's TLS certificate with.
    #[arg(long, env = "JOBQ_CLIENT_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate, for a server that requires one.
    #[arg(long, env = "JOBQ_CLIENT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM key of --tls-cert.
    #[arg(long, env = "JOBQ_CLIENT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Human-readable tables, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// A job state, as the command line names it.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum State {
    /// Leasable now.
    Ready,
    /// Waiting for a delay or backoff.
    Scheduled,
    /// Held by a worker.
    Leased,
    /// Dead-lettered.
    Dead,
}

impl From<State> for pb::JobState {
    fn from(state: State) -> Self {
        match state {
            State::Ready => Self::Ready,
            State::Scheduled => Self::Scheduled,
            State::Leased => Self::Leased,
            State::Dead => Self::Dead,
        }
    }
}

impl Remote {
    fn options(&self) -> anyhow::Result<ClientOptions> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let mut options = ClientOptions::new();
        if let Some(ca) = &self.tls_ca {
            options = options.tls_ca_pem(read(ca)?);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options.tls_identity_pem(read(cert)?, read(key)?);
        }
        if let Some(token) = &self.token {
            options = options.token(token)?;
        }
        Ok(options)
    }

    async fn connect(&self) -> anyhow::Result<(Channel, Bearer)> {
        let options = self.options()?;
        let channel = options
            .endpoint(&self.server)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot reach jobq at {}", self.server))?;
        Ok((channel, options.bearer()))
    }

    async fn admin(&self) -> anyhow::Result<AdminClient<InterceptedService<Channel, Bearer>>> {
        let (channel, bearer) = self.connect().await?;
        Ok(AdminClient::with_interceptor(channel, bearer))
    }

    async fn job_queue(
        &self,
    ) -> anyhow::Result<JobQueueClient<InterceptedService<Channel, Bearer>>> {
        let (channel, bearer) = self.connect().await?;
        Ok(JobQueueClient::with_interceptor(channel, bearer))
    }
}

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
            let metadata = metadata
                .iter()
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--metadata {pair:?} is not KEY=VALUE"))
                })
                .collect::<anyhow::Result<_>>()?;
            let job = pb::NewJob {
                payload: payload.into_bytes().into(),
                metadata,
                priority,
                schedule: delay
                    .map(|d| d.try_into().map(pb::new_job::Schedule::Delay))
                    .transpose()
                    .context("--delay is too long")?,
                max_attempts,
                idempotency_key: idempotency_key.unwrap_or_default(),
            };
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
        }
        RemoteCommand::Queues { remote } => {
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
        }
        RemoteCommand::Stats { remote, queue } => {
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
        }
        RemoteCommand::Jobs {
            remote,
            queue,
            state,
            limit,
        } => {
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
        }
        RemoteCommand::Job { remote, id, queue } => {
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
        }
        RemoteCommand::Dlq {
            command: DlqCommand::Redrive { remote, queue, ids },
        } => {
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
        }
        RemoteCommand::Pause { remote, queue } => {
            remote
                .admin()
                .await?
                .pause_queue(pb::PauseQueueRequest {
                    queue: queue.clone(),
                })
                .await?;
            remote
                .output
                .print(json!({"queue": queue, "paused": true}), || {
                    format!("{queue} paused: jobs are accepted but not handed out")
                });
        }
        RemoteCommand::Resume { remote, queue } => {
            remote
                .admin()
                .await?
                .resume_queue(pb::ResumeQueueRequest {
                    queue: queue.clone(),
                })
                .await?;
            remote
                .output
                .print(json!({"queue": queue, "paused": false}), || {
                    format!("{queue} resumed")
                });
        }
        RemoteCommand::Purge {
            remote,
            queue,
            dead,
        } => {
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
        }
    }
    Ok(())
}
