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
async fn start(extra_env: &[(&str, &str)]) -> (Child, String, tokio::sync::mpsc::Receiver<String>) {
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
            "ulimit -n 64 && exec {} --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --log-format json",
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
