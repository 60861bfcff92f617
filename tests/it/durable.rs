//! The journal with real processes: a server on a data dir is killed with
//! SIGKILL at moments a seeded generator picks, several times, while
//! producers (unary and over the client's producer stream) and a worker
//! run against it, and is started again on the same dir. A client-side
//! history checks what the journal promises:
//! - lost = 0: every enqueue answered OK is acked in the end (or its ack's
//!   answer was cut off by a kill);
//! - no job whose ack was answered OK is delivered again;
//! - a job's attempt numbers only go up, and never by more than one per
//!   delivery the server made (deliveries cut off by a kill included);
//! - the queue drains to empty.
//!
//! `JOBQ_CRASH_JOBS` sets the jobs (default 20 000), `JOBQ_CRASH_KILLS` the
//! kills (default 5); `JOBQ_CRASH_JOBS=1000000 cargo test --release --test
//! it durable -- --nocapture` runs it at a million.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobq::grpc::pb;
use jobq::grpc::pb::job_queue_client::JobQueueClient;
use jobq_client::Client;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use crate::common::certs::temp_dir;
use crate::common::{FREE_PORTS, PATIENCE};

const QUEUE: &str = "crash";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts `jobq --data-dir dir` on a free port; returns it and its address.
pub(crate) async fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobq"))
        .args(FREE_PORTS)
        .arg("--data-dir")
        .arg(dir)
        .args(["--log-format", "json"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("jobq starts");
    let addr = serving_addr(&mut child).await;
    (child, addr)
}

/// Waits for a started `jobq`'s "jobq serving" line; returns its address
/// as a URL, and keeps reading its output so it never blocks on the pipe.
async fn serving_addr(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("log line") {
            let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            if json["fields"]["message"] == "jobq serving" {
                return json["fields"]["addr"].as_str().expect("addr").to_string();
            }
        }
        panic!("jobq exited before serving");
    })
    .await
    .expect("jobq serves in time");
    // Keep reading, so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    format!("http://{addr}")
}

/// Up to `max` jobs of the test queue, leased without waiting.
async fn lease_now(client: &mut JobQueueClient<Channel>, max: u32) -> Vec<pb::Lease> {
    client
        .lease(pb::LeaseRequest {
            queue: QUEUE.into(),
            max_jobs: max,
            ..pb::LeaseRequest::default()
        })
        .await
        .expect("lease")
        .into_inner()
        .leases
}

/// A connection to a started server.
pub(crate) async fn connect(addr: String) -> Channel {
    tonic::transport::Endpoint::from_shared(addr)
        .expect("uri")
        .connect()
        .await
        .expect("connects")
}

/// What the clients saw.
#[derive(Default)]
struct History {
    /// Enqueues answered OK.
    enqueued: HashSet<String>,
    /// Acks answered OK.
    acked: HashSet<String>,
    /// Acks whose answer a kill cut off: done or not.
    ack_unknown: HashSet<String>,
    /// The last attempt each job was delivered with.
    attempts: HashMap<String, u32>,
    violations: Vec<String>,
}

impl History {
    fn delivered(&mut self, id: &str, attempt: u32, kills: usize) {
        if self.acked.contains(id) {
            self.violations.push(format!(
                "{id} delivered (attempt {attempt}) after its ack was answered OK"
            ));
        }
        let last = self.attempts.get(id).copied().unwrap_or(0);
        // Each kill can cost one delivery the worker never saw.
        if attempt <= last || attempt > last + 1 + kills as u32 {
            self.violations.push(format!(
                "{id} delivered with attempt {attempt} after attempt {last}, {kills} kills so far"
            ));
        }
        self.attempts.insert(id.to_string(), attempt);
    }
}

