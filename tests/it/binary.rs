//! The `jobq` binary as deployed: JSON logs with trace ids, a collector that
//! cannot be reached, SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use jobq_client::Client;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(20);

/// Starts the binary on free ports and returns it with its gRPC address and
/// its log lines.
pub(crate) async fn start(
    extra_env: &[(&str, &str)],
) -> (Child, String, tokio::sync::mpsc::Receiver<String>) {
    start_on("127.0.0.1:0", extra_env).await.0
}

/// As [`start`], listening on `listen`; also returns the lines logged
/// before "jobq serving".
async fn start_on(
    listen: &str,
    extra_env: &[(&str, &str)],
) -> (
    (Child, String, tokio::sync::mpsc::Receiver<String>),
    Vec<String>,
) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobq"));
    command
        .args([
            "--listen",
            listen,
            "--metrics-listen",
            "127.0.0.1:0",
            "--web-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "info,jobq=debug")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("jobq starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines_tx.send(line).await.is_err() {
                break;
            }
        }
    });
    let mut lines = lines;
    let mut before = Vec::new();
    let addr = loop {
        let line = tokio::time::timeout(PATIENCE, lines.recv())
            .await
            .expect("jobq logs its address")
            .expect("jobq running");
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if json["fields"]["message"] == "jobq serving" {
            break json["fields"]["addr"].as_str().expect("addr").to_string();
        }
        before.push(line);
    };
    ((child, addr, lines), before)
}

#[tokio::test]
async fn listens_on_a_host_name_takes_host_port_addresses_and_logs_its_version_and_auth() {
    let ((child, addr, _), before) = start_on("localhost:0", &[]).await;
    let listening = before
        .iter()
        .find(|l| l.contains("jobq listening"))
        .unwrap_or_else(|| panic!("no start-up line in {before:#?}"));
    let json: serde_json::Value = serde_json::from_str(listening).expect("JSON");
    assert_eq!(json["fields"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["fields"]["auth"], false);
    // A bare host:port, no scheme.
    let port = addr.rsplit_once(':').expect("port").1;
    let client = Client::connect_within(format!("localhost:{port}"), PATIENCE)
        .await
        .expect("host:port reaches the server");
    client
        .enqueue("q", bytes::Bytes::from_static(b"x"))
        .send_unary()
        .await
        .expect("served");
    drop(child);
}

#[tokio::test]
async fn warns_loudly_when_reachable_from_other_machines_without_auth() {
    let ((child, _, _), before) = start_on("0.0.0.0:0", &[]).await;
    let warning = before
        .iter()
        .find(|l| l.contains("AUTHENTICATION IS OFF"))
        .unwrap_or_else(|| panic!("no warning in {before:#?}"));
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    drop(child);

    // With tokens and no TLS, the warning is about clear text instead.
    let ((child, _, _), before) = start_on(
        "0.0.0.0:0",
        &[("JOBQ_AUTH_TOKENS", "admin:0123456789abcdef")],
    )
    .await;
    assert!(!before.iter().any(|l| l.contains("AUTHENTICATION IS OFF")));
    assert!(
        before.iter().any(|l| l.contains("clear text")),
        "{before:#?}"
    );
    // The token itself is never logged.
    assert!(!before.iter().any(|l| l.contains("0123456789abcdef")));
    drop(child);

    // On loopback, no warning.
    let ((child, _, _), before) = start_on("127.0.0.1:0", &[]).await;
    assert!(
        !before.iter().any(|l| l.contains("AUTHENTICATION")),
        "{before:#?}"
    );
    drop(child);
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test]
async fn runs_with_an_unreachable_collector_logs_trace_ids_and_exits_0_on_sigterm() {
    // Nothing listens on port 9 (discard) here: export fails, serving must not.
    let (mut child, addr, mut lines) =
        start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")]).await;
    let client = Client::connect(format!("http://{addr}"))
        .await
        .expect("connect");

    // A producer's trace context in the request metadata.
    let mut raw = client.raw();
    let mut request = tonic::Request::new(jobq::grpc::pb::EnqueueRequest {
        queue: "q".into(),
        job: Some(jobq::grpc::pb::NewJob {
            payload: b"x".to_vec().into(),
            ..Default::default()
        }),
        wait_for_room: false,
    });
    request.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .expect("ascii"),
    );
    raw.enqueue(request).await.expect("enqueue served");
    let job = client
        .lease("q", 1, None, Duration::from_secs(5))
        .await
        .expect("lease")
        .remove(0);
    // The worker receives the producer's trace context with the job.
    assert_eq!(
        job.metadata.get("traceparent").map(String::as_str),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    client.ack("q", vec![job.lease_token]).await.expect("ack");

    // The enqueue's log line carries its trace id: the producer's trace.
    let traced = loop {
        let line = tokio::time::timeout(PATIENCE, lines.recv())
            .await
            .expect("a log line for the enqueue")
            .expect("jobq running");
        if line.contains("\"enqueued\"") {
            break line;
        }
    };
    let json: serde_json::Value = serde_json::from_str(&traced).expect("JSON");
    assert_eq!(json["span"]["rpc.method"], "Enqueue", "{traced}");
    assert_eq!(
        json["span"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{traced}"
    );

    sigterm(&child);
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits within the grace")
        .expect("status");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_second_sigterm_during_the_grace_period_exits_at_once() {
    let (mut child, addr, mut lines) = start(&[("JOBQ_SHUTDOWN_GRACE", "60s")]).await;
    // A call that never finishes: half a request body, so the grace period
    // would wait for it the whole minute.
    let mut stalled = crate::common::raw::RawCall::start(
        addr.parse().expect("addr"),
        "/jobq.v1.JobQueue/Enqueue",
    )
    .await;
    stalled.send(bytes::Bytes::from_static(&[0, 0, 0, 0, 100, 0x0a]));
    // Answered on the same connection: so the server has begun the
    // stalled call before the signal.
    let mut probe = stalled.sibling("/grpc.health.v1.Health/Check").await;
    probe.send(crate::common::raw::grpc_frame(
        &tonic_health::pb::HealthCheckRequest::default(),
    ));
    assert!(matches!(
        probe.finish().await,
        crate::common::raw::Ending::Status(tonic::Code::Ok, _)
    ));
    sigterm(&child);
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.recv().await {
            if line.contains("shutting down") {
                return;
            }
        }
    })
    .await
    .expect("the first signal starts the shutdown");
    sigterm(&child);
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("a second signal exits well before the 60 s grace")
        .expect("exit status");
    assert_eq!(status.code(), Some(130), "{status:?}");
    let mut said = false;
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(1), lines.recv()).await {
        said |= line.contains("second stop signal");
    }
    assert!(said, "the exit is logged");
    drop(stalled);
}

