//! A short run of the load generator, so the tool never rots. The figures
//! are not checked: performance is measured by full runs, not by tests.

// Tests state their expectations with `expect`: a failed one is the
// test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use tokio::process::Command;

#[tokio::test]
async fn load_generator_runs_every_measurement() {
    let output = Command::new(env!("CARGO_BIN_EXE_jobq-bench"))
        .args(["--embedded", "--jobs", "2000", "all"])
        .output()
        .await
        .expect("jobq-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "echo baseline, unary",
        "echo baseline, bidi stream",
        "echo baseline, stream, 1 in flight/caller",
        "enqueue, 1 job per unary RPC",
        "enqueue, 1 job per call, client stream",
        "enqueue, 100 jobs per RPC",
        "drain, unary lease + ack",
        "drain, stream lease + ack, credits 100",
        "pipeline at 5000/s, unary enqueue→receipt",
        "pipeline at 5000/s, stream enqueue→receipt",
        "pipeline at 10000/s, stream enqueue→receipt",
        "pipeline at max, stream enqueue→receipt",
    ] {
        let found = stdout
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line:?} in:\n{stdout}"));
        assert!(found.contains("/s") && found.contains("p99.9"), "{found}");
    }
    // The worker runtime's drain has a rate but no per-job latency.
    let worker = stdout
        .lines()
        .find(|l| l.starts_with("drain, worker runtime, 4 handlers"))
        .unwrap_or_else(|| panic!("no worker drain in:\n{stdout}"));
    assert!(worker.contains("/s"), "{worker}");
}

#[tokio::test]
async fn the_echo_baseline_runs_in_a_process_of_its_own() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut echo = Command::new(env!("CARGO_BIN_EXE_jobq-bench"))
        .args(["echo-serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("echo-serve starts");
    let pid = echo.id().expect("running").to_string();
    let mut lines = BufReader::new(echo.stdout.take().expect("stdout")).lines();
    let first = lines
        .next_line()
        .await
        .expect("read")
        .expect("a first line");
    let addr = first
        .strip_prefix("echo baseline listening on ")
        .unwrap_or_else(|| panic!("{first:?}"));
    let output = Command::new(env!("CARGO_BIN_EXE_jobq-bench"))
        .args([
            "--echo-server",
            &format!("http://{addr}"),
            "--echo-pid",
            &pid,
        ])
        .args(["--jobs", "400", "baseline", "--only", "unary"])
        .output()
        .await
        .expect("jobq-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("echo baseline, unary"))
        .unwrap_or_else(|| panic!("no unary baseline in:\n{stdout}"));
    // The other process's CPU is read, so each call has a cost.
    assert!(line.contains("server CPU"), "{line}");
    assert!(
        !stdout.contains("bidi stream"),
        "--only ran the rest too:\n{stdout}"
    );
}

#[tokio::test]
async fn depth_reports_memory_per_job_with_metadata() {
    let output = Command::new(env!("CARGO_BIN_EXE_jobq-bench"))
        .args(["--embedded", "--jobs", "1000", "depth", "--deep", "5000"])
        .args(["--metadata", "4"])
        .output()
        .await
        .expect("jobq-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let memory = stdout
        .lines()
        .find(|l| l.starts_with("memory: 5000 queued jobs of 128 bytes with 4 metadata entries"))
        .unwrap_or_else(|| panic!("no memory line in:\n{stdout}"));
    // 128 bytes of payload and 4 entries of `attr-N` = 16 bytes.
    assert!(memory.contains("beyond its 216 bytes"), "{memory}");
}
