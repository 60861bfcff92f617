//! The server's settings: every flag has a `JOBQ_*` environment variable and
//! a default, all shown by `jobq --help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::engine::EngineConfig;
use crate::engine::journal::{Fsync, RecoveryMode};
use crate::grpc::Limits;
use crate::queue::{QueueConfig, RetryPolicy};
pub use crate::telemetry::LogFormat;
use crate::telemetry::TelemetrySettings;
use jobq_proto::limits::{MAX_ATTEMPTS_LIMIT, MAX_DELAY};

/// A job queue served over gRPC.
#[derive(Clone, Debug, Parser)]
#[command(name = "jobq", version, about, long_about = None)]
pub struct Config {
    /// Address the gRPC server listens on: IP:PORT or HOST:PORT (a host
    /// name is resolved at start).
    #[arg(long, env = "JOBQ_LISTEN", default_value = "127.0.0.1:50051", value_parser = listen_address)]
    pub listen: String,

    /// Address of the Prometheus metrics endpoint (`/metrics`): IP:PORT or
    /// HOST:PORT.
    #[arg(long, env = "JOBQ_METRICS_LISTEN", default_value = "127.0.0.1:9090", value_parser = listen_address)]
    pub metrics_listen: String,

    /// Address of the web dashboard: IP:PORT or HOST:PORT, or `off` to
    /// serve none. Without auth tokens it must be a loopback address unless
    /// --web-allow-unauthenticated is given.
    #[arg(long, env = "JOBQ_WEB_LISTEN", default_value = "127.0.0.1:8080", value_parser = web_listen_address)]
    pub web_listen: String,

    /// Serve the dashboard on a non-loopback address without auth tokens:
    /// anyone who reaches it can read payloads and delete jobs.
    #[arg(long, env = "JOBQ_WEB_ALLOW_UNAUTHENTICATED", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub web_allow_unauthenticated: bool,

    /// Link for a job's trace id on the dashboard, with `{trace_id}` where
    /// the id goes (e.g. http://jaeger:16686/trace/{trace_id}). Unset, the
    /// trace id is shown without a link.
    #[arg(long, env = "JOBQ_WEB_TRACE_URL")]
    pub web_trace_url: Option<String>,

    /// Log format: `pretty` for people, `json` for log collectors.
    #[arg(long, env = "JOBQ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// OTLP/gRPC collector to export traces to (e.g. http://otel:4317).
    /// Unset, the standard OTEL_EXPORTER_OTLP_ENDPOINT is used; with
    /// neither, traces are not exported.
    #[arg(long, env = "JOBQ_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Lease length when a worker asks for none.
    #[arg(long, env = "JOBQ_LEASE_DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// Longest lease (or extension) a worker may ask for.
    #[arg(long, env = "JOBQ_MAX_LEASE_DURATION", default_value = "12h", value_parser = humantime::parse_duration)]
    pub max_lease_duration: Duration,

    /// Deliveries a job may have before it is dead-lettered, unless the job
    /// sets its own limit.
    #[arg(long, env = "JOBQ_MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: u32,

    /// Retry backoff after the first failed attempt; it doubles with each
    /// further attempt.
    #[arg(long, env = "JOBQ_BACKOFF_BASE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub backoff_base: Duration,

    /// Longest retry backoff.
    #[arg(long, env = "JOBQ_BACKOFF_CAP", default_value = "15m", value_parser = humantime::parse_duration)]
    pub backoff_cap: Duration,

    /// Relative random spread of each backoff, from 0 to 1 (0.2 is ±20 %).
    #[arg(long, env = "JOBQ_BACKOFF_JITTER", default_value_t = 0.2)]
    pub backoff_jitter: f64,

    /// Largest job payload, in bytes.
    #[arg(long, env = "JOBQ_MAX_PAYLOAD_BYTES", default_value_t = 1024 * 1024)]
    pub max_payload_bytes: usize,

    /// Jobs one queue holds at most (ready, scheduled, leased and dead).
    #[arg(long, env = "JOBQ_QUEUE_CAPACITY", default_value_t = 100_000)]
    pub queue_capacity: usize,

    /// Bytes all queues together hold at most: jobs (payload, metadata and
    /// a fixed overhead each), idempotency keys, finished-job records,
    /// failure histories and schedules.
    #[arg(long, env = "JOBQ_MEMORY_BUDGET_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub memory_budget_bytes: u64,

