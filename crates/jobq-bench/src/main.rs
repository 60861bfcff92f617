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
use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::{EchoRequest, EchoResponse, EchoStreamRequest, EchoStreamResponse};
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

/// The echo baseline's generated code (`jobq.bench.v1`).
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
mod echo {
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
    },
    /// The echo baseline alone: unary and bidirectional stream.
    Baseline,
    /// Memory for `deep` queued jobs (with --embedded), and stream lease
    /// throughput with `deep` jobs queued against with 1 000.
    Depth {
        /// Jobs queued for the deep case.
        #[arg(long, default_value_t = 1_000_000)]
        deep: usize,
    },
    /// Everything above, with ratios to the baseline.
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

/// One measurement: how many in how long, and the latencies seen.
struct Report {
    name: String,
    count: usize,
    elapsed: Duration,
    latency: Histogram<u64>,
    /// The server's CPU time over the measurement, when its pid is known.
    server_cpu: Option<Duration>,
}

impl Report {
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, baseline: Option<&Report>) {
        let q = |p: f64| Duration::from_nanos(self.latency.value_at_quantile(p));
        let ratio = baseline
            .map(|b| format!("  {:.2}× {}", self.rate() / b.rate(), b.name))
            .unwrap_or_default();
        let cpu = self
            .server_cpu
            .map(|cpu| {
                let per_job = cpu.as_secs_f64() * 1e6 / self.count.max(1) as f64;
                format!("  server CPU {per_job:.1} µs/job")
            })
            .unwrap_or_default();
        let percentiles = if self.latency.is_empty() {
            format!("{:>71}", "(no per-job latency)")
        } else {
            format!(
                "p50 {:>9.1?}  p90 {:>9.1?}  p99 {:>9.1?}  p99.9 {:>9.1?}",
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999)
            )
        };
        println!(
            "{:<42} {:>10.0}/s  {percentiles}{ratio}{cpu}",
            self.name,
            self.rate(),
        );
    }
}

/// The CPU time (user + system) the process `pid` has used so far, from
/// `/proc/<pid>/stat` in clock ticks of 10 ms.
fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // The command name, in parentheses, may hold spaces: count after it.
    // utime and stime are the 14th and 15th fields, the 12th and 13th
    // after the name.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The server CPU spent since `before` was read.
fn cpu_since(pid: Option<u32>, before: Option<Duration>) -> Option<Duration> {
    Some(cpu_time(pid)?.saturating_sub(before?))
}

// Constant bounds that the crate accepts: this cannot fail.
#[allow(clippy::expect_used)]
fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s in nanoseconds, 3 significant digits.
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record(d.as_nanos().clamp(1_000, 100_000_000_000) as u64);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
        Command::Pipeline { rate, credits, via } => pipeline(&args, &client, *rate, *credits, *via)
            .await?
            .print(None),
        Command::Depth { deep } => depth(&args, &client, *deep).await?,
        Command::Baseline => baseline(&args).await?.print(),
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
                    pipeline(&args, &client, rate, 100, via).await?.print(None);
                }
            }
        }
    }
    Ok(())
}

/// Starts jobq in this process on a free port and returns its address.
async fn embedded_jobq() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = jobq::config::Config::defaults();
    config.queue_capacity = 10_000_000;
    config.memory_budget_bytes = 8 << 30;
    let listeners = jobq::server::Listeners {
        grpc: listener,
        metrics: None,
    };
    tokio::spawn(jobq::server::run(config, listeners, std::future::pending()));
    Ok(format!("http://{addr}"))
}

fn payload(size: usize) -> Bytes {
    Bytes::from(vec![b'x'; size.max(8)])
}

/// Each measurement uses its own queues, so one's leftovers never reach
/// another.
fn queue_name(phase: &str, i: usize, queues: usize) -> String {
    format!("bench-{phase}-{}", i % queues.max(1))
}

/// Counts finished jobs towards `total`; the one that completes it records
/// the time and tells everyone to stop.
struct Finish {
    total: usize,
    done: AtomicUsize,
    stop: CancellationToken,
    at: std::sync::Mutex<Option<Instant>>,
}

