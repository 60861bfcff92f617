//! Fault injection with a history checker.
//!
//! Producers and workers run against a real server while faults are
//! injected: enqueue replies are lost (and the enqueue retried with its
//! idempotency key), calls are cut by deadlines and dropped futures,
//! workers nack, stall past their lease, lose their stream and connection
//! mid-job, and poison jobs fail every time. Every operation's invocation
//! and outcome is written to a history; after a final drain a checker
//! reads it for lost, phantom and doubly acked jobs, acks on stale leases,
//! overlapping leases, attempt numbering, and the dead-letter set.
//!
//! `JOBQ_FAULT_JOBS` sets the size (20 000 by default); the full run is
//! `JOBQ_FAULT_JOBS=1000000 cargo test --release --test it faults -- --nocapture`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::common::TestServer;
use jobq::config::Config;
use jobq::grpc::pb;
use jobq_client::Client;
use pb::{stream_leases_request::Kind as Out, stream_leases_response::Kind as In};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

const QUEUE: &str = "faults";
const PRODUCERS: usize = 8;
const WORKERS: usize = 16;
const LEASE: Duration = Duration::from_millis(200);
const MAX_ATTEMPTS: u32 = 6;
/// Non-poison jobs meet faults only on their first attempts, so each is
/// acked by attempt `FAULTY_ATTEMPTS + 1` at the latest.
const FAULTY_ATTEMPTS: u32 = 3;
/// Clock slack when comparing the server's deadlines with client times
/// (the same process clock, converted between Instant and SystemTime).
const SLACK: Duration = Duration::from_millis(2);

/// One thing a client saw.
#[derive(Clone, Debug)]
enum Event {
    /// An enqueue attempt for `key`: the id if it answered OK.
    Enqueue { key: String, id: Option<String> },
    /// A lease received by a worker on connection `conn`.
    Delivered {
        key: String,
        id: String,
        attempt: u32,
        token: String,
        received: SystemTime,
        deadline: SystemTime,
        conn: u64,
    },
    /// An ack or nack on `token`, invoked at `invoked`, and how it ended.
    Settle {
        id: String,
        token: String,
        kind: Settle,
        invoked: SystemTime,
        ok: bool,
        dead_lettered: bool,
    },
    /// A worker's connection was cut by the harness.
    Killed { conn: u64, at: SystemTime },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    Ack,
    Nack,
}

/// What the worker does with one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Ack,
    UnaryAck,
    Nack,
    Stall,
    Kill,
}

/// The action for a delivery, decided from the job and attempt alone, so
/// the outcome per job does not depend on timing.
fn action(key: &str, attempt: u32) -> Action {
    if key.starts_with('p') {
        return Action::Nack;
    }
    if attempt > FAULTY_ATTEMPTS {
        return Action::Ack;
    }
    let roll = fnv(key, attempt) % 1000;
    match roll {
        0..=49 => Action::Nack,
        50..=54 => Action::Stall,
        55..=64 => Action::Kill,
        65..=84 => Action::UnaryAck,
        _ => Action::Ack,
    }
}