/// CPU time (user + system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which is in parentheses.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

#[tokio::test]
async fn out_of_descriptors_the_server_backs_off_says_so_and_recovers() {
    // A descriptor limit low enough to reach with a few dozen sockets.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {} --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --web-listen 127.0.0.1:0 --log-format json",
            env!("CARGO_BIN_EXE_jobq")
        ))
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("jobq starts");
    let pid = child.id().expect("pid");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(4096);
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines_tx.send(line).await.is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = tokio::time::timeout(PATIENCE, lines.recv())
            .await
            .expect("jobq logs")
            .expect("running");
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        if json["fields"]["message"] == "jobq serving" {
            break json["fields"]["addr"].as_str().expect("addr").to_string();
        }
    };
    let client = Client::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    client
        .enqueue("q", bytes::Bytes::from_static(b"x"))
        .send_unary()
        .await
        .expect("served");
    // Use up the server's descriptors: it accepts until it cannot.
    let mut hogs = Vec::new();
    for _ in 0..80 {
        hogs.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("the kernel queues it"),
        );
    }
    let warned = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.recv().await {
            if line.contains("accepting a connection failed") {
                return line;
            }
        }
        panic!("jobq exited");
    })
    .await
    .expect("the failure is logged");
    assert!(warned.contains("WARN"), "{warned}");
    // It backs off rather than spin: over two seconds out of descriptors,
    // far less than a core's worth of CPU.
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_seconds(pid) - before;
    assert!(
        used < 1.0,
        "{used} s of CPU in 2 s while out of descriptors"
    );
    // The connection it already had is still served.
    client
        .enqueue("q", bytes::Bytes::from_static(b"y"))
        .send_unary()
        .await
        .expect("still served");
    // And once descriptors are free again, new clients get in.
    drop(hogs);
    let fresh = Client::connect_within(format!("http://{addr}"), PATIENCE)
        .await
        .expect("a new client connects once descriptors are free");
    fresh
        .enqueue("q", bytes::Bytes::from_static(b"z"))
        .send_unary()
        .await
        .expect("served");
    drop(child);
}

