//! `jobq-bench`: drives a jobq server over gRPC and prints jobs/s and
//! latency percentiles, beside a plain tonic echo service measured in the
//! same run, so each figure reads as a share of the transport's ceiling.
//!
//! `cargo run --release -p jobq-bench -- --embedded all`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use echo_pb::echo_client::EchoClient;
use echo_pb::echo_server::{Echo, EchoServer};
use echo_pb::{EchoRequest, EchoResponse, EchoStreamRequest, EchoStreamResponse};
use hdrhistogram::Histogram;
use jobq_client::proto::v1::{
    self as pb, stream_leases_request::Kind as RequestKind,
    stream_leases_response::Kind as ResponseKind,
};
use jobq_client::{Client, NewJob};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

mod depth;
mod drain;
mod echo;
mod enqueue;
mod pipeline;
mod report;
mod schedules;
mod steady;
mod tasks;

use depth::depth;
use drain::{drain, drain_stream, open_stream};
use echo::{EchoPart, baseline};
use enqueue::enqueue;
use pipeline::pipeline;
use report::{Report, cpu_since, cpu_time, histogram, record};
use schedules::schedules;
use steady::steady;
use tasks::{Finish, payload, prefill, queue_name, run_tasks};

/// The echo baseline's generated code (`jobq.bench.v1`).
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
mod echo_pb {
    tonic::include_proto!("jobq.bench.v1");
}

