//! MemoryEngine behaviour: waiting, waking and limits, with Tokio's clock paused so
//! time only moves when every task is idle.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::*;
use crate::queue::QueueConfig;
use crate::queue::cost::{FINISHED_OVERHEAD_BYTES, JOB_OVERHEAD_BYTES};

const SEC: Duration = Duration::from_secs(1);

fn name(s: &str) -> QueueName {
    QueueName::new(s).expect("valid name")
}

fn job(payload: &'static str) -> NewJob {
    NewJob {
        payload: Bytes::from_static(payload.as_bytes()),
        ..NewJob::default()
    }
}

fn engine_with(capacity: usize, memory_budget: u64) -> MemoryEngine {
    MemoryEngine::new(EngineConfig {
        queue_defaults: QueueConfig {
            capacity,
            ..QueueConfig::default()
        },
        memory_budget,
        max_queues: 4,
        ..EngineConfig::default()
    })
}

fn engine() -> MemoryEngine {
    engine_with(100, 1 << 20)
}

#[tokio::test(start_paused = true)]
async fn long_poll_wakes_when_a_job_arrives() {
    let b = engine();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lease(name("q"), 1, None, 30 * SEC).await })
    };
    tokio::task::yield_now().await;
    let start = Instant::now();
    b.enqueue(name("q"), vec![job("hello")], None)
        .await
        .expect("enqueue");
    let got = waiter.await.expect("join").expect("lease");
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].job.payload[..], b"hello");
    assert_eq!(Instant::now(), start, "woken without any time passing");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_long_poll_takes_nothing_and_passes_its_wake_up_on() {
    let b = engine();
    // Two waiters; the first is cancelled (its client went away) while
    // waiting, as a dropped RPC future is.
    let cancelled = {
        let b = b.clone();
        tokio::spawn(async move { b.lease(name("q"), 1, None, 30 * SEC).await })
    };
    let other = {
        let b = b.clone();
        tokio::spawn(async move { b.lease(name("q"), 1, None, 30 * SEC).await })
    };
    tokio::task::yield_now().await;
    cancelled.abort();
    assert!(cancelled.await.expect_err("aborted").is_cancelled());
    b.enqueue(name("q"), vec![job("once")], None)
        .await
        .expect("enqueue");
    let got = other.await.expect("join").expect("lease");
    assert_eq!(got.len(), 1, "the job went to the waiter still there");
    assert_eq!(
        got[0].attempt, 1,
        "and was never taken by the cancelled one"
    );
    let counts = b.queue_info(&name("q")).expect("queue").counts;
    assert_eq!((counts.ready, counts.leased), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn long_poll_returns_empty_when_the_wait_runs_out() {
    let b = engine();
    let start = Instant::now();
    let got = b.lease(name("q"), 1, None, 5 * SEC).await.expect("lease");
    assert!(got.is_empty());
    assert_eq!(Instant::now() - start, 5 * SEC);
}

#[tokio::test(start_paused = true)]
async fn many_waiters_all_get_a_job_from_one_batch() {
    let b = engine();
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.lease(name("q"), 1, None, 30 * SEC).await })
        })
        .collect();
    tokio::task::yield_now().await;
    let jobs = (0..5).map(|_| job("x")).collect();
    b.enqueue(name("q"), jobs, None).await.expect("enqueue");
    let start = Instant::now();
    for w in waiters {
        assert_eq!(w.await.expect("join").expect("lease").len(), 1);
    }
    assert_eq!(Instant::now(), start);
}

#[tokio::test(start_paused = true)]
async fn timer_redelivers_an_expired_lease_to_a_waiting_worker() {
    let b = engine();
    b.enqueue(name("q"), vec![job("a")], None)
        .await
        .expect("enqueue");
    let first = b
        .lease(name("q"), 1, Some(10 * SEC), Duration::ZERO)
        .await
        .expect("lease")
        .remove(0);
    let start = Instant::now();
    let again = b
        .lease(name("q"), 1, None, 60 * SEC)
        .await
        .expect("lease")
        .remove(0);
    assert_eq!(Instant::now() - start, 10 * SEC);
    assert_eq!(again.job.id, first.job.id);
    assert_eq!(again.attempt, 2);
}

#[tokio::test(start_paused = true)]
async fn delayed_job_wakes_a_waiting_worker_at_its_time() {
    let b = engine();
    let start = Instant::now();
    let delayed = NewJob {
        delay: Some(3 * SEC),
        ..job("later")
    };
    b.enqueue(name("q"), vec![delayed], None)
        .await
        .expect("enqueue");
    let got = b.lease(name("q"), 1, None, 60 * SEC).await.expect("lease");
    assert_eq!(got.len(), 1);
    assert_eq!(Instant::now() - start, 3 * SEC);
}