    /// Queues the server holds at most.
    #[arg(long, env = "JOBQ_MAX_QUEUES", default_value_t = 10_000)]
    pub max_queues: usize,

    /// Schedules the server holds at most.
    #[arg(long, env = "JOBQ_MAX_SCHEDULES", default_value_t = 100_000)]
    pub max_schedules: usize,

    /// Longest long-poll wait a Lease may ask for.
    #[arg(long, env = "JOBQ_MAX_LEASE_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_lease_wait: Duration,

    /// Longest an enqueue with wait_for_room waits for room (less when the
    /// call's deadline comes first).
    #[arg(long, env = "JOBQ_MAX_ENQUEUE_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_enqueue_wait: Duration,

    /// Largest gRPC request, in bytes; bounds batch enqueues. Must exceed
    /// the payload limit.
    #[arg(long, env = "JOBQ_MAX_REQUEST_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// How long an enqueue's idempotency key is remembered.
    #[arg(long, env = "JOBQ_IDEMPOTENCY_WINDOW", default_value = "10m", value_parser = humantime::parse_duration)]
    pub idempotency_window: Duration,

    /// Idempotency keys one queue remembers at most; past this the oldest
    /// is forgotten early.
    #[arg(long, env = "JOBQ_IDEMPOTENCY_MAX_KEYS", default_value_t = 100_000)]
    pub idempotency_max_keys: usize,

    /// How long acked and cancelled jobs stay visible to GetJob.
    #[arg(long, env = "JOBQ_FINISHED_RETENTION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub finished_retention: Duration,

    /// Acked and cancelled jobs one queue remembers at most.
    #[arg(long, env = "JOBQ_FINISHED_MAX", default_value_t = 10_000)]
    pub finished_max: usize,

