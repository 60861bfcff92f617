//! The `jobq` binary's operator commands against a real server.

use crate::common::{TestServer, ack, admin, enqueue, job, lease};
use jobq::grpc::pb;
use serde_json::Value;
use tokio::process::Command;

/// Runs `jobq ARGS --server …` and returns (success, stdout, stderr).
async fn jobq(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_jobq"))
        .args(args)
        .env("JOBQ_SERVER", format!("http://{}", server.addr))
        .output()
        .await
        .expect("jobq runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn jobq_json(server: &TestServer, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--output", "json"]);
    let (ok, stdout, stderr) = jobq(server, &args).await;
    assert!(ok, "jobq {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).expect("JSON output")
}

#[tokio::test]
async fn enqueue_then_inspect_the_queue_and_the_job() {
    let server = TestServer::start().await;
    let enqueued = jobq_json(
        &server,
        &[
            "enqueue",
            "emails",
            "--payload",
            "alice@example.com",
            "--metadata",
            "template=welcome",
            "--priority",
            "-2",
            "--idempotency-key",
            "signup-alice",
        ],
    )
    .await;
    let id = enqueued["job_id"].as_str().expect("id").to_string();
    assert_eq!(enqueued["duplicate"], false);
    let again = jobq_json(
        &server,
        &[
            "enqueue",
            "emails",
            "--payload",
            "x",
            "--idempotency-key",
            "signup-alice",
        ],
    )
    .await;
    assert_eq!(again["job_id"], id.as_str());
    assert_eq!(again["duplicate"], true);

    let queues = jobq_json(&server, &["queues"]).await;
    assert_eq!(queues[0]["name"], "emails");
    assert_eq!(queues[0]["counts"]["ready"], 1);

    let stats = jobq_json(&server, &["stats", "emails"]).await;
    assert_eq!(stats["totals"]["enqueued"], 1);
    assert_eq!(stats["settings"]["max_attempts"], 10);

    let shown = jobq_json(&server, &["job", &id]).await;
    assert_eq!(shown["state"], "ready");
    // JSON carries any payload as base64, and says so.
    assert_eq!(shown["payload"], "YWxpY2VAZXhhbXBsZS5jb20=");
    assert_eq!(shown["payload_encoding"], "base64");
    assert_eq!(shown["payload_bytes"], 17);
    assert_eq!(shown["metadata"]["template"], "welcome");
    assert_eq!(shown["priority"], -2);

    // The human forms carry the same facts.
    let (ok, table, _) = jobq(&server, &["jobs", "emails"]).await;
    assert!(ok);
    assert!(table.contains(&id) && table.contains("ready") && table.contains("alice@example.com"));
    let (ok, text, _) = jobq(&server, &["stats", "emails"]).await;
    assert!(ok && text.contains("enqueued (total)"), "{text}");
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let id = enqueue(&mut client, "q", job("poison")).await;
    let leased = lease(&mut client, "q", 1, 0).await.remove(0);
    client
        .nack(pb::NackRequest {
            queue: "q".into(),
            lease_token: leased.lease_token,
            dead_letter: true,
            reason: "cannot parse".into(),
            ..pb::NackRequest::default()
        })
        .await
        .expect("nack");

    let dead = jobq_json(&server, &["jobs", "q", "--state", "dead"]).await;
    assert_eq!(dead.as_array().map(Vec::len), Some(1));
    assert_eq!(dead[0]["id"], id.as_str());
    assert_eq!(dead[0]["last_error"], "cannot parse");
    assert_eq!(dead[0]["failures"][0]["attempt"], 1);

    let redriven = jobq_json(&server, &["dlq", "redrive", "q"]).await;
    assert_eq!(redriven["redriven"], 1);
    let again = lease(&mut client, "q", 1, 0).await;
    assert_eq!(again[0].attempt, 1);
}

#[tokio::test]
async fn pause_resume_and_purge() {
    let server = TestServer::start().await;
    let mut client = server.client();
    enqueue(&mut client, "q", job("a")).await;
    let (ok, text, _) = jobq(&server, &["pause", "q"]).await;
    assert!(ok && text.contains("paused"), "{text}");
    assert!(lease(&mut client, "q", 1, 0).await.is_empty());
    jobq_json(&server, &["resume", "q"]).await;
    enqueue(&mut client, "q", job("b")).await;
    assert_eq!(lease(&mut client, "q", 1, 0).await.len(), 1);
    let purged = jobq_json(&server, &["purge", "q"]).await;
    assert_eq!(purged["purged"], 1);
    let purged = jobq_json(&server, &["purge", "q", "--dead"]).await;
    assert_eq!(purged["purged"], 0);
}

