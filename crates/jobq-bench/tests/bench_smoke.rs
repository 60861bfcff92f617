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