impl Finish {
    fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            done: AtomicUsize::new(0),
            stop: CancellationToken::new(),
            at: std::sync::Mutex::new(None),
        })
    }

    /// Claims one more job; false once all are claimed.
    fn claim(&self) -> bool {
        self.done
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                (d < self.total).then_some(d + 1)
            })
            .is_ok_and(|before| {
                if before + 1 == self.total {
                    *self.at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    self.stop.cancel();
                }
                true
            })
    }

    fn finished_at(&self) -> Option<Instant> {
        *self.at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `tasks` copies of `work` (each given its index), merging latencies.
async fn run_tasks<F, Fut>(tasks: usize, work: F) -> anyhow::Result<(Duration, Histogram<u64>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Histogram<u64>>> + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks).map(|i| tokio::spawn(work(i))).collect();
    let mut merged = histogram();
    for handle in handles {
        merged.add(handle.await??).ok();
    }
    Ok((start.elapsed(), merged))
}

async fn enqueue(args: &Args, client: &Client, batch: usize, via: Via) -> anyhow::Result<Report> {
    let batch = batch.max(1);
    let rpcs = args.jobs / batch;
    let per_task = rpcs / args.concurrency.max(1);
    let body = payload(args.payload);
    let queues = args.queues;
    let cpu = cpu_time(args.server_pid);
    let (elapsed, latency) = run_tasks(args.concurrency, |t| {
        let (client, body) = (client.clone(), body.clone());
        async move {
            let mut h = histogram();
            for i in 0..per_task {
                let queue = queue_name(&format!("enqueue{batch}"), t + i, queues);
                let start = Instant::now();
                match (batch, via) {
                    (1, Via::Unary) => {
                        client.enqueue(queue, body.clone()).send_unary().await?;
                    }
                    (1, Via::Stream) => {
                        client.enqueue(queue, body.clone()).send().await?;
                    }
                    _ => {
                        let jobs = (0..batch).map(|_| NewJob::new(body.clone())).collect();
                        client.enqueue_batch(queue, jobs).await?;
                    }
                }
                record(&mut h, start.elapsed());
            }
            Ok(h)
        }
    })
    .await?;
    let name = match (batch, via) {
        (1, Via::Unary) => "enqueue, 1 job per unary RPC".to_string(),
        (1, Via::Stream) => "enqueue, 1 job per call, client stream".to_string(),
        (b, _) => format!("enqueue, {b} jobs per RPC (per RPC)"),
    };
    Ok(Report {
        name,
        count: per_task * args.concurrency * batch,
        elapsed,
        latency,
        server_cpu: cpu_since(args.server_pid, cpu),
    })
}

/// Queues `jobs` jobs in batches of 100, unmeasured.
async fn prefill(args: &Args, client: &Client, phase: &str) -> anyhow::Result<usize> {
    let body = payload(args.payload);
    let batches = args.jobs.div_ceil(100);
    for b in 0..batches {
        let jobs = (0..100).map(|_| NewJob::new(body.clone())).collect();
        client
            .enqueue_batch(queue_name(phase, b, args.queues), jobs)
            .await?;
    }
    Ok(batches * 100)
}

async fn drain(args: &Args, client: &Client, mode: Mode, credits: u32) -> anyhow::Result<Report> {
    let phase = format!("drain-{mode:?}-{credits}");
    let total = prefill(args, client, &phase).await?;
    let finish = Finish::new(total);
    let queues = args.queues;
    let cpu = cpu_time(args.server_pid);
    let start = Instant::now();
    let (ended, latency) = run_tasks(args.concurrency, |t| {
        let (client, finish) = (client.clone(), Arc::clone(&finish));
        let queue = queue_name(&phase, t, queues);
        async move {
            match mode {
                Mode::Unary => drain_unary(client, queue, finish).await,
                Mode::Stream => drain_stream(client, queue, credits, finish).await,
                Mode::Worker => drain_worker(client, queue, credits, finish).await,
            }
        }
    })
    .await?;
    let elapsed = match mode {
        // The workers return once their last acks are applied.
        Mode::Worker => ended,
        Mode::Unary | Mode::Stream => finish.finished_at().unwrap_or_else(Instant::now) - start,
    };
    let name = match mode {
        Mode::Unary => "drain, unary lease + ack".to_string(),
        Mode::Stream => format!("drain, stream lease + ack, credits {credits}"),
        Mode::Worker => format!("drain, worker runtime, {credits} handlers"),
    };
    Ok(Report {
        name,
        count: total,
        elapsed,
        latency,
        server_cpu: cpu_since(args.server_pid, cpu),
    })
}