/// Load generator for jobq.
#[derive(Debug, Parser)]
#[command(name = "jobq-bench", version)]
struct Args {
    /// The jobq server to drive.
    #[arg(long, env = "JOBQ_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Start a jobq server in this process instead (on a free port).
    #[arg(long)]
    embedded: bool,
    /// Payload bytes per job.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Concurrent producers, consumers or callers.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Jobs (or messages) per measurement.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Queues to spread the load over.
    #[arg(long, default_value_t = 1)]
    queues: usize,
    /// The process id of the server driven with --server: each figure then
    /// also gives the server's CPU time (user + system) per job.
    #[arg(long)]
    server_pid: Option<u32>,
    /// An echo baseline served by another process (`jobq-bench echo-serve`),
    /// so the baseline's server, like jobq's, runs apart from the load
    /// generator. Default: an echo service inside this process.
    #[arg(long)]
    echo_server: Option<String>,
    /// The process id of `--echo-server`: the baseline's figures then also
    /// give its CPU time per call.
    #[arg(long)]
    echo_pid: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enqueue jobs one at a time (awaiting each) through the client, or
    /// in batches.
    Enqueue {
        /// Jobs per BatchEnqueue RPC; 1 enqueues single jobs.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Single jobs as unary Enqueue RPCs, or over the client's shared
        /// StreamEnqueue stream.
        #[arg(long, value_enum, default_value_t = Via::Stream)]
        via: Via,
    },
    /// Lease and ack queued jobs.
    Drain {
        /// Unary Lease + Ack, the StreamLeases stream driven by hand, or the
        /// client's worker runtime with an empty handler.
        #[arg(long, value_enum, default_value_t = Mode::Stream)]
        mode: Mode,
        /// Credits per stream (for the worker: its concurrency).
        #[arg(long, default_value_t = 100)]
        credits: u32,
    },
    /// Producers and stream workers at once; end-to-end latency from the
    /// enqueue call to the worker's receipt.
    Pipeline {
        /// Offered jobs/s over all producers (open loop); 0 for as fast as
        /// they go.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Credits per worker stream.
        #[arg(long, default_value_t = 100)]
        credits: u32,
        /// How producers send: unary Enqueue or the client's stream.
        #[arg(long, value_enum, default_value_t = Via::Stream)]
        via: Via,
        /// The workers' server, when it is another replica on the same
        /// store as --server: every job then crosses from one replica to
        /// the other. Default: --server.
        #[arg(long)]
        worker_server: Option<String>,
        /// Enqueue every job with this delay (ms), and measure from its
        /// due time to its receipt instead.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// The echo baseline alone: unary and bidirectional stream.
    Baseline {
        /// Only this one of its measurements.
        #[arg(long, value_enum)]
        only: Option<EchoPart>,
    },
    /// Serve the echo baseline on `listen` until killed, for
    /// `--echo-server` in another process.
    EchoServe {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50091")]
        listen: String,
    },
    /// Memory for `deep` queued jobs (with --embedded or --server-pid), and stream lease
    /// throughput with `deep` jobs queued against with 1 000.
    Depth {
        /// Jobs queued for the deep case.
        #[arg(long, default_value_t = 1_000_000)]
        deep: usize,
        /// Metadata entries on each deep job (keys `attr-0`, `attr-1`, …,
        /// each with a 16-byte value).
        #[arg(long, default_value_t = 0)]
        metadata: usize,
    },
    /// Against a server with `--data-dir`: holds a queue at `depth` jobs
    /// while `--jobs` jobs are enqueued and acked through it (100 per RPC),
    /// and measures the server's data dir against the journal's bound of
    /// twice the live bytes plus one segment.
    Steady {
        /// Jobs kept queued.
        #[arg(long, default_value_t = 10_000)]
        depth: usize,
        /// The server's data dir (a fresh one), to measure.
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// The server's `--journal-segment-bytes`.
        #[arg(long, default_value_t = 64 << 20)]
        segment_bytes: u64,
    },
    /// Enqueue latency with `idle` schedules held against none, then
    /// `due` schedules that all fire in one second: how long until all are
    /// enqueued, and other producers' enqueue latency meanwhile. The
    /// server must allow `idle + due` schedules (--max-schedules; the
    /// embedded one does).
    Schedules {
        /// Schedules due in the same second.
        #[arg(long, default_value_t = 10_000)]
        due: usize,
        /// Schedules held that do not fire during the run.
        #[arg(long, default_value_t = 90_000)]
        idle: usize,
    },
    /// Every measurement above but `depth` (which wants `--embedded` and a
    /// million jobs of its own) and `steady` (which wants a server on a
    /// data dir), with ratios to the baseline.
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Unary,
    Stream,
    Worker,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Via {
    Unary,
    Stream,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The baseline alone needs no jobq server.
    match &args.command {
        Command::EchoServe { listen } => return echo::serve(listen).await,
        Command::Baseline { only: None } => {
            baseline(&args).await?.print();
            return Ok(());
        }
        Command::Baseline { only: Some(part) } => {
            let channel = echo::connect(&args).await?;
            echo::measure(&args, &channel, *part).await?.print(None);
            return Ok(());
        }
        _ => {}
    }
    let server = if args.embedded {
        embedded_jobq().await?
    } else {
        args.server.clone()
    };
    let client = Client::connect_within(server.clone(), Duration::from_secs(10))
        .await
        .with_context(|| format!("cannot reach jobq at {server}"))?;
    println!(
        "{} jobs of {} bytes, concurrency {}, {} queue(s), server {server}",
        args.jobs, args.payload, args.concurrency, args.queues
    );
    match &args.command {
        Command::Enqueue { batch, via } => enqueue(&args, &client, *batch, *via).await?.print(None),
        Command::Drain { mode, credits } => {
            drain(&args, &client, *mode, *credits).await?.print(None)
        }
        Command::Pipeline {
            rate,
            credits,
            via,
            worker_server,
            delay_ms,
        } => {
            let workers = match worker_server {
                Some(addr) => Client::connect_within(addr.clone(), Duration::from_secs(10))
                    .await
                    .with_context(|| format!("cannot reach the workers' jobq at {addr}"))?,
                None => client.clone(),
            };
            let delay = Duration::from_millis(*delay_ms);
            pipeline(&args, &client, &workers, *rate, *credits, *via, delay)
                .await?
                .print(None)
        }
        Command::Depth { deep, metadata } => depth(&args, &client, *deep, *metadata).await?,
        Command::Steady {
            depth,
            data_dir,
            segment_bytes,
        } => steady(&args, &client, *depth, data_dir, *segment_bytes).await?,
        Command::Schedules { due, idle } => schedules(&args, &client, &server, *due, *idle).await?,
        // Run above, before any jobq server was reached.
        Command::Baseline { .. } | Command::EchoServe { .. } => {}
        Command::All => {
            let echo = baseline(&args).await?;
            echo.print();
            let (echo_unary, echo_stream) = (&echo.unary, &echo.stream);
            let by_unary = enqueue(&args, &client, 1, Via::Unary).await?;
            by_unary.print(Some(echo_unary));
            enqueue(&args, &client, 1, Via::Stream)
                .await?
                .print(Some(&echo.ping_pong));
            enqueue(&args, &client, 100, Via::Unary).await?.print(None);
            drain(&args, &client, Mode::Unary, 1)
                .await?
                .print(Some(echo_unary));
            drain(&args, &client, Mode::Stream, 100)
                .await?
                .print(Some(echo_stream));
            drain(&args, &client, Mode::Worker, args.concurrency as u32)
                .await?
                .print(Some(echo_stream));
            for rate in [5_000, 10_000, 0] {
                for via in [Via::Unary, Via::Stream] {
                    pipeline(&args, &client, &client, rate, 100, via, Duration::ZERO)
                        .await?
                        .print(None);
                }
            }
        }
    }
    Ok(())
}

/// Starts jobq in this process on a free port and returns its address.
pub(crate) async fn embedded_jobq() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = jobq::config::Config::defaults();
    config.queue_capacity = 10_000_000;
    config.memory_budget_bytes = 8 << 30;
    config.max_schedules = 1_000_000;
    let listeners = jobq::server::Listeners {
        grpc: listener,
        metrics: None,
        web: None,
    };
    tokio::spawn(jobq::server::run(config, listeners, std::future::pending()));
    Ok(format!("http://{addr}"))
}