fn fnv(key: &str, attempt: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn jobs() -> usize {
    std::env::var("JOBQ_FAULT_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_duplicated_or_acked_on_a_stale_lease_under_faults() {
    let total = jobs();
    let server = TestServer::start_with(Config {
        queue_capacity: total + 1000,
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(20),
        max_attempts: MAX_ATTEMPTS,
        ..Config::defaults()
    })
    .await;
    let address = format!("http://{}", server.addr);
    let keys: Vec<String> = (0..total)
        .map(|n| {
            // One job in 200 is poison: it fails every delivery.
            if n % 200 == 7 {
                format!("p{n}")
            } else {
                format!("j{n}")
            }
        })
        .collect();
    let poison: HashSet<String> = keys
        .iter()
        .filter(|k| k.starts_with('p'))
        .cloned()
        .collect();

    // Workers first, so jobs flow while producers run.
    let settled = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        workers.push(tokio::spawn(worker(
            address.clone(),
            w as u64,
            Arc::clone(&settled),
            Arc::clone(&stop),
        )));
    }
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let mine: Vec<String> = keys.iter().skip(p).step_by(PRODUCERS).cloned().collect();
        producers.push(tokio::spawn(producer(address.clone(), p as u64, mine)));
    }
    let mut history = Vec::new();
    for producer in producers {
        history.extend(producer.await.expect("producer"));
    }
    // Every job is acked or dead-lettered exactly once; wait for all. The
    // workers see most of it; a poison job whose last nack came after its
    // lease ran out (a slow machine) is dead-lettered by the expiry, which
    // no worker sees, so the queue's own counts say when all are done.
    let patience = Duration::from_secs(60) + Duration::from_millis(total as u64 / 5);
    let started = tokio::time::Instant::now();
    loop {
        if settled.load(Ordering::Relaxed) >= total as u64 {
            break;
        }
        let left = server
            .counts(QUEUE)
            .await
            .map_or(1, |c| c.ready + c.scheduled + c.leased);
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < patience,
            "only {} of {total} jobs settled, {left} still in the queue",
            settled.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        history.extend(worker.await.expect("worker"));
    }

    let dead = dead_letters(&server).await;
    let info = server.info(QUEUE).await.expect("queue");
    assert_eq!(
        (info.counts.ready, info.counts.scheduled, info.counts.leased),
        (0, 0, 0),
        "the queue drained"
    );
    let report = check(&history, &keys, &poison, &dead);
    println!("{report}");
    assert!(report.violations.is_empty(), "{report}");
}

/// The dead-letter set's job ids.
async fn dead_letters(server: &TestServer) -> HashSet<String> {
    let mut admin = crate::common::admin(server);
    let mut ids = HashSet::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_jobs(pb::ListJobsRequest {
                queue: QUEUE.into(),
                state: pb::JobState::Dead as i32,
                page_size: 1000,
                page_token,
            })
            .await
            .expect("list")
            .into_inner();
        ids.extend(page.jobs.into_iter().filter_map(|j| j.job.map(|j| j.id)));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

async fn connect(address: &str) -> Channel {
    Endpoint::from_shared(address.to_string())
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Enqueues `keys`, each with its key as payload and idempotency key,
/// injecting lost replies and cut calls, and retrying until an OK.
async fn producer(address: String, seed: u64, keys: Vec<String>) -> Vec<Event> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let channel = connect(&address).await;
    let mut raw = pb::job_queue_client::JobQueueClient::new(channel.clone());
    let client = Client::from_channel(channel);
    let mut history = Vec::new();
    for key in keys {
        let job = || pb::NewJob {
            payload: key.clone().into_bytes().into(),
            max_attempts: MAX_ATTEMPTS,
            idempotency_key: key.clone(),
            ..pb::NewJob::default()
        };
        loop {
            let roll: u32 = rng.random_range(0..100);
            let id = match roll {
                // The reply is lost: the caller never learns the outcome.
                0..=2 => {
                    let _ = raw.enqueue(enqueue_request(job())).await;
                    None
                }
                // The call is cut: a deadline the server enforces, or the
                // caller dropping the call mid-flight.
                3..=4 => {
                    let mut request = tonic::Request::new(enqueue_request(job()));
                    request.set_timeout(Duration::from_micros(50));
                    raw.enqueue(request)
                        .await
                        .ok()
                        .map(|r| r.into_inner().job_id)
                }
                5..=6 => tokio::time::timeout(
                    Duration::from_micros(100),
                    raw.enqueue(enqueue_request(job())),
                )
                .await
                .ok()
                .and_then(Result::ok)
                .map(|r| r.into_inner().job_id),
                // Over the client's producer stream.
                7..=39 => client
                    .enqueue(QUEUE, key.clone())
                    .max_attempts(MAX_ATTEMPTS)
                    .idempotency_key(key.clone())
                    .send()
                    .await
                    .ok(),
                _ => raw
                    .enqueue(enqueue_request(job()))
                    .await
                    .ok()
                    .map(|r| r.into_inner().job_id),
            };
            let done = id.is_some();
            history.push(Event::Enqueue {
                key: key.clone(),
                id,
            });
            if done {
                break;
            }
        }
    }
    history
}

fn enqueue_request(job: pb::NewJob) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: QUEUE.into(),
        job: Some(job),
        wait_for_room: false,
    }
}