async fn produce_unary(
    mut client: JobQueueClient<Channel>,
    history: Arc<Mutex<History>>,
    left: Arc<AtomicUsize>,
) {
    while take_one(&left) {
        let request = pb::EnqueueRequest {
            queue: QUEUE.into(),
            job: Some(pb::NewJob {
                payload: bytes::Bytes::from_static(b"unary"),
                ..pb::NewJob::default()
            }),
            wait_for_room: false,
        };
        match client.enqueue(request).await {
            Ok(answer) => {
                lock(&history).enqueued.insert(answer.into_inner().job_id);
            }
            // The server was killed: whether it stored the job is unknown,
            // and either way is right.
            Err(_) => return,
        }
    }
}

async fn produce_stream(client: Client, history: Arc<Mutex<History>>, left: Arc<AtomicUsize>) {
    while take_one(&left) {
        match client.enqueue(QUEUE, "stream").send().await {
            Ok(id) => {
                lock(&history).enqueued.insert(id);
            }
            Err(_) => return,
        }
    }
}

fn take_one(left: &AtomicUsize) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Leases and acks until the server goes away, or (when `until_empty`)
/// until nothing is left to lease.
async fn work(
    mut client: JobQueueClient<Channel>,
    history: Arc<Mutex<History>>,
    kills: usize,
    until_empty: bool,
) {
    loop {
        let leased = client
            .lease(pb::LeaseRequest {
                queue: QUEUE.into(),
                max_jobs: 32,
                lease_duration: Some(Duration::from_secs(60).try_into().expect("duration")),
                wait_time: Some(Duration::from_millis(500).try_into().expect("duration")),
            })
            .await;
        let Ok(leased) = leased else { return };
        let leases = leased.into_inner().leases;
        if leases.is_empty() {
            if until_empty {
                return;
            }
            continue;
        }
        let mut ids = Vec::new();
        {
            let mut history = lock(&history);
            for lease in &leases {
                let id = lease.job.as_ref().expect("job").id.clone();
                history.delivered(&id, lease.attempt, kills);
                ids.push(id);
            }
        }
        let tokens = leases.iter().map(|l| l.lease_token.clone()).collect();
        let acked = client
            .ack(pb::AckRequest {
                queue: QUEUE.into(),
                lease_tokens: tokens,
            })
            .await;
        let mut history = lock(&history);
        match acked {
            Ok(_) => history.acked.extend(ids),
            Err(_) => {
                history.ack_unknown.extend(ids);
                return;
            }
        }
    }
}

fn lock(history: &Mutex<History>) -> std::sync::MutexGuard<'_, History> {
    history.lock().expect("history")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_job() {
    let jobs = env_number("JOBQ_CRASH_JOBS", 20_000);
    let kills = env_number("JOBQ_CRASH_KILLS", 5);
    let dir = temp_dir("crash");
    let history = Arc::new(Mutex::new(History::default()));
    let left = Arc::new(AtomicUsize::new(jobs));
    let mut rng = SmallRng::seed_from_u64(20261201);

    for round in 0..=kills {
        let (mut server, addr) = start(&dir).await;
        let channel = connect(addr.clone()).await;
        if round == kills {
            // The last run: nothing more is produced; drain everything.
            work(
                JobQueueClient::new(channel.clone()),
                Arc::clone(&history),
                kills,
                true,
            )
            .await;
            let queue = pb::admin_client::AdminClient::new(channel)
                .get_queue(pb::GetQueueRequest {
                    queue: QUEUE.into(),
                })
                .await
                .expect("the queue")
                .into_inner()
                .queue
                .expect("queue info");
            let counts = queue.counts.expect("counts");
            assert_eq!(
                (counts.ready, counts.scheduled, counts.leased, counts.dead),
                (0, 0, 0, 0),
                "the queue drains to empty"
            );
            server.start_kill().expect("stop");
            let _ = server.wait().await;
            break;
        }
        let client = Client::connect_within(addr.clone(), PATIENCE)
            .await
            .expect("client");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            tasks.spawn(produce_unary(
                JobQueueClient::new(channel.clone()),
                Arc::clone(&history),
                Arc::clone(&left),
            ));
            tasks.spawn(produce_stream(
                client.clone(),
                Arc::clone(&history),
                Arc::clone(&left),
            ));
        }
        tasks.spawn(work(
            JobQueueClient::new(channel.clone()),
            Arc::clone(&history),
            round,
            false,
        ));
        // Run for a while, then SIGKILL: whatever is in flight is cut.
        let run = Duration::from_millis(rng.random_range(300..1500));
        tokio::time::sleep(run).await;
        server.start_kill().expect("SIGKILL");
        let _ = server.wait().await;
        while tasks.join_next().await.is_some() {}
    }

    let history = lock(&history);
    assert!(
        history.violations.is_empty(),
        "{:#?}",
        &history.violations[..history.violations.len().min(20)]
    );
    let lost: Vec<&String> = history
        .enqueued
        .iter()
        .filter(|id| !history.acked.contains(*id) && !history.ack_unknown.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged enqueues never acked, e.g. {:?}",
        lost.len(),
        history.enqueued.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        history.enqueued.len() > jobs / 10,
        "the runs enqueued something"
    );
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{} enqueued, {} acked, {} acks cut off, {} kills",
        history.enqueued.len(),
        history.acked.len(),
        history.ack_unknown.len(),
        kills
    );
}