/// The process's peak resident memory (VmHWM), in bytes, from /proc.
fn peak_resident(pid: u32) -> u64 {
    resident_field(pid, "VmHWM:")
}

fn resident_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .expect("field");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("kB");
    kib * 1024
}

/// Each way a client can make the server hold memory, driven to its limit
/// on a server of its own with a 64 MiB budget: the peak resident size
/// stays within the budget plus the unfinished-request limit plus what the
/// server started with, and a margin for the allocator (a quarter of the
/// budget).
#[tokio::test]
async fn resident_memory_stays_within_the_budget_whatever_clients_send() {
    for path in [
        Holding::EmptyJobs,
        Holding::Metadata,
        Holding::Keys,
        Holding::Failures,
        Holding::StalledBodies,
    ] {
        let (started, peak) = drive_to_the_limit(path).await;
        let bound = started + BUDGET + PENDING + BUDGET / 4;
        eprintln!(
            "{path:?}: started at {} MiB, peak {} MiB, bound {} MiB",
            started / MIB,
            peak / MIB,
            bound / MIB
        );
        assert!(peak <= bound, "{path:?}: peak resident {peak} over {bound}");
    }
}

const MIB: u64 = 1 << 20;
const BUDGET: u64 = 64 * MIB;
const PENDING: u64 = 16 * MIB;

/// A way to make the server hold memory.
#[derive(Clone, Copy, Debug)]
enum Holding {
    /// Jobs with nothing in them: only their fixed cost.
    EmptyJobs,
    /// Jobs with the most metadata, acked: their finished records keep none.
    Metadata,
    /// Jobs with the longest idempotency keys, acked: the keys stay for
    /// their window.
    Keys,
    /// Jobs nacked again and again with the longest reasons.
    Failures,
    /// Request messages begun and never finished, on many connections.
    StalledBodies,
}

