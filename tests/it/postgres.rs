//! Several jobq replicas, as real processes, on one PostgreSQL schema:
//! jobs enqueued through one are worked through another, and a replica
//! killed with SIGKILL in the middle loses nothing; and a database outage
//! under load, made by cutting a proxy in front of it, and by crashing a
//! throwaway cluster of the test's own and starting it again. Skipped,
//! saying so, without a database (see `jobq::engine::postgres::testing`)
//! or, for the crash, without the server binaries.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobq::engine::postgres::testing::TestSchema;
use jobq::grpc::pb;
use jobq_client::Client;
use tokio::process::Child;

use crate::binary;

const QUEUE: &str = "replicated";
const JOBS: usize = 600;
const PATIENCE: Duration = Duration::from_secs(90);

/// One delivery a handler saw: which replica served it, the attempt, the
/// token.
#[derive(Clone, Debug)]
struct Seen {
    replica: &'static str,
    attempt: u32,
    token: String,
}

type Deliveries = Arc<Mutex<HashMap<String, Vec<Seen>>>>;

/// Fails unless job `id` of the test queue is acked.
async fn assert_acked(
    admin: &mut pb::admin_client::AdminClient<tonic::transport::Channel>,
    id: &str,
) {
    let job = admin
        .get_job(pb::GetJobRequest {
            queue: QUEUE.into(),
            job_id: id.to_string(),
        })
        .await
        .expect("get job")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(
        job.state,
        pb::JobState::Acked as i32,
        "job {id} is not acked: {job:?}"
    );
}

async fn replica(url: &str) -> (Child, String) {
    let env = [("JOBQ_STORE", url), ("JOBQ_LEASE_DURATION", "60s")];
    let (child, addr, mut lines) = binary::start(&env).await;
    // Keep reading its log, so it never blocks on a full pipe.
    tokio::spawn(async move { while lines.recv().await.is_some() {} });
    (child, format!("http://{addr}"))
}

/// Runs a stream worker on `addr` until `stop`, recording every delivery.
fn worker(
    client: Client,
    name: &'static str,
    seen: Deliveries,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = stop;
        client
            .worker(QUEUE)
            .concurrency(8)
            .reconnect_backoff_max(Duration::from_millis(200))
            .run(
                move |job| {
                    let seen = Arc::clone(&seen);
                    async move {
                        seen.lock()
                            .unwrap()
                            .entry(job.id.clone())
                            .or_default()
                            .push(Seen {
                                replica: name,
                                attempt: job.attempt,
                                token: job.lease_token.clone(),
                            });
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Ok(())
                    }
                },
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )
            .await;
    })
}