#[tokio::test(start_paused = true)]
async fn memory_budget_refuses_at_once_and_names_the_limit() {
    let b = engine_with(100, 10 + 2 * JOB_OVERHEAD_BYTES);
    b.enqueue(name("a"), vec![job("12345678")], None)
        .await
        .expect("fits");
    let err = b
        .enqueue(name("b"), vec![job("123")], None)
        .await
        .expect_err("over budget");
    assert_eq!(
        err,
        EngineError::MemoryExhausted {
            limit: 10 + 2 * JOB_OVERHEAD_BYTES,
            used: 8 + JOB_OVERHEAD_BYTES,
            offered: 3 + JOB_OVERHEAD_BYTES
        }
    );
    assert_eq!(b.memory_used(), 8 + JOB_OVERHEAD_BYTES);
}

#[tokio::test(start_paused = true)]
async fn memory_is_given_back_on_ack() {
    let b = engine_with(100, 10 + JOB_OVERHEAD_BYTES);
    b.enqueue(name("a"), vec![job("12345678")], None)
        .await
        .expect("fits");
    let d = b
        .lease(name("a"), 1, None, Duration::ZERO)
        .await
        .expect("lease")
        .remove(0);
    b.ack(&name("a"), &[d.token]).expect("ack");
    // What stays is the record GetJob reads, until its retention ends.
    assert_eq!(b.memory_used(), FINISHED_OVERHEAD_BYTES);
}

#[tokio::test(start_paused = true)]
async fn full_queue_refusal_stores_nothing_and_keeps_no_memory() {
    let b = engine_with(2, 1 << 20);
    b.enqueue(name("q"), vec![job("a")], None)
        .await
        .expect("fits");
    let err = b
        .enqueue(name("q"), vec![job("b"), job("c")], None)
        .await
        .expect_err("full");
    assert!(matches!(err, EngineError::Queue(QueueError::Full { .. })));
    assert_eq!(b.memory_used(), 1 + JOB_OVERHEAD_BYTES);
    assert_eq!(b.counts(&name("q")).expect("exists").ready, 1);
}