/// Starts a server, drives `path` to its limit, and returns the server's
/// resident size at start and its peak.
async fn drive_to_the_limit(path: Holding) -> (u64, u64) {
    use jobq::grpc::pb;
    use jobq::grpc::pb::job_queue_client::JobQueueClient;
    let (mut child, addr, mut lines) = start(&[
        ("JOBQ_MEMORY_BUDGET_BYTES", &BUDGET.to_string()),
        ("JOBQ_MAX_PENDING_REQUEST_BYTES", &PENDING.to_string()),
        ("JOBQ_QUEUE_CAPACITY", "1000000"),
        ("JOBQ_IDEMPOTENCY_MAX_KEYS", "1000000"),
        ("JOBQ_FINISHED_MAX", "1000000"),
        ("JOBQ_MAX_ATTEMPTS", "1000"),
        ("JOBQ_REQUEST_STALL_TIMEOUT", "60s"),
        // One malloc arena: glibc's default of one per thread may keep
        // memory one thread freed for that thread alone, so a budget's
        // worth freed by acks on one thread and taken again by enqueues on
        // another would be resident twice (the README says so).
        ("MALLOC_ARENA_MAX", "1"),
    ])
    .await;
    // Its log read on, so a full pipe never holds the server up.
    tokio::spawn(async move { while lines.recv().await.is_some() {} });
    let pid = child.id().expect("pid");
    let started = resident_field(pid, "VmRSS:");
    let mut jobs = JobQueueClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let mut stalled = Vec::new();
    match path {
        Holding::EmptyJobs => {
            let stored = fill(&mut jobs, "empty", |_| pb::NewJob::default(), 1000).await;
            assert!(stored > 100_000, "{stored} empty jobs");
        }
        Holding::Metadata => {
            let value = "v".repeat(4096);
            let heavy = pb::NewJob {
                metadata: (0..64)
                    .map(|i| (format!("k{i:0>250}"), value.clone()))
                    .collect(),
                ..pb::NewJob::default()
            };
            let stored = fill(&mut jobs, "heavy", |_| heavy.clone(), 1).await;
            assert!(stored > 200, "{stored} heavy jobs");
            drain(&mut jobs, "heavy", usize::MAX, None).await;
            // Their records hold no metadata: the budget has room again.
            let again = fill(&mut jobs, "heavy", |_| heavy.clone(), 1).await;
            assert!(again > 200, "{again} heavy jobs after the acks");
        }
        Holding::Keys => {
            let keyed = |n: u64| pb::NewJob {
                idempotency_key: format!("{n:0>256}"),
                ..pb::NewJob::default()
            };
            let mut keys = 0u64;
            loop {
                let request = pb::BatchEnqueueRequest {
                    queue: "keys".into(),
                    jobs: (keys..keys + 1000).map(keyed).collect(),
                    wait_for_room: false,
                };
                match jobs.batch_enqueue(request).await {
                    Ok(_) => keys += 1000,
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => break,
                    Err(status) => panic!("{status}"),
                }
                drain(&mut jobs, "keys", usize::MAX, None).await;
            }
            assert!(keys > 20_000, "{keys} keys");
        }
        Holding::Failures => {
            // 600 jobs failing 16 times with 4 KiB reasons: 79 MB of text
            // offered, more than the budget.
            fill(&mut jobs, "failing", |_| pb::NewJob::default(), 600).await;
            let reason = "r".repeat(4096);
            drain(&mut jobs, "failing", 16 * 600, Some(&reason)).await;
        }
        Holding::StalledBodies => {
            for _ in 0..8 {
                let mut call = crate::common::raw::RawCall::start(
                    addr.parse().expect("addr"),
                    "/jobq.v1.JobQueue/Enqueue",
                )
                .await;
                let mut part = vec![0u8, 0, 0x3f, 0xff, 0xff];
                part.resize(5 + 3 * MIB as usize, 0x0a);
                call.body.reserve_capacity(part.len());
                call.send(part.into());
                stalled.push(call);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let peak = peak_resident(pid);
    drop(stalled);
    let _ = child.start_kill();
    (started, peak)
}

/// Enqueues `job(n)` for n = 0, 1, ... into `queue`, `batch` at a time,
/// until the budget refuses; returns how many were stored.
async fn fill(
    jobs: &mut jobq::grpc::pb::job_queue_client::JobQueueClient<tonic::transport::Channel>,
    queue: &str,
    job: impl Fn(u64) -> jobq::grpc::pb::NewJob,
    batch: u64,
) -> u64 {
    let mut stored = 0u64;
    loop {
        let request = jobq::grpc::pb::BatchEnqueueRequest {
            queue: queue.into(),
            jobs: (stored..stored + batch).map(&job).collect(),
            wait_for_room: false,
        };
        match jobs.batch_enqueue(request).await {
            Ok(_) => stored += batch,
            Err(status) if status.code() == tonic::Code::ResourceExhausted => return stored,
            Err(status) => panic!("{status}"),
        }
    }
}

/// Leases jobs of `queue` until it has none ready or `max` were leased,
/// and acks them, or nacks each with `reason` for a retry at once.
async fn drain(
    jobs: &mut jobq::grpc::pb::job_queue_client::JobQueueClient<tonic::transport::Channel>,
    queue: &str,
    max: usize,
    reason: Option<&str>,
) {
    use jobq::grpc::pb;
    let mut leased = 0;
    while leased < max {
        let leases = jobs
            .lease(pb::LeaseRequest {
                queue: queue.into(),
                // Ten of the heaviest jobs fit in the client's 4 MiB.
                max_jobs: if queue == "heavy" { 10 } else { 100 },
                wait_time: Some(prost_types::Duration::default()),
                ..pb::LeaseRequest::default()
            })
            .await
            .expect("lease")
            .into_inner()
            .leases;
        if leases.is_empty() {
            return;
        }
        leased += leases.len();
        let Some(reason) = reason else {
            jobs.ack(pb::AckRequest {
                queue: queue.into(),
                lease_tokens: leases.into_iter().map(|l| l.lease_token).collect(),
            })
            .await
            .expect("ack");
            continue;
        };
        for lease in leases {
            jobs.nack(pb::NackRequest {
                queue: queue.into(),
                lease_token: lease.lease_token,
                retry_delay: Some(prost_types::Duration::default()),
                reason: reason.into(),
                ..pb::NackRequest::default()
            })
            .await
            .expect("nack");
        }
    }
}