#[tokio::test]
async fn errors_exit_non_zero_with_the_reason() {
    let server = TestServer::start().await;
    let (ok, _, stderr) = jobq(&server, &["stats", "missing"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("NotFound: queue missing does not exist"),
        "{stderr}"
    );
    let (ok, _, stderr) = jobq(&server, &["job", "not-an-id"]).await;
    assert!(!ok);
    assert!(stderr.contains("InvalidArgument: job_id"), "{stderr}");
    let (ok, _, stderr) = jobq(
        &server,
        &["enqueue", "q", "--payload", "x", "--metadata", "novalue"],
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("is not KEY=VALUE"), "{stderr}");
}

#[tokio::test]
async fn a_binary_payload_is_base64_in_json_and_a_hex_preview_in_the_table() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let binary = pb::NewJob {
        payload: bytes::Bytes::from_static(&[0x00, 0x01, 0x1b, 0xff]),
        ..pb::NewJob::default()
    };
    let id = enqueue(&mut client, "blobs", binary).await;
    let shown = jobq_json(&server, &["job", &id]).await;
    assert_eq!(shown["payload"], "AAEb/w==");
    assert_eq!(shown["payload_bytes"], 4);
    let (ok, text, _) = jobq(&server, &["job", &id]).await;
    assert!(ok);
    assert!(text.contains("hex 00011bff (4 bytes)"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "a raw escape reached the terminal"
    );
    let (ok, table, _) = jobq(&server, &["jobs", "blobs"]).await;
    assert!(ok && table.contains("hex 00011bff") && !table.contains('\u{1b}'));
}

#[tokio::test]
async fn a_finished_job_keeps_its_failures_and_payload_size() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let id = enqueue(&mut client, "q", job("ab")).await;
    let first = lease(&mut client, "q", 1, 0).await.remove(0);
    client
        .nack(pb::NackRequest {
            queue: "q".into(),
            lease_token: first.lease_token,
            reason: "smtp 451".into(),
            retry_delay: Some(prost_types::Duration::default()),
            ..pb::NackRequest::default()
        })
        .await
        .expect("nack");
    let second = lease(&mut client, "q", 1, 5).await.remove(0);
    ack(&mut client, "q", vec![second.lease_token])
        .await
        .expect("ack");
    let info = admin(&server)
        .get_job(pb::GetJobRequest {
            queue: "q".into(),
            job_id: id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(info.state(), pb::JobState::Acked);
    assert_eq!(info.payload_bytes, 2);
    assert_eq!(info.failures.len(), 1);
    assert_eq!(info.failures[0].error, "smtp 451");
    let shown = jobq_json(&server, &["job", &id]).await;
    assert_eq!(shown["payload_bytes"], 2);
    assert_eq!(shown["failures"][0]["error"], "smtp 451");
}

/// Runs `jobq ARGS` with `input` on standard input.
async fn jobq_with_input(server: &TestServer, args: &[&str], input: &[u8]) -> Value {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobq"))
        .args(args)
        .args(["--output", "json"])
        .env("JOBQ_SERVER", server.addr.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("jobq runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).await.expect("write");
    drop(stdin);
    let output = child.wait_with_output().await.expect("jobq ends");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

#[tokio::test]
async fn payloads_come_from_files_or_standard_input_and_times_from_not_before() {
    let server = TestServer::start().await;
    let path = std::env::temp_dir().join(format!("jobq-cli-payload-{}", std::process::id()));
    std::fs::write(&path, [0u8, 159, 146, 150]).expect("payload file");
    let from_file = jobq_json(
        &server,
        &[
            "enqueue",
            "q",
            "--payload-file",
            path.to_str().expect("path"),
        ],
    )
    .await;
    let _ = std::fs::remove_file(&path);
    let shown = jobq_json(&server, &["job", from_file["job_id"].as_str().expect("id")]).await;
    assert_eq!(shown["payload"], "AJ+Slg==");
    // The bare host:port of JOBQ_SERVER is enough, and `-` is stdin.
    let from_stdin =
        jobq_with_input(&server, &["enqueue", "q", "--payload-file", "-"], b"piped").await;
    let shown = jobq_json(
        &server,
        &["job", from_stdin["job_id"].as_str().expect("id")],
    )
    .await;
    assert_eq!(shown["payload"], "cGlwZWQ=");
    let tomorrow = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
    let tomorrow = humantime::format_rfc3339_seconds(tomorrow).to_string();
    let later = jobq_json(
        &server,
        &["enqueue", "q", "--payload", "x", "--not-before", &tomorrow],
    )
    .await;
    let shown = jobq_json(&server, &["job", later["job_id"].as_str().expect("id")]).await;
    assert_eq!(shown["state"], "scheduled");
    let (ok, _, stderr) = jobq(&server, &["enqueue", "q"]).await;
    assert!(!ok && stderr.contains("--payload"), "{stderr}");
}

#[tokio::test]
async fn queues_are_updated_and_deleted_and_jobs_cancelled_from_the_cli() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let updated = jobq_json(
        &server,
        &[
            "update-queue",
            "reports",
            "--create",
            "--capacity",
            "50",
            "--max-attempts",
            "3",
            "--lease",
            "2m",
        ],
    )
    .await;
    assert_eq!(updated["settings"]["capacity"], 50);
    assert_eq!(updated["settings"]["max_attempts"], 3);
    let id = enqueue(&mut client, "reports", job("r1")).await;
    enqueue(&mut client, "reports", job("r2")).await;
    let cancelled = jobq_json(&server, &["cancel", &id]).await;
    assert_eq!(cancelled["cancelled"], true);
    let shown = jobq_json(&server, &["job", &id]).await;
    assert_eq!(shown["state"], "cancelled");
    // No terminal here, so no question; the count is named.
    let (ok, text, _) = jobq(&server, &["delete-queue", "reports"]).await;
    assert!(ok, "{text}");
    assert_eq!(text.trim(), "deleted queue reports and its 1 job");
    let (ok, _, stderr) = jobq(&server, &["stats", "reports"]).await;
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");
}

#[tokio::test]
async fn jobs_says_when_more_remain_and_lists_all_with_limit_0() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for n in 0..5 {
        enqueue(&mut client, "q", job(&format!("j{n}"))).await;
    }
    let (ok, stdout, stderr) =
        jobq(&server, &["jobs", "q", "--limit", "3", "--output", "json"]).await;
    assert!(ok);
    let listed: Value = serde_json::from_str(&stdout).expect("JSON stays whole");
    assert_eq!(listed.as_array().expect("list").len(), 3);
    assert!(stderr.contains("first 3 jobs; more remain"), "{stderr}");
    let all = jobq_json(&server, &["jobs", "q", "--limit", "0"]).await;
    assert_eq!(all.as_array().expect("list").len(), 5);
    let (ok, text, _) = jobq(&server, &["purge", "q"]).await;
    assert!(ok);
    assert_eq!(text.trim(), "purged 5 ready jobs from q");
}

#[tokio::test]
async fn the_top_help_lists_the_commands_and_leaves_server_flags_to_serve_help() {
    let help = |args: &'static [&'static str]| async move {
        let output = Command::new(env!("CARGO_BIN_EXE_jobq"))
            .args(args)
            .output()
            .await
            .expect("jobq runs");
        assert!(output.status.success());
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let top = help(&["--help"]).await;
    assert!(top.lines().count() < 45, "{top}");
    assert!(
        top.contains("update-queue") && top.contains("jobq serve --help"),
        "{top}"
    );
    assert!(
        !top.contains("--fsync") && !top.contains("--max-connections"),
        "{top}"
    );
    let serve = help(&["serve", "--help"]).await;
    assert!(
        serve.contains("--data-dir") && serve.contains("--fsync"),
        "{serve}"
    );
}

#[tokio::test]
async fn health_exits_0_while_serving_and_1_when_not() {
    let server = TestServer::start().await;
    let (ok, text, _) = jobq(&server, &["health"]).await;
    assert!(ok && text.trim() == "SERVING", "{text}");
    let (ok, text, _) = jobq(&server, &["health", "--service", "jobq.v1.Admin"]).await;
    assert!(ok && text.trim() == "SERVING", "{text}");
    let (ok, _, stderr) = jobq(&server, &["health", "--service", "nope"]).await;
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_jobq"))
        .args(["health", "--server", "127.0.0.1:1"])
        .output()
        .await
        .expect("jobq runs");
    assert!(!output.status.success());
}