#[tokio::test]
async fn a_restart_brings_every_job_and_setting_back_and_old_tokens_ack_nothing() {
    let dir = temp_dir("restart");
    let (mut server, addr) = start(&dir).await;
    let channel = connect(addr).await;
    let mut jobs = JobQueueClient::new(channel.clone());
    let mut admin = pb::admin_client::AdminClient::new(channel);
    let enqueue = |payload: &'static str, key: &str, delay: Option<u64>| pb::EnqueueRequest {
        queue: QUEUE.into(),
        job: Some(pb::NewJob {
            payload: bytes::Bytes::from_static(payload.as_bytes()),
            idempotency_key: key.into(),
            schedule: delay.map(|s| {
                pb::new_job::Schedule::Delay(Duration::from_secs(s).try_into().expect("delay"))
            }),
            max_attempts: 3,
            ..pb::NewJob::default()
        }),
        wait_for_room: false,
    };
    let keyed = jobs
        .enqueue(enqueue("keyed", "order-7", None))
        .await
        .expect("enqueue")
        .into_inner()
        .job_id;
    jobs.enqueue(enqueue("later", "", Some(3600)))
        .await
        .expect("enqueue");
    jobs.enqueue(enqueue("doomed", "", None))
        .await
        .expect("enqueue");
    admin
        .update_queue(pb::UpdateQueueRequest {
            queue: QUEUE.into(),
            capacity: Some(500),
            ..pb::UpdateQueueRequest::default()
        })
        .await
        .expect("settings");
    // Lease both ready jobs; dead-letter "doomed" with a reason, keep the
    // lease on "keyed" across the restart.
    let leases = lease_now(&mut jobs, 10).await;
    assert_eq!(leases.len(), 2);
    let (kept, doomed): (Vec<_>, Vec<_>) = leases
        .into_iter()
        .partition(|l| l.job.as_ref().expect("job").id == keyed);
    jobs.nack(pb::NackRequest {
        queue: QUEUE.into(),
        lease_token: doomed[0].lease_token.clone(),
        dead_letter: true,
        reason: "bad address".into(),
        ..pb::NackRequest::default()
    })
    .await
    .expect("nack");
    admin
        .pause_queue(pb::PauseQueueRequest {
            queue: QUEUE.into(),
        })
        .await
        .expect("pause");

    server.start_kill().expect("SIGKILL");
    let _ = server.wait().await;
    let (_server, addr) = start(&dir).await;
    let channel = connect(addr).await;
    let mut jobs = JobQueueClient::new(channel.clone());
    let mut admin = pb::admin_client::AdminClient::new(channel);

    let info = admin
        .get_queue(pb::GetQueueRequest {
            queue: QUEUE.into(),
        })
        .await
        .expect("the queue came back")
        .into_inner()
        .queue
        .expect("info");
    assert!(info.paused, "paused before, paused after");
    assert_eq!(info.settings.expect("settings").capacity, 500);
    let counts = info.counts.expect("counts");
    assert_eq!(
        (counts.ready, counts.scheduled, counts.leased, counts.dead),
        (1, 1, 0, 1),
        "the leased job is ready again; the delayed one waits; the dead one is dead"
    );
    let dead = admin
        .get_job(pb::GetJobRequest {
            queue: QUEUE.into(),
            job_id: doomed[0].job.as_ref().expect("job").id.clone(),
        })
        .await
        .expect("dead job")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(dead.last_error, "bad address");
    assert_eq!(dead.failures.len(), 1);

    // The token from before the restart acks nothing.
    let stale = jobs
        .ack(pb::AckRequest {
            queue: QUEUE.into(),
            lease_tokens: vec![kept[0].lease_token.clone()],
        })
        .await
        .expect_err("a token of the last run");
    assert_eq!(stale.code(), tonic::Code::NotFound);
    // The idempotency key still dedupes.
    let again = jobs
        .enqueue(enqueue("keyed", "order-7", None))
        .await
        .expect("enqueue")
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.job_id, keyed);
    // Leased when the server stopped: that delivery counted.
    admin
        .resume_queue(pb::ResumeQueueRequest {
            queue: QUEUE.into(),
        })
        .await
        .expect("resume");
    let redelivered = lease_now(&mut jobs, 10).await;
    assert_eq!(redelivered.len(), 1);
    assert_eq!(redelivered[0].attempt, 2);
    assert_ne!(redelivered[0].lease_token, kept[0].lease_token);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_data_dir_in_use_is_refused_at_start() {
    let dir = temp_dir("in-use");
    let (_first, _) = start(&dir).await;
    let output = Command::new(env!("CARGO_BIN_EXE_jobq"))
        .args(FREE_PORTS)
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use by another jobq"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bytes of the journal's segment files.
fn journal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_enqueue_and_ack_the_journal_stays_bounded_and_keeps_exactly_the_live_jobs() {
    const SEGMENT: u64 = 64 << 10;
    const DEPTH: usize = 200;
    let jobs = env_number("JOBQ_COMPACTION_JOBS", 20_000);
    let dir = temp_dir("compaction");
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobq"))
        .args(FREE_PORTS)
        .arg("--data-dir")
        .arg(&dir)
        .args(["--fsync", "interval=10ms", "--log-format", "json"])
        .args(["--journal-segment-bytes", &SEGMENT.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("jobq starts");
    let addr = serving_addr(&mut child).await;
    let channel = connect(addr).await;
    let mut client = JobQueueClient::new(channel.clone());
    let enqueue = |n: usize| pb::EnqueueRequest {
        queue: QUEUE.into(),
        job: Some(pb::NewJob {
            payload: bytes::Bytes::from(vec![b'x'; 128 + n % 7]),
            ..pb::NewJob::default()
        }),
        wait_for_room: false,
    };
    // A dead job from the very start, which must never pin the old files.
    client.enqueue(enqueue(0)).await.expect("enqueue");
    let first = lease_now(&mut client, 1).await.remove(0);
    client
        .nack(pb::NackRequest {
            queue: QUEUE.into(),
            lease_token: first.lease_token,
            dead_letter: true,
            reason: "kept".into(),
            ..pb::NackRequest::default()
        })
        .await
        .expect("dead-letter");
    for n in 0..DEPTH {
        client.enqueue(enqueue(n)).await.expect("enqueue");
    }
    let mut most = 0;
    const BATCH: usize = 50;
    for round in 0..jobs / BATCH {
        client
            .batch_enqueue(pb::BatchEnqueueRequest {
                queue: QUEUE.into(),
                jobs: (0..BATCH).map(|n| enqueue(n).job.expect("job")).collect(),
                wait_for_room: false,
            })
            .await
            .expect("enqueue");
        let mut tokens = Vec::new();
        while tokens.len() < BATCH {
            let leases = lease_now(&mut client, (BATCH - tokens.len()) as u32).await;
            tokens.extend(leases.into_iter().map(|l| l.lease_token));
        }
        client
            .ack(pb::AckRequest {
                queue: QUEUE.into(),
                lease_tokens: tokens,
            })
            .await
            .expect("ack");
        if round % 10 == 0 {
            most = most.max(journal_bytes(&dir));
        }
    }
    // Live: 201 jobs of about 130 bytes (some 250 bytes each on disk), well
    // under one segment; the bound is twice that plus a segment. Segments
    // this small fill in a few milliseconds, and compaction waits for its
    // copies to be synced (here up to 10 ms) before it deletes a segment,
    // so up to two more may be written meanwhile. (At the default 64 MiB,
    // that wait is a rounding error: `jobq-bench steady` measures the
    // bound itself.)
    let bound = 3 * SEGMENT + 2 * (DEPTH as u64 + 1) * 250;
    assert!(
        most <= bound,
        "the journal reached {most} bytes after {jobs} jobs; bound {bound}"
    );

    let mut admin = pb::admin_client::AdminClient::new(channel);
    let before = list_ids(&mut admin).await;
    assert_eq!(before.len(), DEPTH + 1);
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let (_server, addr) = start(&dir).await;
    let channel = connect(addr).await;
    let mut admin = pb::admin_client::AdminClient::new(channel);
    let after = list_ids(&mut admin).await;
    assert_eq!(
        after, before,
        "exactly the live jobs, in their states, come back"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every job of the queue with its state and attempts.
async fn list_ids(admin: &mut pb::admin_client::AdminClient<Channel>) -> Vec<(String, i32, u32)> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_jobs(pb::ListJobsRequest {
                queue: QUEUE.into(),
                page_size: 1000,
                page_token,
                ..pb::ListJobsRequest::default()
            })
            .await
            .expect("list")
            .into_inner();
        all.extend(
            page.jobs
                .into_iter()
                .map(|j| (j.job.expect("job").id, j.state, j.attempts)),
        );
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn the_journal_exports_its_figures() {
    let dir = temp_dir("metrics");
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobq"))
        .args(FREE_PORTS)
        .arg("--data-dir")
        .arg(&dir)
        .args(["--log-format", "json"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("jobq starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut grpc, mut metrics) = (None, None);
    while grpc.is_none() || metrics.is_none() {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("jobq logs in time")
            .expect("log line")
            .expect("jobq running");
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        let addr = json["fields"]["addr"].as_str().map(str::to_string);
        match json["fields"]["message"].as_str() {
            Some("jobq serving") => grpc = addr,
            Some("metrics at /metrics") => metrics = addr,
            _ => {}
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let mut client = JobQueueClient::new(connect(format!("http://{}", grpc.expect("addr"))).await);
    for _ in 0..10 {
        client
            .enqueue(pb::EnqueueRequest {
                queue: QUEUE.into(),
                job: Some(crate::common::job("x")),
                wait_for_room: false,
            })
            .await
            .expect("enqueue");
    }
    let scraped = crate::common::http_get_from(
        metrics.expect("addr").parse().expect("metrics address"),
        "/metrics",
    )
    .await;
    let value = |series: &str| -> f64 {
        scraped
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{scraped}"))
            .trim()
            .parse()
            .expect("a number")
    };
    assert!(value("jobq_journal_fsync_seconds_count") >= 1.0);
    assert!(value("jobq_journal_syncs_total") >= 1.0);
    // Ten enqueues, a queue's settings and the run's start, at least.
    assert!(value("jobq_journal_records_total") >= 12.0);
    assert!(value("jobq_journal_written_bytes_total") > 0.0);
    assert!(value("jobq_journal_recovery_seconds") >= 0.0);
    assert_eq!(value("jobq_journal_compaction_copied_bytes_total"), 0.0);
    assert!(scraped.contains("jobq_journal_disk_bytes "), "{scraped}");
    let _ = std::fs::remove_dir_all(&dir);
}