#[tokio::test(start_paused = true)]
async fn waiting_enqueue_is_stored_once_an_ack_makes_room() {
    let b = engine_with(1, 1 << 20);
    b.enqueue(name("q"), vec![job("a")], None)
        .await
        .expect("fits");
    let producer = {
        let b = b.clone();
        tokio::spawn(async move { b.enqueue(name("q"), vec![job("b")], Some(60 * SEC)).await })
    };
    let d = b
        .lease(name("q"), 1, None, Duration::ZERO)
        .await
        .expect("lease")
        .remove(0);
    tokio::time::sleep(5 * SEC).await;
    assert!(!producer.is_finished());
    b.ack(&name("q"), &[d.token]).expect("ack");
    let ids = producer.await.expect("join").expect("stored after room");
    assert_eq!(ids.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn waiting_enqueue_gives_up_at_its_deadline() {
    let b = engine_with(1, 1 << 20);
    b.enqueue(name("q"), vec![job("a")], None)
        .await
        .expect("fits");
    let start = Instant::now();
    let err = b
        .enqueue(name("q"), vec![job("b")], Some(2 * SEC))
        .await
        .expect_err("still full");
    assert!(matches!(err, EngineError::Queue(QueueError::Full { .. })));
    assert_eq!(Instant::now() - start, 2 * SEC);
}

#[tokio::test(start_paused = true)]
async fn batch_larger_than_capacity_does_not_wait() {
    let b = engine_with(1, 1 << 20);
    let start = Instant::now();
    let err = b
        .enqueue(name("q"), vec![job("a"), job("b")], Some(60 * SEC))
        .await
        .expect_err("can never fit");
    assert!(matches!(err, EngineError::Queue(QueueError::Full { .. })));
    assert_eq!(Instant::now(), start);
}

#[tokio::test(start_paused = true)]
async fn queue_count_is_limited() {
    let b = engine();
    for q in ["a", "b", "c", "d"] {
        b.enqueue(name(q), vec![job("x")], None).await.expect("ok");
    }
    let err = b
        .enqueue(name("e"), vec![job("x")], None)
        .await
        .expect_err("fifth queue");
    assert!(matches!(err, EngineError::TooManyQueues { limit: 4, .. }));
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_long_polls_early_and_refuses_new_work() {
    let b = engine();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lease(name("q"), 1, None, 60 * SEC).await })
    };
    tokio::task::yield_now().await;
    let start = Instant::now();
    b.shutdown();
    let got = waiter.await.expect("join").expect("empty, not an error");
    assert!(got.is_empty());
    assert_eq!(Instant::now(), start);
    assert_eq!(
        b.enqueue(name("q"), vec![job("x")], None).await,
        Err(EngineError::ShuttingDown)
    );
    assert_eq!(
        b.lease(name("q"), 1, None, SEC).await.map(|v| v.len()),
        Err(EngineError::ShuttingDown)
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_queue_holds_no_lease() {
    let b = engine();
    let token: LeaseToken = "0".repeat(48).parse().expect("well-formed");
    assert!(matches!(
        b.ack(&name("nope"), &[token]),
        Err(EngineError::Queue(QueueError::LeaseNotFound { .. }))
    ));
}

/// A durable engine on a fresh directory of this test process, and the
/// directory (removed by the caller).
pub(super) fn durable_engine(
    name: &str,
) -> (
    MemoryEngine,
    crate::engine::journal::Journal,
    std::path::PathBuf,
) {
    let dir = std::env::temp_dir().join(format!("jobq-engine-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let (engine, journal) = reopen(&dir);
    (engine, journal, dir)
}

/// A durable engine on what `dir`'s journal holds.
pub(super) fn reopen(dir: &std::path::Path) -> (MemoryEngine, crate::engine::journal::Journal) {
    use crate::engine::journal::{self, Journal, JournalOptions, RecoveryMode};
    let mut recovery = crate::engine::Recovery::default();
    let replayed = journal::replay(dir, RecoveryMode::Strict, |seq, record| {
        recovery.apply(seq, record);
    })
    .expect("replay");
    let options = JournalOptions {
        segment_bytes: 64 << 10,
        ..JournalOptions::default()
    };
    let journal = Journal::open(dir, replayed.next_seq, options).expect("journal");
    let (engine, _) = MemoryEngine::durable(
        EngineConfig::default(),
        std::sync::Arc::new(crate::engine::NoObserver),
        journal.clone(),
        recovery,
    );
    (engine, journal)
}

/// Enqueues and acks 16 KiB at a time through `queue` until compaction has
/// deleted the journal's first segment.
pub(super) async fn churn_until_compacted(
    engine: &MemoryEngine,
    journal: &crate::engine::journal::Journal,
    queue: &QueueName,
) {
    use crate::engine::{Consume, Produce};
    let big = NewJob {
        payload: Bytes::from(vec![7u8; 4 << 10]),
        ..NewJob::default()
    };
    let first_segment = journal.segments().expect("segments")[0].path.clone();
    let mut rounds = 0;
    while first_segment.exists() {
        rounds += 1;
        assert!(
            rounds < 10_000,
            "compaction never removed the first segment"
        );
        Produce::enqueue(engine, queue.clone(), vec![big.clone(); 4], None)
            .await
            .expect("enqueue");
        let leased = Consume::lease(engine, queue.clone(), 4, None, Duration::ZERO)
            .await
            .expect("lease");
        let tokens: Vec<_> = leased.iter().map(|d| d.token).collect();
        Consume::ack(engine, queue, &tokens).await.expect("ack");
        tokio::task::yield_now().await;
    }
}

pub(super) async fn stop(engine: MemoryEngine, journal: crate::engine::journal::Journal) {
    engine.shutdown();
    crate::engine::Engine::stopped(&engine).await;
    tokio::task::spawn_blocking(move || journal.close())
        .await
        .expect("close");
}

#[tokio::test]
async fn an_idempotency_key_outlives_its_job_compaction_and_a_restart() {
    use crate::engine::{Consume, Produce};
    let (engine, journal, dir) = durable_engine("keys");
    let q = name("q");
    let keyed = NewJob {
        payload: Bytes::from_static(b"charge"),
        idempotency_key: Some("order-7".into()),
        ..NewJob::default()
    };
    let first = Produce::enqueue(&engine, q.clone(), vec![keyed.clone()], None)
        .await
        .expect("enqueue")[0]
        .id;
    let leased = Consume::lease(&engine, q.clone(), 1, None, Duration::ZERO)
        .await
        .expect("lease");
    Consume::ack(&engine, &q, &[leased[0].token])
        .await
        .expect("ack");
    // Enough acked traffic after it that compaction deletes the segment
    // that recorded the key.
    churn_until_compacted(&engine, &journal, &q).await;
    // The key was copied; no job was live to copy.
    let copied = journal.progress().copied_bytes;
    assert!(copied > 0 && copied < 1 << 10, "{copied}");
    stop(engine, journal).await;

    let (engine, journal) = reopen(&dir);
    let again = Produce::enqueue(&engine, q.clone(), vec![keyed], None)
        .await
        .expect("enqueue");
    assert!(again[0].duplicate, "the key was forgotten: {again:?}");
    assert_eq!(again[0].id, first);
    assert_eq!(engine.jobs_held(), 0);
    stop(engine, journal).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_full_data_dir_refuses_new_jobs_but_never_an_ack() {
    use crate::engine::{Consume, Produce};
    let (engine, journal, dir) = durable_engine("full");
    let q = name("q");
    Produce::enqueue(&engine, q.clone(), vec![job("first")], None)
        .await
        .expect("room enough");
    // Less than the two segments compaction keeps room for.
    journal.pretend_free_for_test(100 << 10);
    let refused = Produce::enqueue(&engine, q.clone(), vec![job("second")], None)
        .await
        .expect_err("no room");
    assert!(
        matches!(refused, EngineError::DataDirFull { free, held: 1, .. } if free == 100 << 10),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("data dir is full"),
        "{refused}"
    );
    // The job already held still settles.
    let leased = Consume::lease(&engine, q.clone(), 1, None, Duration::ZERO)
        .await
        .expect("lease");
    journal.pretend_free_for_test(0);
    let acked = Consume::ack(&engine, &q, &[leased[0].token])
        .await
        .expect("an ack always has room");
    assert_eq!(acked, 1);
    assert_eq!(engine.jobs_held(), 0);
    stop(engine, journal).await;
    let _ = std::fs::remove_dir_all(&dir);
}
