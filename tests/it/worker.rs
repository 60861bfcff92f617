//! The Rust worker runtime against a real server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{PATIENCE, TestServer, eventually, eventually_async};
use jobq::config::Config;
use jobq::queue::{JobId, JobState};
use jobq_client::{Client, JobError};
use tokio::sync::{Barrier, mpsc, oneshot};

fn client(server: &TestServer) -> Client {
    Client::from_channel(server.channel.clone())
}

async fn held(server: &TestServer, name: &str) -> usize {
    server
        .counts(name)
        .await
        .map_or(0, |c| c.ready + c.scheduled + c.leased + c.dead)
}

/// Config with a fast backoff, so retries come within the test.
fn fast_retries() -> Config {
    let mut config = Config::defaults();
    config.backoff_base = Duration::from_millis(10);
    config.backoff_cap = Duration::from_millis(50);
    config
}

#[tokio::test]
async fn runs_exactly_up_to_its_concurrency_at_once() {
    let server = TestServer::start().await;
    let c = client(&server);
    for i in 0..21 {
        c.enqueue("q", format!("job {i}"))
            .send()
            .await
            .expect("enqueue");
    }
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    // Every handler waits until three run together: fewer than three at
    // once would never get past it, more would show in `most`.
    let barrier = Arc::new(Barrier::new(3));
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = {
        let (running, most) = (Arc::clone(&running), Arc::clone(&most));
        tokio::spawn(c.worker("q").concurrency(3).run(
            move |_job| {
                let (running, most, barrier) = (
                    Arc::clone(&running),
                    Arc::clone(&most),
                    Arc::clone(&barrier),
                );
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    barrier.wait().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<(), JobError>(())
                }
            },
            async move {
                let _ = stopped.await;
            },
        ))
    };
    eventually_async("all 21 jobs acked", async || held(&server, "q").await == 0).await;
    stop.send(()).expect("worker running");
    let stats = worker.await.expect("join");
    assert_eq!(stats.succeeded, 21);
    assert_eq!(most.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_job_longer_than_its_lease_is_extended_not_redelivered() {
    let server = TestServer::start().await;
    let c = client(&server);
    c.enqueue("q", "slow").send().await.expect("enqueue");
    let deliveries = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = {
        let deliveries = Arc::clone(&deliveries);
        tokio::spawn(
            c.worker("q")
                .concurrency(2)
                .lease_duration(Duration::from_secs(3))
                .run(
                    move |_job| {
                        deliveries.fetch_add(1, Ordering::SeqCst);
                        async move {
                            // More than two leases long; the runtime extends
                            // at two thirds of each, a second before it ends.
                            tokio::time::sleep(Duration::from_secs(7)).await;
                            Ok::<(), JobError>(())
                        }
                    },
                    async move {
                        let _ = stopped.await;
                    },
                ),
        )
    };
    eventually_async("the slow job is acked", async || {
        held(&server, "q").await == 0
    })
    .await;
    stop.send(()).expect("worker running");
    let stats = worker.await.expect("join");
    assert_eq!(deliveries.load(Ordering::SeqCst), 1, "never redelivered");
    assert_eq!(stats.succeeded, 1);
}

#[tokio::test]
async fn a_panicking_handler_nacks_and_the_worker_carries_on() {
    let server = TestServer::start_with(fast_retries()).await;
    let c = client(&server);
    c.enqueue("q", "boom once").send().await.expect("enqueue");
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(c.worker("q").run(
        |job| async move {
            if job.attempt == 1 {
                panic!("handler bug");
            }
            Ok::<(), JobError>(())
        },
        async move {
            let _ = stopped.await;
        },
    ));
    eventually_async("the job succeeds on its second attempt", async || {
        held(&server, "q").await == 0
    })
    .await;
    stop.send(()).expect("worker running");
    let stats = worker.await.expect("join");
    assert_eq!((stats.panicked, stats.succeeded), (1, 1));
}

#[tokio::test]
async fn errors_retry_with_backoff_or_dead_letter_with_the_reason() {
    let server = TestServer::start_with(fast_retries()).await;
    let c = client(&server);
    c.enqueue("q", "flaky").send().await.expect("enqueue");
    let bad: JobId = c
        .enqueue("q", "bad address")
        .send()
        .await
        .expect("enqueue")
        .parse()
        .expect("id");
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(c.worker("q").run(
        |job| async move {
            match (&job.payload[..], job.attempt) {
                (b"flaky", 1) => Err(JobError::retry("smtp timeout")),
                (b"flaky", _) => Ok(()),
                _ => Err(JobError::permanent("no such mailbox")),
            }
        },
        async move {
            let _ = stopped.await;
        },
    ));
    eventually_async("flaky acked, bad dead-lettered", async || {
        server
            .counts("q")
            .await
            .is_some_and(|c| c.dead == 1 && c.ready + c.scheduled + c.leased == 0)
    })
    .await;
    let status = server.job_status("q", &bad).await.expect("held");
    assert_eq!(status.state, JobState::Dead);
    assert_eq!(status.last_error.as_deref(), Some("no such mailbox"));
    stop.send(()).expect("worker running");
    let stats = worker.await.expect("join");
    assert_eq!(
        (stats.retried, stats.succeeded, stats.dead_lettered),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn shutdown_lets_running_jobs_finish_within_the_grace() {
    let server = TestServer::start().await;
    let c = client(&server);
    c.enqueue("q", "in flight").send().await.expect("enqueue");
    let (started_tx, mut started) = mpsc::channel::<()>(1);
    let (finish, finish_rx) = oneshot::channel::<()>();
    let finish_rx = Arc::new(tokio::sync::Mutex::new(Some(finish_rx)));
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(c.worker("q").shutdown_grace(PATIENCE).run(
        move |_job| {
            let (started_tx, finish_rx) = (started_tx.clone(), Arc::clone(&finish_rx));
            async move {
                let _ = started_tx.send(()).await;
                if let Some(rx) = finish_rx.lock().await.take() {
                    let _ = rx.await;
                }
                Ok::<(), JobError>(())
            }
        },
        async move {
            let _ = stopped.await;
        },
    ));
    started.recv().await.expect("handler started");
    stop.send(()).expect("worker running");
    // Jobs enqueued during the drain are not taken by this worker.
    let after: JobId = c
        .enqueue("q", "after shutdown")
        .send()
        .await
        .expect("enqueue")
        .parse()
        .expect("id");
    finish.send(()).expect("handler waiting");
    let stats = worker.await.expect("join");
    assert_eq!(stats.succeeded, 1);
    eventually_async("the in-flight job was acked", async || {
        held(&server, "q").await == 1
    })
    .await;
    let status = server.job_status("q", &after).await.expect("held");
    assert_eq!(status.state, JobState::Ready);
}

#[tokio::test]
async fn shutdown_nacks_jobs_still_running_after_the_grace() {
    let server = TestServer::start().await;
    let c = client(&server);
    let id: JobId = c
        .enqueue("q", "never ends")
        .send()
        .await
        .expect("enqueue")
        .parse()
        .expect("id");
    let (started_tx, mut started) = mpsc::channel::<()>(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(
        c.worker("q")
            .shutdown_grace(Duration::from_millis(100))
            .run(
                move |_job| {
                    let started_tx = started_tx.clone();
                    async move {
                        let _ = started_tx.send(()).await;
                        std::future::pending::<()>().await;
                        Ok::<(), JobError>(())
                    }
                },
                async move {
                    let _ = stopped.await;
                },
            ),
    );
    started.recv().await.expect("handler started");
    stop.send(()).expect("worker running");
    let stats = worker.await.expect("join");
    assert_eq!(stats.abandoned, 1);
    eventually_async("the job is ready again at once", async || {
        server
            .job_status("q", &id)
            .await
            .is_some_and(|s| s.state == JobState::Ready)
    })
    .await;
    let status = server.job_status("q", &id).await.expect("held");
    assert!(
        status
            .last_error
            .expect("reason")
            .contains("worker stopped before the handler finished")
    );
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let first = TestServer::start().await;
    let addr = first.addr;
    let c = Client::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let (done_tx, mut done) = mpsc::channel::<String>(8);
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(
        c.worker("q")
            .reconnect_backoff_max(Duration::from_millis(200))
            .run(
                move |job| {
                    let done_tx = done_tx.clone();
                    async move {
                        let _ = done_tx
                            .send(String::from_utf8_lossy(&job.payload).into_owned())
                            .await;
                        Ok::<(), JobError>(())
                    }
                },
                async move {
                    let _ = stopped.await;
                },
            ),
    );
    c.enqueue("q", "before").send().await.expect("enqueue");
    assert_eq!(done.recv().await.as_deref(), Some("before"));
    first.shutdown().await.expect("clean stop");

    let second = TestServer::start_on(addr).await;
    client(&second)
        .enqueue("q", "after")
        .send()
        .await
        .expect("enqueue on the new server");
    let got = tokio::time::timeout(PATIENCE, done.recv())
        .await
        .expect("the worker reconnected");
    assert_eq!(got.as_deref(), Some("after"));
    stop.send(()).expect("worker running");
    let stats = worker.await.expect("join");
    assert!(stats.connections >= 2, "{stats:?}");
}

#[tokio::test]
async fn client_unary_calls_lease_extend_nack_and_batch() {
    let server = TestServer::start().await;
    let c = client(&server);
    let ids = c
        .enqueue_batch(
            "q",
            vec![
                jobq_client::NewJob::new("a").priority(1).metadata("k", "v"),
                jobq_client::NewJob::new("b").max_attempts(1),
            ],
        )
        .await
        .expect("batch");
    assert_eq!(ids.len(), 2);
    let jobs = c
        .lease("q", 2, Some(Duration::from_secs(5)), Duration::ZERO)
        .await
        .expect("lease");
    assert_eq!(jobs[0].id, ids[0]);
    assert_eq!(jobs[0].metadata["k"], "v");
    let deadline = c
        .extend("q", jobs[0].lease_token.clone(), Duration::from_secs(600))
        .await
        .expect("extend")
        .expect("a deadline");
    assert!(deadline > std::time::SystemTime::now() + Duration::from_secs(590));
    let nacked = c
        .nack("q", jobs[1].lease_token.clone(), &JobError::retry("flaky"))
        .await
        .expect("nack");
    assert_eq!(
        nacked.outcome(),
        jobq::grpc::pb::NackOutcome::DeadLettered,
        "its only attempt is used"
    );
    c.ack("q", vec![jobs[0].lease_token.clone()])
        .await
        .expect("ack");
    let err = c
        .ack("q", vec![jobs[0].lease_token.clone()])
        .await
        .expect_err("acked already");
    assert_eq!(err.status().map(|s| s.code()), Some(tonic::Code::NotFound));
    assert_eq!(held(&server, "q").await, 1, "only the dead letter is left");
}

/// Log lines written through `tracing` while it lives, on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned()
    }
}

// One thread: the worker's tasks log through this thread's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_worker_on_a_paused_queue_says_so_once_and_works_once_resumed() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start().await;
    let mut admin = crate::common::admin(&server);
    admin
        .update_queue(jobq::grpc::pb::UpdateQueueRequest {
            queue: "paused".into(),
            paused: Some(true),
            allow_missing: true,
            ..Default::default()
        })
        .await
        .expect("pause");
    let c = client(&server);
    c.enqueue("paused", bytes::Bytes::from_static(b"x"))
        .send_unary()
        .await
        .expect("enqueue");
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let done_tx = Arc::new(std::sync::Mutex::new(Some(done_tx)));
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn({
        let (c, stop) = (c.clone(), stop.clone());
        async move {
            c.worker("paused")
                .run(
                    move |_job| {
                        let done_tx = Arc::clone(&done_tx);
                        async move {
                            if let Some(tx) = done_tx.lock().expect("once").take() {
                                let _ = tx.send(());
                            }
                            Ok(())
                        }
                    },
                    stop.cancelled_owned(),
                )
                .await
        }
    });
    eventually("the worker heard the queue is paused", || {
        captured.text().contains("the queue is paused")
    })
    .await;
    admin
        .resume_queue(jobq::grpc::pb::ResumeQueueRequest {
            queue: "paused".into(),
        })
        .await
        .expect("resume");
    tokio::time::timeout(PATIENCE, done_rx)
        .await
        .expect("the job runs once resumed")
        .expect("handler ran");
    stop.cancel();
    worker.await.expect("worker");
    let log = captured.text();
    assert_eq!(log.matches("the queue is paused").count(), 1, "{log}");
    assert_eq!(log.matches("the queue was resumed").count(), 1, "{log}");
}

#[tokio::test]
async fn a_worker_reports_whether_its_stream_is_open() {
    let server = TestServer::start().await;
    let (connected, mut ready) = tokio::sync::watch::channel(false);
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn({
        let (c, stop) = (client(&server), stop.clone());
        async move {
            c.worker("probed")
                .report_connected(connected)
                .run(|_job| async { Ok(()) }, stop.cancelled_owned())
                .await
        }
    });
    tokio::time::timeout(PATIENCE, ready.wait_for(|up| *up))
        .await
        .expect("connected in time")
        .expect("reported");
    eventually_async("the stream is open on the server", async || {
        server.workers("probed").await == 1
    })
    .await;
    stop.cancel();
    worker.await.expect("worker");
    assert!(!*ready.borrow(), "a stopped worker is not ready");
}
