//! The Python examples in `examples/python/` (grpcio only, code generated
//! from `proto/` at run time) against a real server: the email producer and
//! worker, and the hourly report's schedule and worker.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{TestServer, eventually_async};
use tokio::process::Command;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python");

/// Held by each test while it runs Python: the examples generate their
/// code into one folder, which two at once would write over each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A Python with the example's requirements: a virtual environment made
/// once under the target folder, from PyPI.
async fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-example-venv");
    let python = venv.join("bin").join("python");
    let ready = python.exists()
        && run(Command::new(&python).args(["-c", "import grpc, grpc_tools"]))
            .await
            .status
            .success();
    if !ready {
        check(
            "python3 -m venv",
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv)).await,
        );
        check(
            "pip install -r examples/python/requirements.txt",
            run(Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(Path::new(EXAMPLE).join("requirements.txt")))
            .await,
        );
    }
    python
}

async fn run(command: &mut Command) -> Output {
    command.output().await.expect("the command starts")
}

fn check(what: &str, output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn python_producer_and_worker_process_every_job() {
    let _one = ONE_AT_A_TIME.lock().await;
    let python = python().await;
    let server = TestServer::start().await;
    let addr = server.addr.to_string();

    let produced = check(
        "producer.py",
        run(Command::new(&python).current_dir(EXAMPLE).args([
            "producer.py",
            "--server",
            &addr,
            "--queue",
            "py",
            "--count",
            "25",
        ]))
        .await,
    );
    assert!(produced.contains("enqueued 25 jobs"), "{produced}");

    let worked = check(
        "worker.py",
        run(Command::new(&python).current_dir(EXAMPLE).args([
            "worker.py",
            "--server",
            &addr,
            "--queue",
            "py",
            "--expect",
            "25",
        ]))
        .await,
    );
    // 25 jobs: one to mallory@ (refused, dead-lettered at once), the rest
    // acked, some after a retry with the queue's backoff.
    let summary = worked.lines().last().unwrap_or_default();
    assert!(summary.starts_with("acked 24 jobs, retried "), "{worked}");
    assert!(summary.ends_with("dead-lettered 1"), "{worked}");
    let retried: u32 = summary
        .split("retried ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .expect("a retry count");
    assert!(retried > 0, "{worked}");
    assert!(
        worked.contains("(attempt 2)"),
        "a retried job came back as attempt 2: {worked}"
    );
    // The trace context the producer set by hand reached the worker.
    let trace = produced
        .lines()
        .next()
        .and_then(|line| line.rsplit(' ').next())
        .expect("the producer printed a trace id");
    assert_eq!(trace.len(), 32, "{produced}");
    assert!(
        worked.contains(&format!(
            "sending welcome email to user0@example.com (attempt 1) in trace {trace}"
        )),
        "{worked}"
    );

    eventually_async("every Python job acked or dead", async || {
        server
            .counts("py")
            .await
            .is_some_and(|c| c.leased == 0 && c.ready == 0 && c.scheduled == 0 && c.dead == 1)
    })
    .await;
}

#[tokio::test]
async fn the_python_hourly_report_schedules_and_builds_one_report_per_fire_time() {
    let _one = ONE_AT_A_TIME.lock().await;
    let python = python().await;
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let scheduled = check(
        "hourly_report.py schedule",
        run(Command::new(&python).current_dir(EXAMPLE).args([
            "hourly_report.py",
            "schedule",
            "--server",
            &addr,
            "--queue",
            "py-reports",
            // Every second, so the test need not wait an hour.
            "--cron",
            "* * * * * *",
        ]))
        .await,
    );
    assert!(
        scheduled.starts_with("schedule hourly-report created; next fire "),
        "{scheduled}"
    );
    let worked = check(
        "hourly_report.py work",
        run(Command::new(&python).current_dir(EXAMPLE).args([
            "hourly_report.py",
            "work",
            "--server",
            &addr,
            "--queue",
            "py-reports",
            "--expect",
            "2",
            "--idle",
            "20",
        ]))
        .await,
    );
    let reports: Vec<&str> = worked
        .lines()
        .filter(|l| l.starts_with("sales report for the hour before "))
        .collect();
    assert_eq!(reports.len(), 2, "{worked}");
    assert_ne!(reports[0], reports[1], "two fire times: {worked}");
    assert!(worked.ends_with("made 2 reports\n"), "{worked}");
}
