//! jobq: a job queue served over gRPC.
//!
//! Layout, from the inside out (each layer only uses the ones before it):
//! - [`queue`]: the pure queue core. One queue's jobs and every state change,
//!   with time passed in. No tasks, no locks, no network.
//! - [`schedule`]: the pure core of recurring jobs: cron expressions and
//!   intervals in a time zone, misfire and overlap rules, every schedule
//!   by due time. Time passed in, as for queues.
//! - [`engine`]: the seam every service stands on: async, fallible traits
//!   for producing, consuming and operating queues and for schedules, and
//!   [`MemoryEngine`](engine::MemoryEngine), the in-memory implementation
//!   (every queue behind its own lock, one deadline timer per queue,
//!   long-poll wake-ups, the server-wide memory budget, one timer firing
//!   every schedule), which with a data
//!   dir writes every change to the [`journal`](engine::journal).
//! - [`grpc`]: the `jobq.v1.JobQueue`, `jobq.v1.Admin` and `jobq.v1.Schedules`
//!   services.
//!   Validates requests, converts protobuf to core types and back, and maps
//!   errors to gRPC statuses.
//! - [`web`]: the web dashboard, on its own port: pages over the engine
//!   interface, sessions, CSRF tokens, embedded assets.
//! - [`server`]: binds it all together with health and reflection services
//!   and serves until shut down.
//! - [`config`]: command-line flags and `JOBQ_*` variables.
//! - [`metrics`]: Prometheus metrics of the queues and RPCs.
//! - [`telemetry`]: logs, OTLP trace export and trace-context propagation.

pub mod auth;
pub mod config;
pub mod engine;
pub mod grpc;
pub mod metrics;
pub mod queue;
pub mod schedule;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod web;