/// The client's worker runtime with a handler that only counts: each job
/// is leased, handed to a task, and acked on the stream.
async fn drain_worker(
    client: Client,
    queue: String,
    handlers: u32,
    finish: Arc<Finish>,
) -> anyhow::Result<Histogram<u64>> {
    let counter = Arc::clone(&finish);
    let stats = client
        .worker(queue)
        .concurrency(handlers)
        .run(
            move |_job| {
                counter.claim();
                async { Ok(()) }
            },
            finish.stop.clone().cancelled_owned(),
        )
        .await;
    anyhow::ensure!(
        stats.retried + stats.dead_lettered + stats.panicked == 0,
        "worker failures: {stats:?}"
    );
    Ok(histogram())
}

async fn drain_unary(
    client: Client,
    queue: String,
    finish: Arc<Finish>,
) -> anyhow::Result<Histogram<u64>> {
    let mut h = histogram();
    while !finish.stop.is_cancelled() {
        let start = Instant::now();
        let jobs = client.lease(queue.clone(), 1, None, Duration::ZERO).await?;
        let Some(job) = jobs.into_iter().next() else {
            break; // this queue is empty
        };
        client.ack(queue.clone(), vec![job.lease_token]).await?;
        record(&mut h, start.elapsed());
        if !finish.claim() {
            break;
        }
    }
    Ok(h)
}

/// Opens a lease stream; returns its sender and receiver.
async fn open_stream(
    client: &Client,
    queue: String,
    credits: u32,
) -> anyhow::Result<(
    mpsc::Sender<pb::StreamLeasesRequest>,
    tonic::Streaming<pb::StreamLeasesResponse>,
)> {
    let (tx, rx) = mpsc::channel(credits as usize * 2 + 16);
    tx.send(pb::StreamLeasesRequest {
        kind: Some(RequestKind::Open(pb::StreamOpen {
            queue,
            credits,
            lease_duration: None,
        })),
    })
    .await?;
    let inbound = client
        .raw()
        .stream_leases(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, inbound))
}

async fn drain_stream(
    client: Client,
    queue: String,
    credits: u32,
    finish: Arc<Finish>,
) -> anyhow::Result<Histogram<u64>> {
    let mut h = histogram();
    let (tx, mut inbound) = open_stream(&client, queue, credits).await?;
    let mut sent = std::collections::HashMap::new();
    let mut next = 0u64;
    loop {
        let message = tokio::select! {
            () = finish.stop.cancelled() => break,
            message = inbound.message() => message?,
        };
        let Some(kind) = message.and_then(|m| m.kind) else {
            break;
        };
        match kind {
            ResponseKind::Lease(lease) => {
                next += 1;
                sent.insert(next, Instant::now());
                tx.send(pb::StreamLeasesRequest {
                    kind: Some(RequestKind::Ack(pb::StreamAck {
                        request_id: next,
                        lease_token: lease.lease_token,
                    })),
                })
                .await?;
            }
            ResponseKind::Result(result) => {
                anyhow::ensure!(result.code == 0, "ack refused: {}", result.message);
                if let Some(at) = sent.remove(&result.request_id) {
                    record(&mut h, at.elapsed());
                }
                if !finish.claim() {
                    break;
                }
            }
        }
    }
    Ok(h)
}