    /// On SIGINT or SIGTERM, how long in-flight RPCs get to finish.
    #[arg(long, env = "JOBQ_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Calls (HTTP/2 streams) one connection may have open at once.
    #[arg(
        long,
        env = "JOBQ_HTTP2_MAX_CONCURRENT_STREAMS",
        default_value_t = 1024
    )]
    pub http2_max_concurrent_streams: u32,

    /// Streams a client may open and reset before the server has accepted
    /// them, per connection; past this the connection is closed (the
    /// HTTP/2 rapid-reset attack).
    #[arg(
        long,
        env = "JOBQ_HTTP2_MAX_PENDING_RESET_STREAMS",
        default_value_t = 20
    )]
    pub http2_max_pending_reset_streams: usize,

    /// Streams the server may reset for a client's protocol errors on one
    /// connection; past this the connection is closed.
    #[arg(
        long,
        env = "JOBQ_HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS",
        default_value_t = 1024
    )]
    pub http2_max_local_error_reset_streams: usize,

    /// How often an idle connection is pinged.
    #[arg(long, env = "JOBQ_HTTP2_KEEPALIVE_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long a ping may go unanswered before the connection is closed,
    /// and the leases of its worker streams go back.
    #[arg(long, env = "JOBQ_HTTP2_KEEPALIVE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// How long a new connection has to finish its handshake: the TLS
    /// handshake, then the HTTP/2 preface and first frame. A connection
    /// still short of that then (or when shutdown begins) is closed.
    #[arg(long, env = "JOBQ_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// How long a connection may stay open with no call on it before it is
    /// closed (clients reconnect when they next call); 0s keeps idle
    /// connections open.
    #[arg(long, env = "JOBQ_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// How long a request message may take to arrive whole: a unary call's
    /// from the call's start, a stream's from the message's first byte.
    /// Past it the call ends with DEADLINE_EXCEEDED.
    #[arg(long, env = "JOBQ_REQUEST_STALL_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_stall_timeout: Duration,

    /// Bytes of request messages begun but not yet whole that one
    /// connection's calls may hold; past it the call that passes it ends
    /// with RESOURCE_EXHAUSTED. At least --max-request-bytes.
    #[arg(
        long,
        env = "JOBQ_MAX_PENDING_REQUEST_BYTES_PER_CONNECTION",
        default_value_t = 16 * 1024 * 1024
    )]
    pub max_pending_request_bytes_per_connection: usize,

    /// Bytes of request messages begun but not yet whole that all calls
    /// together may hold; past it the call that passes it ends with
    /// RESOURCE_EXHAUSTED. At least the per-connection limit.
    #[arg(
        long,
        env = "JOBQ_MAX_PENDING_REQUEST_BYTES",
        default_value_t = 256 * 1024 * 1024
    )]
    pub max_pending_request_bytes: usize,

    /// Largest header list a request may carry, in bytes.
    #[arg(long, env = "JOBQ_HTTP2_MAX_HEADER_LIST_BYTES", default_value_t = 16 * 1024)]
    pub http2_max_header_list_bytes: u32,

    /// Close connections this old, after their calls get
    /// --shutdown-grace to finish (clients reconnect). Unset keeps them.
    #[arg(long, env = "JOBQ_MAX_CONNECTION_AGE", value_parser = humantime::parse_duration)]
    pub max_connection_age: Option<Duration>,

    /// PEM certificate chain for TLS on the gRPC port. With --tls-key,
    /// turns TLS on; reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "JOBQ_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "JOBQ_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates: clients must present a certificate they sign
    /// (mutual TLS).
    #[arg(long, env = "JOBQ_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// How often the TLS files are checked for changes.
    #[arg(long, env = "JOBQ_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub tls_reload_interval: Duration,

    /// File of bearer tokens, one `role token` per line (roles: producer,
    /// worker, admin). Turns token authentication on. Tokens can also come
    /// from the JOBQ_AUTH_TOKENS variable as `role:token,role:token`.
    #[arg(long, env = "JOBQ_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,

    /// Connections open at once on the gRPC port, at most; one past it is
    /// closed at once and a warning naming this flag is logged.
    #[arg(long, env = "JOBQ_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Queues whose figures `/metrics` exports under their own name (the
    /// first created); the figures of the rest are summed under
    /// `queue="(other)"`, so a scrape stays bounded.
    #[arg(long, env = "JOBQ_METRICS_MAX_QUEUES", default_value_t = crate::metrics::DEFAULT_MAX_NAMED_QUEUES)]
    pub metrics_max_queues: usize,

    /// Serve gRPC reflection (for grpcurl and similar tools).
    #[arg(long, env = "JOBQ_REFLECTION", default_value_t = true, action = ArgAction::Set)]
    pub reflection: bool,

    /// Schedules to create or update at start-up, from this JSON file (a
    /// list of schedules; see the README's Schedules section). Schedules
    /// left out of it are not deleted.
    #[arg(long, env = "JOBQ_SCHEDULES_FILE")]
    pub schedules_file: Option<PathBuf>,

    /// Where jobs are kept: `memory` (this process, with --data-dir for a
    /// journal on disk), or a `postgres://user@host/db` URL, which lets any
    /// number of jobq replicas share the queues (libpq's URL parameters,
    /// such as `sslmode=require`, are understood).
    #[arg(long, env = "JOBQ_STORE", default_value = "memory", value_parser = parse_store)]
    pub store: Store,

    /// With a postgres store, the database connections this replica opens
    /// at most (each RPC in flight holds one for a statement).
    #[arg(long, env = "JOBQ_STORE_POOL_SIZE", default_value_t = 16)]
    pub store_pool_size: u32,

    /// Keep every job and queue setting in a journal in this directory, so
    /// they survive a restart, a crash and `kill -9`. Unset: in memory only.
    #[arg(long, env = "JOBQ_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// With --data-dir, when changes are synced to disk: `always` (each
    /// answered only after the fdatasync that covers it, shared by
    /// concurrent changes), `interval=<duration>` (answered once written,
    /// synced on that timer), or `never` (tests and throwaway use).
    #[arg(long, env = "JOBQ_FSYNC", default_value = "always", value_parser = parse_fsync)]
    pub fsync: Fsync,

    /// With --data-dir, what to do with a journal record that does not read
    /// back (other than a torn last record, which is always cut): `strict`
    /// refuses to start; `truncate` drops it and everything after it.
    #[arg(long, env = "JOBQ_JOURNAL_RECOVERY", value_enum, default_value_t = JournalRecovery::Strict)]
    pub journal_recovery: JournalRecovery,

    /// With --data-dir, the size at which a journal segment is closed and
    /// the next begun (compaction deletes whole segments). 64 KiB to 1 GiB.
    #[arg(long, env = "JOBQ_JOURNAL_SEGMENT_BYTES", default_value_t = 64 << 20)]
    pub journal_segment_bytes: u64,
}