/// One worker: a stream with one credit on its own connection, acting on
/// each delivery as [`action`] says, reconnecting after each kill.
async fn worker(
    address: String,
    id: u64,
    settled: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Vec<Event> {
    let mut history = Vec::new();
    let mut conn = id << 32;
    while !stop.load(Ordering::Relaxed) {
        conn += 1;
        let channel = connect(&address).await;
        let mut unary = pb::job_queue_client::JobQueueClient::new(connect(&address).await);
        let (tx, rx) = mpsc::channel(16);
        let _ = tx
            .send(request(Out::Open(pb::StreamOpen {
                queue: QUEUE.into(),
                credits: 1,
                lease_duration: Some(LEASE.try_into().expect("duration")),
            })))
            .await;
        let mut inbound = pb::job_queue_client::JobQueueClient::new(channel.clone())
            .stream_leases(ReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        // Settles sent on the stream, awaiting their results.
        let mut waiting: HashMap<u64, (String, String, Settle, SystemTime)> = HashMap::new();
        let mut next_request = 0_u64;
        let killed = loop {
            let message = tokio::select! {
                message = inbound.message() => message,
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    if stop.load(Ordering::Relaxed) && waiting.is_empty() {
                        break false;
                    }
                    continue;
                }
            };
            let Ok(Some(message)) = message else {
                panic!("worker stream ended: {message:?}");
            };
            match message.kind {
                Some(In::Result(result)) => {
                    let (id, token, kind, invoked) = waiting
                        .remove(&result.request_id)
                        .expect("a result we asked for");
                    let ok = result.code == Code::Ok as i32;
                    let dead_lettered =
                        ok && result.nack_outcome == pb::NackOutcome::DeadLettered as i32;
                    if ok && (kind == Settle::Ack || dead_lettered) {
                        settled.fetch_add(1, Ordering::Relaxed);
                    }
                    history.push(Event::Settle {
                        id,
                        token,
                        kind,
                        invoked,
                        ok,
                        dead_lettered,
                    });
                }
                Some(In::Lease(lease)) => {
                    let job = lease.job.expect("job");
                    let key = String::from_utf8(job.payload.to_vec()).expect("utf-8");
                    let deadline = lease
                        .lease_deadline
                        .and_then(|t| SystemTime::try_from(t).ok())
                        .expect("deadline");
                    history.push(Event::Delivered {
                        key: key.clone(),
                        id: job.id.clone(),
                        attempt: lease.attempt,
                        token: lease.lease_token.clone(),
                        received: SystemTime::now(),
                        deadline,
                        conn,
                    });
                    let act = action(&key, lease.attempt);
                    if act == Action::Kill {
                        // The stream and both connections go away mid-job.
                        history.push(Event::Killed {
                            conn,
                            at: SystemTime::now(),
                        });
                        break true;
                    }
                    if act == Action::Stall {
                        // Past the lease, then a late ack, which must fail.
                        let late = deadline
                            .duration_since(SystemTime::now())
                            .unwrap_or_default()
                            + Duration::from_millis(30);
                        tokio::time::sleep(late).await;
                    }
                    let invoked = SystemTime::now();
                    if act == Action::UnaryAck {
                        let ok = unary
                            .ack(pb::AckRequest {
                                queue: QUEUE.into(),
                                lease_tokens: vec![lease.lease_token.clone()],
                            })
                            .await
                            .is_ok();
                        if ok {
                            settled.fetch_add(1, Ordering::Relaxed);
                        }
                        history.push(Event::Settle {
                            id: job.id,
                            token: lease.lease_token,
                            kind: Settle::Ack,
                            invoked,
                            ok,
                            dead_lettered: false,
                        });
                        continue;
                    }
                    next_request += 1;
                    let (kind, message) = if act == Action::Nack {
                        (
                            Settle::Nack,
                            Out::Nack(pb::StreamNack {
                                request_id: next_request,
                                lease_token: lease.lease_token.clone(),
                                reason: "injected failure".into(),
                                ..pb::StreamNack::default()
                            }),
                        )
                    } else {
                        (
                            Settle::Ack,
                            Out::Ack(pb::StreamAck {
                                request_id: next_request,
                                lease_token: lease.lease_token.clone(),
                            }),
                        )
                    };
                    waiting.insert(next_request, (job.id, lease.lease_token, kind, invoked));
                    tx.send(request(message)).await.expect("stream open");
                }
                // This suite never pauses its queue.
                Some(In::QueueState(state)) => panic!("unexpected queue state {state:?}"),
                None => panic!("empty message"),
            }
        };
        drop((inbound, tx, channel, unary));
        if !killed {
            break;
        }
    }
    history
}

fn request(kind: Out) -> pb::StreamLeasesRequest {
    pb::StreamLeasesRequest { kind: Some(kind) }
}

/// What the checker found.
#[derive(Debug, Default)]
struct Report {
    keys: usize,
    enqueue_calls: usize,
    enqueue_unknown: usize,
    delivered: usize,
    redelivered_after_nack: usize,
    redelivered_after_expiry: usize,
    redelivered_after_kill: usize,
    acked: usize,
    dead: usize,
    /// Dead-lettered by their last lease running out, not by a nack.
    dead_by_expiry: usize,
    stale_acks_refused: usize,
    violations: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "jobs {} | enqueue calls {} ({} without an answer, retried) | delivered {} | redelivered: after nack {}, after lease expiry {}, after a lost connection {} | acked {} | dead-lettered {} ({} by a last lease running out) | late acks refused {} | violations {}",
            self.keys,
            self.enqueue_calls,
            self.enqueue_unknown,
            self.delivered,
            self.redelivered_after_nack,
            self.redelivered_after_expiry,
            self.redelivered_after_kill,
            self.acked,
            self.dead,
            self.dead_by_expiry,
            self.stale_acks_refused,
            self.violations.len()
        )?;
        for v in self.violations.iter().take(20) {
            writeln!(f, "  {v}")?;
        }
        Ok(())
    }
}