async fn pipeline(
    args: &Args,
    client: &Client,
    rate: u64,
    credits: u32,
    via: Via,
) -> anyhow::Result<Report> {
    let phase = format!("pipeline-{rate}-{via:?}");
    let producers = args.concurrency;
    let per_producer = args.jobs / producers.max(1);
    let total = per_producer * producers;
    let epoch = Instant::now();
    let finish = Finish::new(total);
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<Duration>();
    // Workers: one stream per queue and concurrency slot, acking as they go.
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let queue = queue_name(&phase, w, args.queues);
        let (tx, mut inbound) = open_stream(client, queue, credits).await?;
        let (finish, lat_tx) = (Arc::clone(&finish), lat_tx.clone());
        workers.push(tokio::spawn(async move {
            let mut id = 0;
            loop {
                let message = tokio::select! {
                    () = finish.stop.cancelled() => break,
                    message = inbound.message() => message,
                };
                let Ok(Some(message)) = message else {
                    break;
                };
                if let Some(ResponseKind::Lease(lease)) = message.kind {
                    let payload = lease.job.map(|j| j.payload).unwrap_or_default();
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&payload[..8]);
                    let sent = Duration::from_nanos(u64::from_le_bytes(sent));
                    let _ = lat_tx.send(epoch.elapsed().saturating_sub(sent));
                    finish.claim();
                    id += 1;
                    let ack = RequestKind::Ack(pb::StreamAck {
                        request_id: id,
                        lease_token: lease.lease_token,
                    });
                    if tx
                        .send(pb::StreamLeasesRequest { kind: Some(ack) })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }));
    }
    drop(lat_tx);
    // Producers: open loop at the offered rate, or closed loop at max.
    let size = args.payload.max(8);
    let cpu = cpu_time(args.server_pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let client = client.clone();
        let queues = args.queues;
        let phase = phase.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticker = (rate > 0).then(|| {
                let period = Duration::from_secs_f64(producers as f64 / rate as f64);
                let mut t = tokio::time::interval(period);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            let mut sends = tokio::task::JoinSet::new();
            for i in 0..per_producer {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let mut body = vec![b'x'; size];
                body[..8].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
                let builder = client.enqueue(queue_name(&phase, p + i, queues), body);
                let send = async move {
                    match via {
                        Via::Unary => builder.send_unary().await,
                        Via::Stream => builder.send().await,
                    }
                };
                if rate > 0 {
                    // Open loop: do not wait for the answer before the next.
                    sends.spawn(send);
                } else {
                    send.await?;
                }
            }
            while let Some(sent) = sends.join_next().await {
                sent??;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    for worker in workers {
        worker.await?;
    }
    let elapsed = finish.finished_at().unwrap_or_else(Instant::now) - start;
    let mut latency = histogram();
    while let Some(d) = lat_rx.recv().await {
        record(&mut latency, d);
    }
    let via = match via {
        Via::Unary => "unary",
        Via::Stream => "stream",
    };
    let name = match rate {
        0 => format!("pipeline at max, {via} enqueue→receipt"),
        r => format!("pipeline at {r}/s, {via} enqueue→receipt"),
    };
    Ok(Report {
        name,
        count: finish.done.load(Ordering::Relaxed),
        elapsed,
        latency,
        server_cpu: cpu_since(args.server_pid, cpu),
    })
}

/// This process's resident memory in bytes (Linux), for `--embedded` runs.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Fills `queue` with `jobs` jobs, 1 000 per RPC.
async fn fill(args: &Args, client: &Client, queue: &str, jobs: usize) -> anyhow::Result<()> {
    let body = payload(args.payload);
    for _ in 0..jobs.div_ceil(1000) {
        let batch = (0..1000).map(|_| NewJob::new(body.clone())).collect();
        client.enqueue_batch(queue.to_string(), batch).await?;
    }
    Ok(())
}

/// Drains `jobs` jobs from `queue` over `concurrency` streams.
async fn drain_from(
    args: &Args,
    client: &Client,
    queue: &str,
    jobs: usize,
) -> anyhow::Result<Report> {
    let finish = Finish::new(jobs);
    let start = Instant::now();
    let (_, latency) = run_tasks(args.concurrency, |_| {
        let (client, finish, queue) = (client.clone(), Arc::clone(&finish), queue.to_string());
        async move { drain_stream(client, queue, 100, finish).await }
    })
    .await?;
    Ok(Report {
        name: format!("stream drain of {jobs}"),
        count: jobs,
        elapsed: finish.finished_at().unwrap_or_else(Instant::now) - start,
        latency,
        server_cpu: None,
    })
}

async fn depth(args: &Args, client: &Client, deep: usize) -> anyhow::Result<()> {
    let measured = args.jobs;
    let before = resident_bytes();
    fill(args, client, "bench-depth-deep", deep).await?;
    let after = resident_bytes();
    if let (true, Some(before), Some(after)) = (args.embedded, before, after) {
        println!(
            "memory: {deep} queued jobs of {} bytes take {:.0} MiB resident ({:.0} bytes a job)",
            args.payload,
            (after.saturating_sub(before)) as f64 / (1 << 20) as f64,
            (after.saturating_sub(before)) as f64 / deep as f64
        );
    }
    fill(args, client, "bench-depth-deep", measured).await?;
    let deep_report = drain_from(args, client, "bench-depth-deep", measured).await?;
    fill(args, client, "bench-depth-shallow", 1_000 + measured).await?;
    let shallow = drain_from(args, client, "bench-depth-shallow", measured).await?;
    let mut deep_report = deep_report;
    deep_report.name = format!("lease + ack, {deep} queued");
    let mut shallow = shallow;
    shallow.name = "lease + ack, 1000 queued".into();
    shallow.print(None);
    deep_report.print(Some(&shallow));
    Ok(())
}

/// The least a tonic service can do.
struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(
        &self,
        request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoResponse>, tonic::Status> {
        Ok(tonic::Response::new(EchoResponse {
            payload: request.into_inner().payload,
        }))
    }

    type EchoStreamStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<EchoStreamResponse, tonic::Status>> + Send>,
    >;

    async fn echo_stream(
        &self,
        request: tonic::Request<tonic::Streaming<EchoStreamRequest>>,
    ) -> Result<tonic::Response<Self::EchoStreamStream>, tonic::Status> {
        let out = request
            .into_inner()
            .map(|m| m.map(|m| EchoStreamResponse { payload: m.payload }));
        Ok(tonic::Response::new(Box::pin(out)))
    }
}

/// The transport's ceilings, measured on a plain tonic echo service.
struct Baseline {
    /// Unary calls, one in flight per caller.
    unary: Report,
    /// A bidirectional stream per caller, sent into without waiting.
    stream: Report,
    /// A bidirectional stream per caller, one message in flight.
    ping_pong: Report,
}

impl Baseline {
    fn print(&self) {
        self.unary.print(None);
        self.stream.print(None);
        self.ping_pong.print(None);
    }
}

async fn baseline(args: &Args) -> anyhow::Result<Baseline> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(EchoService))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            ),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let body = payload(args.payload);
    let per_task = args.jobs / args.concurrency.max(1);
    let (elapsed, latency) = run_tasks(args.concurrency, |_| {
        let (mut echo, body) = (EchoClient::new(channel.clone()), body.clone());
        async move {
            let mut h = histogram();
            for _ in 0..per_task {
                let start = Instant::now();
                echo.echo(EchoRequest {
                    payload: body.clone(),
                })
                .await?;
                record(&mut h, start.elapsed());
            }
            Ok(h)
        }
    })
    .await?;
    let unary = Report {
        name: "echo baseline, unary".into(),
        count: per_task * args.concurrency,
        elapsed,
        latency,
        server_cpu: None,
    };
    let (elapsed, latency) = run_tasks(args.concurrency, |_| {
        let (mut echo, body) = (EchoClient::new(channel.clone()), body.clone());
        async move {
            let mut h = histogram();
            let (tx, rx) = mpsc::channel(256);
            let mut replies = echo
                .echo_stream(ReceiverStream::new(rx))
                .await?
                .into_inner();
            let sender = tokio::spawn(async move {
                for _ in 0..per_task {
                    let message = EchoStreamRequest {
                        payload: body.clone(),
                    };
                    if tx.send(message).await.is_err() {
                        break;
                    }
                }
            });
            let start = Instant::now();
            let mut got = 0;
            while got < per_task {
                if replies.message().await?.is_none() {
                    break;
                }
                got += 1;
            }
            sender.await?;
            record(&mut h, start.elapsed() / per_task.max(1) as u32);
            Ok(h)
        }
    })
    .await?;
    let stream = Report {
        name: "echo baseline, bidi stream".into(),
        count: per_task * args.concurrency,
        elapsed,
        latency,
        server_cpu: None,
    };
    // One message in flight per caller, as when each caller awaits its
    // answer before sending again: the round trip bounds the rate.
    let (elapsed, latency) = run_tasks(args.concurrency, |_| {
        let (mut echo, body) = (EchoClient::new(channel.clone()), body.clone());
        async move {
            let mut h = histogram();
            let (tx, rx) = mpsc::channel(1);
            let mut replies = echo
                .echo_stream(ReceiverStream::new(rx))
                .await?
                .into_inner();
            for _ in 0..per_task {
                let start = Instant::now();
                tx.send(EchoStreamRequest {
                    payload: body.clone(),
                })
                .await?;
                anyhow::ensure!(replies.message().await?.is_some(), "echo stream ended");
                record(&mut h, start.elapsed());
            }
            Ok(h)
        }
    })
    .await?;
    let ping_pong = Report {
        name: "echo baseline, stream, 1 in flight/caller".into(),
        count: per_task * args.concurrency,
        elapsed,
        latency,
        server_cpu: None,
    };
    Ok(Baseline {
        unary,
        stream,
        ping_pong,
    })
}