/// What `--store` accepts.
#[derive(Clone, PartialEq, Eq)]
pub enum Store {
    /// This process's memory (and a journal with `--data-dir`).
    Memory,
    /// A PostgreSQL database, by URL.
    Postgres(String),
}

impl std::fmt::Debug for Store {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Postgres(_) => f.write_str("postgres"),
        }
    }
}

/// Reads `--store`: `memory`, or a `postgres://` (or `postgresql://`) URL.
fn parse_store(text: &str) -> Result<Store, String> {
    if text == "memory" {
        return Ok(Store::Memory);
    }
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Ok(Store::Postgres(text.to_string()));
    }
    Err("expected `memory` or a postgres://user@host/database URL".to_string())
}

/// What `--journal-recovery` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum JournalRecovery {
    /// Refuse to start, naming the file and offset.
    Strict,
    /// Drop the bad record and everything after it, and log what went.
    Truncate,
}

impl From<JournalRecovery> for RecoveryMode {
    fn from(mode: JournalRecovery) -> Self {
        match mode {
            JournalRecovery::Strict => RecoveryMode::Strict,
            JournalRecovery::Truncate => RecoveryMode::Truncate,
        }
    }
}

/// Reads `--fsync`: `always`, `never` or `interval=<duration>`.
fn parse_fsync(text: &str) -> Result<Fsync, String> {
    match text {
        "always" => Ok(Fsync::Always),
        "never" => Ok(Fsync::Never),
        other => {
            let Some(every) = other.strip_prefix("interval=") else {
                return Err(format!(
                    "{other:?} is not a policy: use always, never or interval=<duration> (e.g. interval=10ms)"
                ));
            };
            let every =
                humantime::parse_duration(every).map_err(|e| format!("interval={every}: {e}"))?;
            if every.is_zero() || every > Duration::from_secs(60) {
                return Err(format!(
                    "interval={}: the interval must be above zero and at most 1m",
                    humantime::format_duration(every)
                ));
            }
            Ok(Fsync::Interval(every))
        }
    }
}

/// A setting that cannot work, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {problem}")]
pub struct InvalidConfig {
    flag: &'static str,
    problem: String,
}