struct Delivery<'a> {
    attempt: u32,
    token: &'a str,
    received: SystemTime,
    deadline: SystemTime,
    conn: u64,
}

/// Checks the history against the guarantees.
fn check(
    history: &[Event],
    keys: &[String],
    poison: &HashSet<String>,
    dead_ids: &HashSet<String>,
) -> Report {
    let mut report = Report {
        keys: keys.len(),
        ..Report::default()
    };
    let mut v = Vec::new();

    // Enqueues: every key got an OK, and all OK answers for a key name one
    // job (the idempotency key made retries harmless).
    let mut id_of: HashMap<&str, &str> = HashMap::new();
    for event in history {
        if let Event::Enqueue { key, id } = event {
            report.enqueue_calls += 1;
            match id {
                None => report.enqueue_unknown += 1,
                Some(id) => {
                    if let Some(first) = id_of.insert(key, id)
                        && first != id
                    {
                        v.push(format!(
                            "{key}: enqueue retries made two jobs, {first} and {id}"
                        ));
                    }
                }
            }
        }
    }
    for key in keys {
        if !id_of.contains_key(key.as_str()) {
            v.push(format!("{key}: never enqueued OK"));
        }
    }
    let key_of: HashMap<&str, &str> = id_of.iter().map(|(k, id)| (*id, *k)).collect();

    // Deliveries per job, by attempt.
    let mut deliveries: HashMap<&str, BTreeMap<u32, Delivery>> = HashMap::new();
    let mut kills: HashMap<u64, SystemTime> = HashMap::new();
    let mut settles: HashMap<&str, Vec<(&Event, SystemTime)>> = HashMap::new();
    for event in history {
        match event {
            Event::Delivered {
                key,
                id,
                attempt,
                token,
                received,
                deadline,
                conn,
            } => {
                report.delivered += 1;
                match key_of.get(id.as_str()) {
                    None => v.push(format!("{id}: delivered but never enqueued")),
                    Some(k) if k != key => {
                        v.push(format!("{id}: delivered as {key}, enqueued as {k}"))
                    }
                    Some(_) => {}
                }
                let previous = deliveries.entry(id).or_default().insert(
                    *attempt,
                    Delivery {
                        attempt: *attempt,
                        token,
                        received: *received,
                        deadline: *deadline,
                        conn: *conn,
                    },
                );
                if previous.is_some() {
                    v.push(format!("{id}: attempt {attempt} delivered twice"));
                }
            }
            Event::Killed { conn, at } => {
                kills.insert(*conn, *at);
            }
            Event::Settle { id, invoked, .. } => {
                settles.entry(id).or_default().push((event, *invoked));
            }
            Event::Enqueue { .. } => {}
        }
    }

    let mut acked_ids = HashSet::new();
    for (id, by_attempt) in &deliveries {
        // Attempts are 1, 2, 3... with no gap and within the limit.
        let attempts: Vec<u32> = by_attempt.keys().copied().collect();
        let expected: Vec<u32> = (1..=attempts.len() as u32).collect();
        if attempts != expected {
            v.push(format!("{id}: attempts {attempts:?}"));
        }
        if attempts.last().copied().unwrap_or(0) > MAX_ATTEMPTS {
            v.push(format!(
                "{id}: {attempts:?} passes the limit {MAX_ATTEMPTS}"
            ));
        }
        let job_settles = settles.get(id).map(Vec::as_slice).unwrap_or_default();
        let token_attempt: HashMap<&str, u32> =
            by_attempt.values().map(|d| (d.token, d.attempt)).collect();
        let mut acks = 0;
        for (event, invoked) in job_settles {
            let Event::Settle {
                token, kind, ok, ..
            } = event
            else {
                continue;
            };
            let Some(&attempt) = token_attempt.get(token.as_str()) else {
                v.push(format!("{id}: settled a token never delivered"));
                continue;
            };
            let delivery = &by_attempt[&attempt];
            if !ok {
                if *invoked > delivery.deadline {
                    report.stale_acks_refused += 1;
                }
                continue;
            }
            // Accepted: the lease was the latest and live when invoked.
            if *invoked > delivery.deadline + SLACK {
                v.push(format!(
                    "{id}: {kind:?} accepted after its lease's deadline"
                ));
            }
            if let Some(next) = by_attempt.get(&(attempt + 1))
                && next.received + SLACK < *invoked
            {
                v.push(format!(
                    "{id}: {kind:?} on attempt {attempt} accepted after attempt {} was delivered",
                    attempt + 1
                ));
            }
            if *kind == Settle::Ack {
                acks += 1;
            }
        }
        if acks > 1 {
            v.push(format!("{id}: acked {acks} times"));
        }
        if acks == 1 {
            acked_ids.insert(*id);
        }

        // Consecutive leases do not overlap: lease k was surely live until
        // its deadline or the first thing that could end it (a settle, or
        // its connection cut), and lease k+1 began at its deadline less
        // the lease length.
        for (attempt, delivery) in by_attempt {
            let Some(next) = by_attempt.get(&(attempt + 1)) else {
                continue;
            };
            let next_start = next.deadline.checked_sub(LEASE).unwrap_or(next.deadline);
            let mut live_until = delivery.deadline;
            let mut cause = "expiry";
            for (event, invoked) in job_settles {
                if let Event::Settle { token, .. } = event
                    && token == delivery.token
                    && *invoked < live_until
                {
                    live_until = *invoked;
                    cause = "nack";
                }
            }
            if let Some(&cut) = kills.get(&delivery.conn)
                && cut >= delivery.received
                && cut < live_until
            {
                live_until = cut;
                cause = "kill";
            }
            if next_start + SLACK < live_until {
                v.push(format!(
                    "{id}: attempt {} began {:?} before attempt {attempt}'s lease could have ended",
                    attempt + 1,
                    live_until.duration_since(next_start).unwrap_or_default()
                ));
            }
            match cause {
                "nack" => report.redelivered_after_nack += 1,
                "kill" => report.redelivered_after_kill += 1,
                _ => report.redelivered_after_expiry += 1,
            }
        }
    }

    // The nacks that answered "dead-lettered" name the dead-letter set.
    let nacked_dead: HashSet<&str> = history
        .iter()
        .filter_map(|e| match e {
            Event::Settle {
                id,
                dead_lettered: true,
                ..
            } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let dead_set: HashSet<&str> = dead_ids.iter().map(String::as_str).collect();
    // A job whose last attempt's lease ran out before its nack arrived is
    // dead-lettered by the expiry: no nack says so. Only its last allowed
    // attempt may end that way, with no settle accepted on it.
    let accepted: HashSet<&str> = history
        .iter()
        .filter_map(|e| match e {
            Event::Settle {
                token, ok: true, ..
            } => Some(token.as_str()),
            _ => None,
        })
        .collect();
    let mut last_delivery: HashMap<&str, (u32, &str)> = HashMap::new();
    for event in history {
        if let Event::Delivered {
            id, attempt, token, ..
        } = event
        {
            let last = last_delivery
                .entry(id.as_str())
                .or_insert((*attempt, token));
            if *attempt >= last.0 {
                *last = (*attempt, token);
            }
        }
    }
    for id in dead_set.difference(&nacked_dead) {
        match last_delivery.get(id) {
            Some((attempt, token)) if *attempt >= MAX_ATTEMPTS && !accepted.contains(token) => {
                report.dead_by_expiry += 1;
            }
            _ => v.push(format!(
                "{id}: in the dead-letter set, but no nack said so and its last lease did not run out on its last attempt"
            )),
        }
    }
    for id in nacked_dead.difference(&dead_set) {
        v.push(format!(
            "{id}: a nack answered dead-lettered, but it is not in the dead-letter set"
        ));
    }

    // Every enqueued job ends acked or dead; the dead are the poison.
    report.acked = acked_ids.len();
    report.dead = dead_ids.len();
    for (key, id) in &id_of {
        let acked = acked_ids.contains(id);
        let dead = dead_ids.contains(*id);
        match (acked, dead) {
            (false, false) => v.push(format!("{key} ({id}): lost: neither acked nor dead")),
            (true, true) => v.push(format!("{key} ({id}): both acked and dead")),
            _ => {}
        }
        if dead != poison.contains(*key) {
            v.push(format!(
                "{key} ({id}): dead-lettered {dead}, poison {}",
                !dead
            ));
        }
    }
    report.violations = v;
    report
}

#[test]
fn the_checker_allows_a_last_lease_running_out_and_nothing_else_unsaid() {
    let keys = vec!["p1".to_string()];
    let poison: HashSet<String> = keys.iter().cloned().collect();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    // A poison job delivered up to `last`, each attempt nacked (the last
    // nack refused: its lease had run out) and one second apart.
    let history = |last: u32| {
        let mut events = vec![Event::Enqueue {
            key: "p1".into(),
            id: Some("j".into()),
        }];
        for attempt in 1..=last {
            let received = at + Duration::from_secs(u64::from(attempt));
            events.push(Event::Delivered {
                key: "p1".into(),
                id: "j".into(),
                attempt,
                token: format!("t{attempt}"),
                received,
                deadline: received + LEASE,
                conn: 1,
            });
            events.push(Event::Settle {
                id: "j".into(),
                token: format!("t{attempt}"),
                kind: Settle::Nack,
                invoked: received,
                ok: attempt < last,
                dead_lettered: false,
            });
        }
        events
    };
    let dead: HashSet<String> = ["j".to_string()].into();
    let report = check(&history(MAX_ATTEMPTS), &keys, &poison, &dead);
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.dead_by_expiry, 1);
    // Dead on an earlier attempt, with no nack saying so: a violation.
    let report = check(&history(2), &keys, &poison, &dead);
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("no nack said so")),
        "{report}"
    );
}
