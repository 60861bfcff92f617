//! The `jobq` command line: the server (the default) and operator commands
//! that talk to a running server.

mod commands;
mod output;
mod remote;
mod schedules;

pub(crate) use commands::run;

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jobq::config::Config;
use jobq::grpc::pb;

use output::Output;

/// A job queue served over gRPC. With no command, `jobq` runs the server.
///
/// The server's flags are taken with or without `serve` (`jobq --data-dir
/// DIR` is `jobq serve --data-dir DIR`), but only `jobq serve --help`
/// lists them, so this help stays short.
#[derive(Debug, Parser)]
#[command(
    name = "jobq",
    version,
    about,
    args_conflicts_with_subcommands = true,
    mut_args = |arg: clap::Arg| arg.hide(true),
    after_help = "Server flags (also taken without `serve`): jobq serve --help\nA command's flags: jobq <COMMAND> --help"
)]
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
            Some(Command::Migrate { store }) => Action::Migrate(store),
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
    /// Bring a postgres store's schema up to date, then exit.
    Migrate(String),
    /// Talk to a running server.
    Remote(RemoteCommand),
}

/// Every command.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    /// Run the server (what `jobq` with no command does).
    Serve(Config),
    /// Bring a postgres store's schema up to date and exit (the server
    /// also does this at start-up; this runs it alone, e.g. as a
    /// deployment's pre-upgrade step).
    Migrate {
        /// The store: a postgres://user@host/database URL.
        #[arg(long, env = "JOBQ_STORE")]
        store: String,
    },
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
        #[command(flatten)]
        job: NewJobArgs,
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
        /// Show at most this many jobs (0: all of them, page by page).
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
    /// On a terminal, asks first, naming how many.
    Purge {
        #[command(flatten)]
        remote: Remote,
        /// The queue.
        queue: String,
        /// Purge the dead-letter set instead of the ready jobs.
        #[arg(long)]
        dead: bool,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Change a queue's settings; those not given stay as they are.
    UpdateQueue {
        #[command(flatten)]
        remote: Remote,
        /// The queue.
        queue: String,
        /// Jobs held at most.
        #[arg(long)]
        capacity: Option<u32>,
        /// Default lease (e.g. 30s, 5m).
        #[arg(long, value_parser = humantime::parse_duration)]
        lease: Option<Duration>,
        /// Default deliveries before dead-lettering.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Backoff after the first failure (e.g. 1s).
        #[arg(long, value_parser = humantime::parse_duration)]
        backoff_base: Option<Duration>,
        /// Longest backoff (e.g. 10m).
        #[arg(long, value_parser = humantime::parse_duration)]
        backoff_cap: Option<Duration>,
        /// Create the queue, with the server's defaults, if it does not
        /// exist.
        #[arg(long)]
        create: bool,
    },
    /// Delete a queue and every job in it. On a terminal, asks first,
    /// naming how many jobs go with it.
    DeleteQueue {
        #[command(flatten)]
        remote: Remote,
        /// The queue.
        queue: String,
        /// Delete even while workers hold leased jobs (their acks will
        /// then fail).
        #[arg(long)]
        force: bool,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Ask the server's health service: exits 0 when it is SERVING, 1 when
    /// it is not (starting, or shutting down) or cannot be reached. For
    /// probes and scripts.
    Health {
        #[command(flatten)]
        remote: Remote,
        /// The service to ask about: "" (the server), jobq.v1.JobQueue,
        /// jobq.v1.Admin or jobq.v1.Schedules.
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Recurring jobs: list, get, set, delete, pause, resume, trigger.
    Schedules {
        #[command(subcommand)]
        command: schedules::ScheduleCommand,
    },
    /// Cancel a job no worker holds.
    Cancel {
        #[command(flatten)]
        remote: Remote,
        /// The job's id.
        id: String,
        /// Its queue, if known (otherwise every queue is searched).
        #[arg(long)]
        queue: Option<String>,
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

/// The job `jobq enqueue` is given.
#[derive(Debug, Args)]
pub(crate) struct NewJobArgs {
    /// The payload, as text.
    #[arg(
        long,
        required_unless_present = "payload_file",
        conflicts_with = "payload_file"
    )]
    pub(crate) payload: Option<String>,
    /// The payload: this file's bytes, as they are (`-` reads standard
    /// input), for binary payloads or ones too long for a command line.
    #[arg(long, value_name = "PATH")]
    pub(crate) payload_file: Option<std::path::PathBuf>,
    /// A header, as KEY=VALUE; repeat for more.
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    pub(crate) metadata: Vec<String>,
    /// Higher is delivered first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) priority: i32,
    /// Make the job leasable only after this long (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "not_before")]
    pub(crate) delay: Option<Duration>,
    /// Make the job leasable only from this time, RFC 3339 (e.g.
    /// 2026-12-24T18:00:00Z).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub(crate) not_before: Option<std::time::SystemTime>,
    /// Deliveries before dead-lettering (0: the queue's default).
    #[arg(long, default_value_t = 0)]
    pub(crate) max_attempts: u32,
    /// Store nothing if this key was used on the queue within the
    /// server's idempotency window.
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
}

/// Where the server is and how to print answers.
#[derive(Debug, Args)]
pub(crate) struct Remote {
    /// The server's address: `host:port`, or a URL (`https://` for TLS).
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