/// Checks a listen address's form, HOST:PORT (an IPv6 host in brackets);
/// the host is resolved when the server binds it.
fn listen_address(value: &str) -> Result<String, String> {
    let (host, port) = value.rsplit_once(':').ok_or_else(|| {
        format!("{value:?} is not HOST:PORT (e.g. 0.0.0.0:50051 or localhost:50051)")
    })?;
    if host.is_empty() {
        return Err(format!(
            "{value:?} has no host: use 0.0.0.0{value} for every interface"
        ));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{value:?}: the port {port:?} is not a number from 0 to 65535"))?;
    Ok(value.to_string())
}

/// `off`, or an address as [`listen_address`] takes it.
fn web_listen_address(value: &str) -> Result<String, String> {
    if value == "off" {
        return Ok(value.to_string());
    }
    listen_address(value).map_err(|problem| format!("{problem}, or `off` for no dashboard"))
}

impl Config {
    /// The dashboard's address, `None` when it is `off`.
    pub fn web_address(&self) -> Option<&str> {
        (self.web_listen != "off").then_some(self.web_listen.as_str())
    }

    /// The defaults, as `jobq` with no flags would run, ignoring the
    /// environment. For tests and embedding. Read from the flags' own
    /// declarations above, the one place they are written.
    // The defaults are constants of this file, parsed by a test too: they
    // cannot fail to parse.
    #[allow(clippy::expect_used)]
    pub fn defaults() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["jobq"])
            .expect("the flags' defaults parse");
        Self::from_arg_matches(&matches).expect("the flags' defaults convert")
    }

    /// Every duration setting with the longest value it accepts. Beyond
    /// these, a value is a typo (`100000000h`) more likely than a wish, and
    /// would push deadlines past what the clocks represent.
    fn duration_ceilings(&self) -> [(&'static str, Duration, Duration); 15] {
        const DAY: u64 = 24 * 3600;
        let days = |n: u64| Duration::from_secs(n * DAY);
        let hours = |n: u64| Duration::from_secs(n * 3600);
        [
            ("lease-duration", self.lease_duration, days(7)),
            ("max-lease-duration", self.max_lease_duration, days(7)),
            ("backoff-base", self.backoff_base, MAX_DELAY),
            ("backoff-cap", self.backoff_cap, MAX_DELAY),
            ("max-lease-wait", self.max_lease_wait, hours(1)),
            ("max-enqueue-wait", self.max_enqueue_wait, hours(1)),
            ("idempotency-window", self.idempotency_window, days(30)),
            ("finished-retention", self.finished_retention, days(30)),
            ("shutdown-grace", self.shutdown_grace, hours(1)),
            (
                "http2-keepalive-interval",
                self.http2_keepalive_interval,
                hours(1),
            ),
            (
                "http2-keepalive-timeout",
                self.http2_keepalive_timeout,
                hours(1),
            ),
            ("handshake-timeout", self.handshake_timeout, hours(1)),
            ("tls-reload-interval", self.tls_reload_interval, days(1)),
            ("idle-timeout", self.idle_timeout, days(7)),
            (
                "request-stall-timeout",
                self.request_stall_timeout,
                hours(1),
            ),
        ]
    }

    /// Checks each setting against its range and the settings against each
    /// other.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let fail = |flag, problem: String| Err(InvalidConfig { flag, problem });
        for (flag, value, ceiling) in self.duration_ceilings() {
            if value > ceiling {
                return fail(
                    flag,
                    format!(
                        "{} is longer than the longest accepted, {}",
                        humantime::format_duration(value),
                        humantime::format_duration(ceiling)
                    ),
                );
            }
        }
        if let Some(age) = self.max_connection_age
            && (age.is_zero() || age > MAX_DELAY)
        {
            return fail(
                "max-connection-age",
                format!(
                    "{} must be above zero and at most {}",
                    humantime::format_duration(age),
                    humantime::format_duration(MAX_DELAY)
                ),
            );
        }
        if matches!(self.store, Store::Postgres(_)) && self.data_dir.is_some() {
            return fail(
                "data-dir",
                "a postgres store keeps jobs in the database; leave --data-dir out, or use --store memory to keep a journal".to_string(),
            );
        }
        if let Some(url) = &self.web_trace_url
            && (!url.contains("{trace_id}")
                || !(url.starts_with("http://") || url.starts_with("https://")))
        {
            return fail(
                "web-trace-url",
                format!(
                    "{url:?} must be an http:// or https:// address holding {{trace_id}} where the trace id goes"
                ),
            );
        }
        if self.store_pool_size == 0 {
            return fail(
                "store-pool-size",
                "0 connections cannot serve a call; use 1 or more".to_string(),
            );
        }
        if self.lease_duration.is_zero() || self.lease_duration > self.max_lease_duration {
            return fail(
                "lease-duration",
                format!(
                    "{:?} must be above zero and at most --max-lease-duration ({:?})",
                    self.lease_duration, self.max_lease_duration
                ),
            );
        }
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return fail(
                "max-attempts",
                format!(
                    "{} must be from 1 to {}",
                    self.max_attempts, MAX_ATTEMPTS_LIMIT
                ),
            );
        }
        if self.backoff_base > self.backoff_cap {
            return fail(
                "backoff-base",
                format!(
                    "{:?} is more than --backoff-cap ({:?})",
                    self.backoff_base, self.backoff_cap
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.backoff_jitter) {
            return fail(
                "backoff-jitter",
                format!("{} must be from 0 to 1", self.backoff_jitter),
            );
        }
        if self.queue_capacity == 0 || self.max_queues == 0 {
            return fail(
                "queue-capacity",
                "queue capacity and --max-queues must be at least 1".into(),
            );
        }
        if self.max_schedules == 0 {
            return fail(
                "max-schedules",
                "must be at least 1 (schedules are made only when asked for)".into(),
            );
        }
        if self.max_payload_bytes as u64 + crate::queue::cost::JOB_OVERHEAD_BYTES
            > self.memory_budget_bytes
        {
            return fail(
                "max-payload-bytes",
                format!(
                    "{} and a job's fixed {} bytes are more than --memory-budget-bytes ({}), so the largest job could never be stored",
                    self.max_payload_bytes,
                    crate::queue::cost::JOB_OVERHEAD_BYTES,
                    self.memory_budget_bytes
                ),
            );
        }
        if !(64 << 10..=1 << 30).contains(&self.journal_segment_bytes) {
            return fail(
                "journal-segment-bytes",
                format!(
                    "{} must be from 65536 (64 KiB) to 1073741824 (1 GiB)",
                    self.journal_segment_bytes
                ),
            );
        }
        if self.max_connections == 0 {
            return fail("max-connections", "must be at least 1".into());
        }
        if self.handshake_timeout.is_zero() {
            return fail("handshake-timeout", "must be above zero".into());
        }
        if self.http2_max_concurrent_streams == 0 {
            return fail("http2-max-concurrent-streams", "must be at least 1".into());
        }
        if self.http2_keepalive_interval.is_zero() || self.http2_keepalive_timeout.is_zero() {
            return fail(
                "http2-keepalive-interval",
                "the keepalive interval and --http2-keepalive-timeout must be above zero".into(),
            );
        }
        if self.tls_reload_interval.is_zero() {
            return fail("tls-reload-interval", "must be above zero".into());
        }
        if self.request_stall_timeout.is_zero() {
            return fail("request-stall-timeout", "must be above zero".into());
        }
        if self.max_pending_request_bytes_per_connection < self.max_request_bytes {
            return fail(
                "max-pending-request-bytes-per-connection",
                format!(
                    "{} must be at least --max-request-bytes ({}), so one whole request fits",
                    self.max_pending_request_bytes_per_connection, self.max_request_bytes
                ),
            );
        }
        if self.max_pending_request_bytes < self.max_pending_request_bytes_per_connection {
            return fail(
                "max-pending-request-bytes",
                format!(
                    "{} must be at least --max-pending-request-bytes-per-connection ({})",
                    self.max_pending_request_bytes, self.max_pending_request_bytes_per_connection
                ),
            );
        }
        if self.max_request_bytes <= self.max_payload_bytes {
            return fail(
                "max-request-bytes",
                format!(
                    "{} must exceed --max-payload-bytes ({}) to leave room for the job's other fields",
                    self.max_request_bytes, self.max_payload_bytes
                ),
            );
        }
        Ok(())
    }

    /// The engine's part of the settings.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            queue_defaults: QueueConfig {
                capacity: self.queue_capacity,
                lease_duration: self.lease_duration,
                max_attempts: self.max_attempts,
                retry: RetryPolicy {
                    base: self.backoff_base,
                    cap: self.backoff_cap,
                    jitter: self.backoff_jitter,
                },
                idempotency_window: self.idempotency_window,
                idempotency_max_keys: self.idempotency_max_keys,
                finished_retention: self.finished_retention,
                finished_max: self.finished_max,
            },
            memory_budget: self.memory_budget_bytes,
            max_queues: self.max_queues,
            max_schedules: self.max_schedules,
            clock: std::sync::Arc::new(crate::schedule::SystemClock),
        }
    }

    /// What logging and trace export need.
    pub fn telemetry(&self) -> TelemetrySettings {
        TelemetrySettings {
            log_format: self.log_format,
            otlp_endpoint: self.otlp_endpoint.clone(),
        }
    }

    /// The request limits the gRPC layer checks.
    pub fn limits(&self) -> Limits {
        Limits {
            max_payload_bytes: self.max_payload_bytes,
            max_lease_duration: self.max_lease_duration,
            max_lease_wait: self.max_lease_wait,
            max_enqueue_wait: self.max_enqueue_wait,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process of the test below.
    const CLEAN_ENV_CHILD: &str = "JOBQ_CONFIG_TEST_CHILD";

    /// Compares in a child process whose environment holds no `JOBQ_*`
    /// variable (a developer's shell or CI may set some), so what is
    /// compared is the flags' defaults alone.
    #[test]
    fn defaults_are_the_flags_defaults_in_a_clean_environment() {
        if std::env::var_os(CLEAN_ENV_CHILD).is_some() {
            let parsed = Config::try_parse_from(["jobq"]).expect("parses");
            assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::defaults()));
            return;
        }
        let name = "config::tests::defaults_are_the_flags_defaults_in_a_clean_environment";
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"));
        child.args(["--exact", name, "--test-threads", "1"]);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("JOBQ_") {
                child.env_remove(key);
            }
        }
        // Set in the parent's place, to show that the defaults ignore it.
        child.env(CLEAN_ENV_CHILD, "1");
        let output = child.output().expect("the test binary runs again");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn the_cores_defaults_are_the_servers() {
        let served = Config::defaults();
        served.validate().expect("the defaults are valid");
        let engine = served.engine();
        let core = EngineConfig::default();
        assert_eq!(engine.queue_defaults, core.queue_defaults);
        assert_eq!(engine.memory_budget, core.memory_budget);
        assert_eq!(engine.max_queues, core.max_queues);
        assert_eq!(engine.max_schedules, core.max_schedules);
    }

    #[test]
    fn the_dashboard_goes_off_with_off_and_its_trace_link_must_hold_the_id() {
        let mut off = Config::defaults();
        off.web_listen = web_listen_address("off").expect("off");
        assert_eq!(off.web_address(), None);
        assert_eq!(Config::defaults().web_address(), Some("127.0.0.1:8080"));
        let refused = web_listen_address("nowhere").expect_err("no port");
        assert!(refused.contains("or `off` for no dashboard"), "{refused}");
        for bad in ["http://jaeger/trace", "javascript:alert({trace_id})"] {
            let mut linked = Config::defaults();
            linked.web_trace_url = Some(bad.into());
            let error = linked.validate().expect_err(bad).to_string();
            assert!(error.starts_with("--web-trace-url: "), "{error}");
        }
        let mut linked = Config::defaults();
        linked.web_trace_url = Some("https://tempo.example/trace/{trace_id}".into());
        linked.validate().expect("a link holding the id");
    }

    #[test]
    fn every_duration_takes_its_ceiling_and_refuses_a_second_more() {
        let ceilings = Config::defaults().duration_ceilings();
        for (i, (flag, _, ceiling)) in ceilings.iter().enumerate() {
            let mut at = Config::defaults();
            set_duration(&mut at, i, *ceiling);
            at.validate()
                .unwrap_or_else(|e| panic!("--{flag} at its ceiling: {e}"));
            let mut over = at.clone();
            set_duration(&mut over, i, *ceiling + Duration::from_secs(1));
            let error = over.validate().expect_err(flag).to_string();
            assert!(error.starts_with(&format!("--{flag}: ")), "{error}");
            assert!(error.contains("longest accepted"), "{error}");
        }
        let mut age = Config::defaults();
        age.max_connection_age = Some(MAX_DELAY);
        age.validate().expect("a year's connection age");
        age.max_connection_age = Some(MAX_DELAY + Duration::from_secs(1));
        assert!(age.validate().is_err());
    }

    /// Sets the `i`th duration of [`Config::duration_ceilings`], keeping the
    /// settings that must stay ordered (lease within its maximum, base
    /// within the cap) in order.
    fn set_duration(config: &mut Config, i: usize, value: Duration) {
        match i {
            0 => {
                config.lease_duration = value;
                config.max_lease_duration = config.max_lease_duration.max(value);
            }
            1 => config.max_lease_duration = value,
            2 => {
                config.backoff_base = value;
                config.backoff_cap = config.backoff_cap.max(value);
            }
            3 => config.backoff_cap = value,
            4 => config.max_lease_wait = value,
            5 => config.max_enqueue_wait = value,
            6 => config.idempotency_window = value,
            7 => config.finished_retention = value,
            8 => config.shutdown_grace = value,
            9 => config.http2_keepalive_interval = value,
            10 => config.http2_keepalive_timeout = value,
            11 => config.handshake_timeout = value,
            12 => config.tls_reload_interval = value,
            13 => config.idle_timeout = value,
            14 => config.request_stall_timeout = value,
            _ => unreachable!("fifteen durations"),
        }
    }

    #[test]
    fn durations_parse_in_human_form() {
        let c = Config::try_parse_from(["jobq", "--lease-duration", "2m", "--backoff-cap", "1h"])
            .expect("parses");
        assert_eq!(c.lease_duration, Duration::from_secs(120));
        assert_eq!(c.backoff_cap, Duration::from_secs(3600));
    }

    #[test]
    fn inconsistent_settings_are_refused_naming_the_flag() {
        let mut c = Config::defaults();
        c.backoff_base = Duration::from_secs(3600);
        c.backoff_cap = Duration::from_secs(60);
        let err = c.validate().expect_err("base above cap").to_string();
        assert!(err.starts_with("--backoff-base:"), "{err}");

        let mut c = Config::defaults();
        c.max_request_bytes = c.max_payload_bytes;
        assert!(c.validate().is_err());
    }
}