#[tokio::test]
async fn replicas_share_queues_and_a_killed_replica_loses_nothing() {
    let Some(schema) = TestSchema::create("replicas_share_queues").await else {
        return;
    };
    let url = schema.url();
    let (a, a_addr) = replica(&url).await;
    let (mut b, b_addr) = replica(&url).await;
    let (c, c_addr) = replica(&url).await;
    let seen: Deliveries = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let on_b = worker(
        Client::connect(b_addr.clone()).await.expect("b"),
        "b",
        Arc::clone(&seen),
        stopped.clone(),
    );
    let on_c = worker(
        Client::connect(c_addr.clone()).await.expect("c"),
        "c",
        Arc::clone(&seen),
        stopped.clone(),
    );
    // Producers on a and c, over their producer streams.
    let mut producers = Vec::new();
    for (addr, part) in [(a_addr.clone(), 0), (c_addr.clone(), 1)] {
        producers.push(tokio::spawn(async move {
            let client = Client::connect(addr).await.expect("producer");
            let mut ids = Vec::new();
            for i in 0..JOBS / 2 {
                let payload = format!("{part}-{i}");
                ids.push(
                    client
                        .enqueue(QUEUE, payload)
                        .send()
                        .await
                        .expect("enqueue"),
                );
            }
            ids
        }));
    }
    // Once b has jobs in hand, kill it without warning.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let on_b_now = seen
            .lock()
            .unwrap()
            .values()
            .flatten()
            .filter(|s| s.replica == "b")
            .count();
        if on_b_now >= 40 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "b never got jobs");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.start_kill().expect("SIGKILL b");
    b.wait().await.expect("b gone");
    let mut enqueued = HashSet::new();
    for producer in producers {
        enqueued.extend(producer.await.expect("producer"));
    }
    assert_eq!(enqueued.len(), JOBS);

    // The queue drains through c, b's leases coming back through its
    // stale heartbeat.
    let mut admin =
        pb::admin_client::AdminClient::new(crate::durable::connect(a_addr.clone()).await);
    loop {
        let queue = admin
            .get_queue(pb::GetQueueRequest {
                queue: QUEUE.into(),
            })
            .await
            .expect("get queue")
            .into_inner();
        let counts = queue.queue.and_then(|q| q.counts).expect("counts");
        if counts.ready + counts.scheduled + counts.leased + counts.dead == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue did not drain: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), on_c).await;
    on_b.abort();

    // Lost: none. Every job enqueued was acked, and seen by a handler.
    let seen = seen.lock().unwrap().clone();
    let mut redelivered = 0;
    let mut stale = None;
    for id in &enqueued {
        assert_acked(&mut admin, id).await;
        let deliveries = seen
            .get(id)
            .unwrap_or_else(|| panic!("job {id} was never delivered"));
        // Attempts are numbered once per delivery, in order.
        let attempts: Vec<u32> = deliveries.iter().map(|d| d.attempt).collect();
        assert!(
            attempts.windows(2).all(|w| w[0] < w[1]),
            "job {id}: attempts {attempts:?}"
        );
        if deliveries.len() > 1 {
            redelivered += 1;
            stale.get_or_insert(deliveries[0].token.clone());
        }
    }
    println!("{JOBS} jobs acked over 3 replicas; {redelivered} redelivered after b was killed");
    // A token of a delivery cut off by the kill changes nothing now.
    if let Some(token) = stale {
        let refused =
            pb::job_queue_client::JobQueueClient::new(crate::durable::connect(c_addr).await)
                .ack(pb::AckRequest {
                    queue: QUEUE.into(),
                    lease_tokens: vec![token],
                })
                .await
                .expect_err("a stale token is refused");
        assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    }
    drop((a, c));
}

/// A TCP proxy in front of the database that can be cut (every connection
/// reset, new ones refused) and mended, as a database outage looks to jobq.
struct Proxy {
    addr: std::net::SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (up, _) = tokio::sync::watch::channel(true);
        let watch = up.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut up = watch.subscribe();
                if !*up.borrow() {
                    continue; // dropped: refused
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = up.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { addr, up }
    }

    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

async fn health(channel: &tonic::transport::Channel) -> Option<i32> {
    tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

async fn wait_for_health(channel: &tonic::transport::Channel, want: tonic_health::ServingStatus) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while health(channel).await != Some(want as i32) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_database_outage_gives_clear_errors_and_full_service_after_it() {
    let Some(schema) = TestSchema::create("database_outage").await else {
        return;
    };
    let proxy = Proxy::start(schema.database_addr()).await;
    outage_under_load(
        &schema.url_via(proxy.addr),
        async || proxy.set(false),
        async || proxy.set(true),
    )
    .await;
}

#[tokio::test]
async fn a_database_crashed_and_restarted_under_load_loses_nothing_it_acknowledged() {
    let Some(cluster) = crate::common::cluster::Cluster::start("database_restart").await else {
        return;
    };
    outage_under_load(
        &cluster.url(),
        async || cluster.crash().await,
        async || cluster.start_again().await,
    )
    .await;
}

/// A replica on `url` under load while `cut` takes the database away and
/// `mend` brings it back: health follows, calls meanwhile fail with
/// UNAVAILABLE naming the store and within their deadline, and after it
/// every job acked before stays acked and every job whose enqueue was
/// answered drains.
async fn outage_under_load(url: &str, cut: impl AsyncFnOnce(), mend: impl AsyncFnOnce()) {
    let (child, addr) = replica(url).await;
    let channel = crate::durable::connect(addr.clone()).await;
    let mut jobs = pb::job_queue_client::JobQueueClient::new(channel.clone());
    let mut admin = pb::admin_client::AdminClient::new(channel.clone());
    let enqueue = |payload: &str| pb::EnqueueRequest {
        queue: QUEUE.into(),
        job: Some(crate::common::job(payload)),
        ..pb::EnqueueRequest::default()
    };
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            jobs.enqueue(enqueue(&i.to_string()))
                .await
                .expect("enqueue")
                .into_inner()
                .job_id,
        );
    }
    let leased = jobs
        .lease(pb::LeaseRequest {
            queue: QUEUE.into(),
            max_jobs: 5,
            ..pb::LeaseRequest::default()
        })
        .await
        .expect("lease")
        .into_inner()
        .leases;
    let acked: Vec<String> = leased
        .iter()
        .map(|l| l.job.as_ref().expect("job").id.clone())
        .collect();
    jobs.ack(pb::AckRequest {
        queue: QUEUE.into(),
        lease_tokens: leased.iter().map(|l| l.lease_token.clone()).collect(),
    })
    .await
    .expect("ack");

    // Under load: a producer enqueues throughout the outage. Every job it
    // is told was stored must be there after; every refusal must be
    // UNAVAILABLE.
    let stop_load = Arc::new(AtomicBool::new(false));
    let load = {
        let (mut jobs, stop) = (jobs.clone(), Arc::clone(&stop_load));
        tokio::spawn(async move {
            let (mut stored, mut refused) = (Vec::new(), 0);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let mut request = tonic::Request::new(pb::EnqueueRequest {
                    queue: QUEUE.into(),
                    job: Some(crate::common::job(&format!("load-{i}"))),
                    ..pb::EnqueueRequest::default()
                });
                request.set_timeout(Duration::from_secs(10));
                match jobs.enqueue(request).await {
                    Ok(answer) => stored.push(answer.into_inner().job_id),
                    Err(status) => {
                        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (stored, refused)
        })
    };

    cut().await;
    wait_for_health(&channel, tonic_health::ServingStatus::NotServing).await;
    // Refused with UNAVAILABLE naming the store, well within the deadline.
    let mut request = tonic::Request::new(enqueue("while down"));
    request.set_timeout(Duration::from_secs(10));
    let started = tokio::time::Instant::now();
    let refused = jobs.enqueue(request).await.expect_err("refused while down");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("postgres"), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "the call hung");

    mend().await;
    wait_for_health(&channel, tonic_health::ServingStatus::Serving).await;
    ids.push(
        jobs.enqueue(enqueue("after"))
            .await
            .expect("enqueue after")
            .into_inner()
            .job_id,
    );
    stop_load.store(true, Ordering::Relaxed);
    let (stored, refused) = load.await.expect("the producer under load");
    assert!(refused > 0, "the producer never saw the outage");
    for id in &acked {
        assert_acked(&mut admin, id).await;
    }
    // Everything not acked is still there, and drains.
    let mut rest = HashSet::new();
    loop {
        let leased = jobs
            .lease(pb::LeaseRequest {
                queue: QUEUE.into(),
                max_jobs: 50,
                ..pb::LeaseRequest::default()
            })
            .await
            .expect("lease")
            .into_inner()
            .leases;
        if leased.is_empty() {
            break;
        }
        jobs.ack(pb::AckRequest {
            queue: QUEUE.into(),
            lease_tokens: leased.iter().map(|l| l.lease_token.clone()).collect(),
        })
        .await
        .expect("ack");
        rest.extend(leased.into_iter().map(|l| l.job.expect("job").id));
    }
    // Stored for sure: every job whose enqueue was answered. A refused
    // enqueue whose commit was cut off may have been stored too.
    let expected: HashSet<String> = ids
        .iter()
        .chain(&stored)
        .filter(|id| !acked.contains(id))
        .cloned()
        .collect();
    let lost: Vec<_> = expected.difference(&rest).collect();
    assert!(lost.is_empty(), "jobs were lost: {lost:?}");
    assert!(
        rest.iter().all(|id| !acked.contains(id)),
        "an acked job came back"
    );
    println!(
        "outage under load: {} enqueues stored and {refused} refused; {} jobs drained after",
        stored.len(),
        rest.len()
    );
    drop(child);
}
