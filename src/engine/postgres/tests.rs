//! The PostgreSQL engine against a real database, each test in a schema of
//! its own (see `testing.rs`); skipped, saying so, when none answers.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;

use super::testing::TestSchema;
use super::{PgEngine, PgOptions};
use crate::engine::{Consume, EngineConfig, EngineError, Operate, Produce, PurgeTarget};
use crate::queue::{
    JobState, LeaseToken, NackOutcome, NackRequest, NewJob, QueueConfig, QueueError, QueueName,
};

fn queue(name: &str) -> QueueName {
    QueueName::new(name).expect("valid name")
}

fn job(payload: &str) -> NewJob {
    NewJob {
        payload: Bytes::from(payload.to_string()),
        metadata: vec![("k".into(), "v".into())],
        ..NewJob::default()
    }
}

fn config(defaults: QueueConfig) -> EngineConfig {
    EngineConfig {
        queue_defaults: defaults,
        ..EngineConfig::default()
    }
}

async fn connect(schema: &TestSchema, defaults: QueueConfig) -> PgEngine {
    connect_with(schema, config(defaults)).await
}

/// A replica on `schema` with `config`.
pub(super) async fn connect_with(schema: &TestSchema, config: EngineConfig) -> PgEngine {
    PgEngine::connect(&PgOptions::new(schema.url()), config)
        .await
        .expect("connect")
}

/// A schema and an engine on it, or a skip.
macro_rules! setup {
    ($test:literal) => {
        setup!($test, QueueConfig::default())
    };
    ($test:literal, $defaults:expr) => {{
        let Some(schema) = TestSchema::create($test).await else {
            return;
        };
        let engine = connect(&schema, $defaults).await;
        (schema, engine)
    }};
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn jobs_are_leased_in_priority_then_arrival_order_and_acked_once() {
    let (_schema, engine) = setup!("pg_lease_order");
    let q = queue("emails");
    let mut high = job("high");
    high.priority = 5;
    engine
        .enqueue(q.clone(), vec![job("a"), job("b"), high], None)
        .await
        .expect("enqueue");
    let leased = engine.lease(q.clone(), 3, None, WAIT).await.expect("lease");
    let payloads: Vec<&[u8]> = leased.iter().map(|d| d.job.payload.as_ref()).collect();
    assert_eq!(payloads, [b"high".as_ref(), b"a", b"b"]);
    assert_eq!(
        leased[1].job.metadata.to_vec(),
        [("k".to_string(), "v".to_string())]
    );
    assert!(leased.iter().all(|d| d.attempt == 1));
    let tokens: Vec<LeaseToken> = leased.iter().map(|d| d.token).collect();
    assert_eq!(engine.ack(&q, &tokens).await.expect("ack"), 3);
    let again = engine.ack(&q, &tokens[..1]).await;
    assert!(
        matches!(
            again,
            Err(EngineError::Queue(QueueError::LeaseNotFound { .. }))
        ),
        "{again:?}"
    );
    let (_, status) = engine
        .find_job(Some(&q), &tokens[0].job)
        .await
        .expect("find");
    assert_eq!(status.state, JobState::Acked);
    assert!(status.job.payload.is_empty());
    assert_eq!(status.payload_bytes, 4);
    let info = engine.queue_info(&q).await.expect("info");
    assert_eq!(info.counts.ready + info.counts.leased, 0);
    assert_eq!(info.stats.enqueued, 3);
    assert_eq!(info.stats.acked, 3);
}

#[tokio::test]
async fn an_ack_with_one_stale_token_acks_nothing() {
    let (_schema, engine) = setup!("pg_ack_all_or_none");
    let q = queue("q");
    engine
        .enqueue(q.clone(), vec![job("a"), job("b")], None)
        .await
        .expect("enqueue");
    let leased = engine.lease(q.clone(), 2, None, WAIT).await.expect("lease");
    let stale = LeaseToken {
        job: leased[1].token.job,
        delivery: leased[1].token.delivery + 7,
    };
    let refused = engine.ack(&q, &[leased[0].token, stale]).await;
    match refused {
        Err(EngineError::Queue(QueueError::LeaseNotFound { token, .. })) => {
            assert_eq!(token, stale)
        }
        other => panic!("expected LeaseNotFound, got {other:?}"),
    }
    assert_eq!(engine.queue_info(&q).await.expect("info").counts.leased, 2);
    assert_eq!(
        engine
            .ack(&q, &[leased[0].token, leased[0].token])
            .await
            .expect("ack"),
        1
    );
}

#[tokio::test]
async fn a_full_queue_refuses_and_a_waiting_enqueue_gets_in_once_room_is_made() {
    let defaults = QueueConfig {
        capacity: 2,
        ..QueueConfig::default()
    };
    let (_schema, engine) = setup!("pg_capacity", defaults);
    let q = queue("small");
    engine
        .enqueue(q.clone(), vec![job("a"), job("b")], None)
        .await
        .expect("enqueue");
    let full = engine.enqueue(q.clone(), vec![job("c")], None).await;
    assert!(
        matches!(
            full,
            Err(EngineError::Queue(QueueError::Full {
                capacity: 2,
                held: 2,
                offered: 1,
                ..
            }))
        ),
        "{full:?}"
    );
    let waiting = {
        let (engine, q) = (engine.clone(), q.clone());
        tokio::spawn(async move { engine.enqueue(q, vec![job("c")], Some(WAIT)).await })
    };
    let leased = engine.lease(q.clone(), 1, None, WAIT).await.expect("lease");
    engine.ack(&q, &[leased[0].token]).await.expect("ack");
    waiting
        .await
        .expect("join")
        .expect("the waiting enqueue got in");
    assert_eq!(engine.stats().await.expect("stats").jobs_held, 2);
}

#[tokio::test]
async fn an_idempotency_key_stores_one_job_within_the_window() {
    let (_schema, engine) = setup!("pg_keys");
    let q = queue("q");
    let keyed = |payload| NewJob {
        idempotency_key: Some("order-1".into()),
        ..job(payload)
    };
    let first = engine
        .enqueue(q.clone(), vec![keyed("a"), keyed("b")], None)
        .await
        .expect("enqueue");
    assert!(!first[0].duplicate);
    assert!(first[1].duplicate);
    assert_eq!(first[1].id, first[0].id);
    let again = engine
        .enqueue(q.clone(), vec![keyed("c")], None)
        .await
        .expect("enqueue");
    assert!(again[0].duplicate);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(engine.queue_info(&q).await.expect("info").counts.ready, 1);
}

#[tokio::test]
async fn nacks_retry_after_their_delay_then_dead_letter_and_redrive() {
    let defaults = QueueConfig {
        max_attempts: 2,
        ..QueueConfig::default()
    };
    let (_schema, engine) = setup!("pg_nack", defaults);
    let q = queue("q");
    engine
        .enqueue(q.clone(), vec![job("a")], None)
        .await
        .expect("enqueue");
    let first = engine
        .lease(q.clone(), 1, None, WAIT)
        .await
        .expect("lease")
        .remove(0);
    let retry = NackRequest {
        retry_delay: Some(Duration::from_millis(300)),
        reason: "smtp timeout".into(),
        ..NackRequest::default()
    };
    let outcome = engine.nack(&q, &first.token, retry).await.expect("nack");
    assert!(matches!(outcome, NackOutcome::RetryAt(_)));
    let (_, status) = engine.find_job(None, &first.token.job).await.expect("find");
    assert_eq!(status.state, JobState::Scheduled);
    // The stale token of the first delivery changes nothing.
    assert!(
        engine
            .extend(&q, &first.token, Duration::from_secs(5))
            .await
            .is_err()
    );
    let second = engine
        .lease(q.clone(), 1, None, WAIT)
        .await
        .expect("lease")
        .remove(0);
    assert_eq!(second.attempt, 2);
    assert!(second.token.delivery > first.token.delivery);
    let outcome = engine
        .nack(
            &q,
            &second.token,
            NackRequest {
                reason: "again".into(),
                ..NackRequest::default()
            },
        )
        .await
        .expect("nack");
    assert_eq!(outcome, NackOutcome::DeadLettered);
    let (_, status) = engine
        .find_job(Some(&q), &first.token.job)
        .await
        .expect("find");
    assert_eq!(status.state, JobState::Dead);
    assert_eq!(status.last_error.as_deref(), Some("again"));
    let errors: Vec<&str> = status.history.iter().map(|f| f.error.as_str()).collect();
    assert_eq!(errors, ["smtp timeout", "again"]);
    assert_eq!(
        engine
            .redrive(&q, Some(&[first.token.job]))
            .await
            .expect("redrive"),
        1
    );
    let third = engine
        .lease(q.clone(), 1, None, WAIT)
        .await
        .expect("lease")
        .remove(0);
    assert_eq!(third.attempt, 1);
}

#[tokio::test]
async fn an_expired_lease_is_delivered_again_with_the_expiry_recorded() {
    let (_schema, engine) = setup!("pg_expiry");
    let q = queue("q");
    engine
        .enqueue(q.clone(), vec![job("a")], None)
        .await
        .expect("enqueue");
    let first = engine
        .lease(q.clone(), 1, Some(Duration::from_millis(200)), WAIT)
        .await
        .expect("lease")
        .remove(0);
    let second = engine
        .lease(q.clone(), 1, None, WAIT)
        .await
        .expect("lease")
        .remove(0);
    assert_eq!(second.token.job, first.token.job);
    assert_eq!(second.attempt, 2);
    assert!(
        engine.ack(&q, &[first.token]).await.is_err(),
        "a stale token acks nothing"
    );
    let (_, status) = engine
        .find_job(Some(&q), &first.token.job)
        .await
        .expect("find");
    assert!(
        status.history[0].error.contains("lease expired"),
        "{:?}",
        status.history
    );
    engine.ack(&q, &[second.token]).await.expect("ack");
}

#[tokio::test]
async fn a_worker_attachment_holds_its_credits_and_gives_leases_back_when_dropped() {
    let (_schema, engine) = setup!("pg_attachment");
    let q = queue("q");
    engine
        .enqueue(
            q.clone(),
            (0..5).map(|i| job(&i.to_string())).collect(),
            None,
        )
        .await
        .expect("enqueue");
    let worker = engine.attach_worker(q.clone()).await.expect("attach");
    let leased = worker.next_leases(2, 10, None).await.expect("lease");
    assert_eq!(leased.len(), 2);
    // No credit left: the next call waits until an ack gives one back.
    let waiting =
        tokio::time::timeout(Duration::from_millis(300), worker.next_leases(2, 10, None)).await;
    assert!(waiting.is_err(), "leased past its credits");
    worker.ack(&leased[0].token).await.expect("ack");
    let more = worker.next_leases(2, 10, None).await.expect("lease");
    assert_eq!(more.len(), 1);
    assert_eq!(engine.queue_info(&q).await.expect("info").workers, 1);
    drop(worker);
    // Both leases it held come back, as drops: attempts not used up.
    let mut back = Vec::new();
    while back.len() < 4 {
        let next = engine
            .lease(q.clone(), 10, None, WAIT)
            .await
            .expect("lease");
        assert!(!next.is_empty(), "released leases did not come back");
        back.extend(next);
    }
    let again = back
        .iter()
        .find(|d| d.token.job == leased[1].token.job)
        .expect("the dropped lease is back");
    assert_eq!(again.max_attempts, 11, "a drop adds a delivery");
}

#[tokio::test]
async fn an_ack_or_nack_through_another_replica_gives_the_stream_its_credit_back_at_once() {
    let Some(schema) = TestSchema::create("pg_credit_elsewhere").await else {
        return;
    };
    // Leases of a minute: a credit that came back only when the lease ran
    // out would not come back within the test's patience.
    let long = QueueConfig {
        lease_duration: Duration::from_secs(60),
        ..QueueConfig::default()
    };
    let a = connect(&schema, long.clone()).await;
    let b = connect(&schema, long).await;
    let q = queue("q");
    a.enqueue(
        q.clone(),
        (0..3).map(|i| job(&i.to_string())).collect(),
        None,
    )
    .await
    .expect("enqueue");
    let worker = a.attach_worker(q.clone()).await.expect("attach");
    let first = worker.next_leases(1, 1, None).await.expect("lease");
    b.ack(&q, &[first[0].token]).await.expect("ack through b");
    let second = tokio::time::timeout(WAIT, worker.next_leases(1, 1, None))
        .await
        .expect("the credit came back")
        .expect("lease");
    let request = NackRequest {
        retry_delay: Some(Duration::from_secs(600)),
        dead_letter: false,
        reason: "later".into(),
    };
    b.nack(&q, &second[0].token, request)
        .await
        .expect("nack through b");
    let third = tokio::time::timeout(WAIT, worker.next_leases(1, 1, None))
        .await
        .expect("the credit came back")
        .expect("lease");
    assert_eq!(third.len(), 1);
    // Through this replica as well.
    a.ack(&q, &[third[0].token]).await.expect("ack through a");
    let none = tokio::time::timeout(Duration::from_millis(200), worker.next_leases(1, 1, None));
    assert!(
        none.await.is_err(),
        "only the nacked job is left, not due yet"
    );
}

#[tokio::test]
async fn a_lease_that_is_dropped_before_it_returns_leases_nothing() {
    let (_schema, engine) = setup!("pg_cancel_safe");
    let q = queue("q");
    engine
        .enqueue(q.clone(), vec![job("a")], None)
        .await
        .expect("enqueue");
    // Dropped at its first await, whatever the database has done by then.
    for _ in 0..20 {
        let lease = engine.lease(q.clone(), 1, None, WAIT);
        let _ = tokio::time::timeout(Duration::ZERO, lease).await;
    }
    let leased = engine.lease(q.clone(), 1, None, WAIT).await.expect("lease");
    assert_eq!(leased.len(), 1);
    assert_eq!(
        leased[0].attempt, 1,
        "an abandoned lease counted an attempt"
    );
}

#[tokio::test]
async fn two_replicas_share_queues_and_never_lease_one_job_twice() {
    let Some(schema) = TestSchema::create("pg_two_replicas").await else {
        return;
    };
    let a = connect(&schema, QueueConfig::default()).await;
    let b = connect(&schema, QueueConfig::default()).await;
    let q = queue("shared");
    // A worker waiting on b is woken by an enqueue through a.
    let waiting = {
        let (b, q) = (b.clone(), q.clone());
        tokio::spawn(async move { b.lease(q, 1, None, WAIT).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.enqueue(q.clone(), vec![job("x")], None)
        .await
        .expect("enqueue");
    let got = waiting.await.expect("join").expect("lease");
    assert_eq!(got.len(), 1, "b never saw a's job");
    b.ack(&q, &[got[0].token]).await.expect("ack");

    const JOBS: usize = 400;
    a.enqueue(
        q.clone(),
        (0..JOBS).map(|i| job(&i.to_string())).collect(),
        None,
    )
    .await
    .expect("enqueue");
    let mut workers = Vec::new();
    for engine in [a.clone(), b.clone(), a.clone(), b.clone()] {
        let q = q.clone();
        workers.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            loop {
                let leased = engine
                    .lease(q.clone(), 7, None, Duration::from_millis(300))
                    .await
                    .expect("lease");
                if leased.is_empty() {
                    return taken;
                }
                let tokens: Vec<_> = leased.iter().map(|d| d.token).collect();
                engine.ack(&q, &tokens).await.expect("ack of a live lease");
                taken.extend(tokens.iter().map(|t| t.job));
            }
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("join"));
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), JOBS, "a job was leased twice or lost");
    assert_eq!(distinct.len(), JOBS);
    let info = b.queue_info(&q).await.expect("info");
    assert_eq!(info.counts.ready + info.counts.leased, 0);
}

#[tokio::test]
async fn a_gone_replicas_stream_leases_come_back_through_the_heartbeat() {
    let (schema, engine) = setup!("pg_gone_replica");
    let q = queue("q");
    engine
        .enqueue(q.clone(), vec![job("a")], None)
        .await
        .expect("enqueue");
    let leased = engine.lease(q.clone(), 1, None, WAIT).await.expect("lease");
    // As if a replica that has not beaten for a minute held it for a
    // stream.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&schema.url())
        .await
        .expect("connect");
    let ghost = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO jobq_replicas (id, host, seen_at) VALUES ($1, 'gone', now() - interval '1 minute')")
        .bind(ghost)
        .execute(&mut conn)
        .await
        .expect("ghost");
    sqlx::query("UPDATE jobq_jobs SET holder_replica = $1, holder = 1")
        .bind(ghost)
        .execute(&mut conn)
        .await
        .expect("hold");
    let again = engine.lease(q.clone(), 1, None, WAIT).await.expect("lease");
    assert_eq!(again.len(), 1, "the gone replica's lease did not come back");
    assert_eq!(again[0].token.job, leased[0].token.job);
    assert_eq!(again[0].max_attempts, 11, "a drop, not a failed attempt");
}

#[tokio::test]
async fn operators_list_cancel_purge_and_delete() {
    let (_schema, engine) = setup!("pg_operate");
    let q = queue("ops");
    let stored = engine
        .enqueue(
            q.clone(),
            (0..5).map(|i| job(&i.to_string())).collect(),
            None,
        )
        .await
        .expect("enqueue");
    let page = engine.list_jobs(&q, None, None, 2).await.expect("list");
    assert_eq!(page.jobs.len(), 2);
    let rest = engine
        .list_jobs(&q, Some(JobState::Ready), page.next, 10)
        .await
        .expect("list");
    assert_eq!(rest.jobs.len(), 3);
    assert!(rest.next.is_none());
    engine
        .cancel_job(None, &stored[0].id)
        .await
        .expect("cancel");
    let (_, status) = engine.find_job(None, &stored[0].id).await.expect("find");
    assert_eq!(status.state, JobState::Cancelled);
    let leased = engine.lease(q.clone(), 1, None, WAIT).await.expect("lease");
    let refused = engine.cancel_job(Some(&q), &leased[0].token.job).await;
    assert!(
        matches!(
            refused,
            Err(EngineError::Queue(QueueError::JobLeased { .. }))
        ),
        "{refused:?}"
    );
    assert_eq!(
        engine.purge(&q, PurgeTarget::Ready).await.expect("purge"),
        3
    );
    let busy = engine.delete_queue(&q, false).await;
    assert!(
        matches!(busy, Err(EngineError::QueueBusy { leased: 1, .. })),
        "{busy:?}"
    );
    assert_eq!(engine.delete_queue(&q, true).await.expect("delete"), 1);
    assert!(matches!(
        engine.queue_info(&q).await,
        Err(EngineError::QueueNotFound(_))
    ));
    assert!(matches!(
        engine.find_job(None, &stored[1].id).await,
        Err(EngineError::JobNotFound(_))
    ));
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused_with_a_clear_message() {
    let Some(schema) = TestSchema::create("pg_schema_too_new").await else {
        return;
    };
    super::migrate(&PgOptions::new(schema.url()))
        .await
        .expect("migrate");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&schema.url())
        .await
        .expect("connect");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from the future', true, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .expect("a newer migration");
    let refused = PgEngine::connect(&PgOptions::new(schema.url()), EngineConfig::default()).await;
    let message = refused.expect_err("refused").to_string();
    assert!(message.contains("newer than this jobq knows"), "{message}");
}

#[tokio::test]
async fn concurrent_single_calls_are_batched_without_mixing_their_answers() {
    let defaults = QueueConfig {
        capacity: 150,
        ..QueueConfig::default()
    };
    let (_schema, engine) = setup!("pg_batches", defaults);
    let q = queue("q");
    // 200 callers at once into room for 150: exactly 150 get in, the rest
    // are told the queue is full, whatever batches they shared.
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let (engine, q) = (engine.clone(), q.clone());
            tokio::spawn(async move { engine.enqueue(q, vec![job(&i.to_string())], None).await })
        })
        .collect();
    let (mut stored, mut full) = (0, 0);
    for call in calls {
        match call.await.expect("join") {
            Ok(_) => stored += 1,
            Err(EngineError::Queue(QueueError::Full { .. })) => full += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((stored, full), (150, 50));
    // Each token acked twice at once: one ack of each succeeds.
    let leased = engine
        .lease(q.clone(), 150, None, WAIT)
        .await
        .expect("lease");
    let acks: Vec<_> = leased
        .iter()
        .flat_map(|d| [d.token, d.token])
        .map(|token| {
            let (engine, q) = (engine.clone(), q.clone());
            tokio::spawn(async move { engine.ack(&q, &[token]).await })
        })
        .collect();
    let mut ok = 0;
    for ack in acks {
        match ack.await.expect("join") {
            Ok(1) => ok += 1,
            Err(EngineError::Queue(QueueError::LeaseNotFound { .. })) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ok, leased.len());
    assert_eq!(engine.stats().await.expect("stats").jobs_held, 0);
}

#[tokio::test]
async fn finished_jobs_past_the_cap_are_forgotten_newest_kept() {
    let defaults = QueueConfig {
        finished_max: 3,
        ..QueueConfig::default()
    };
    let (_schema, engine) = setup!("pg_finished_max", defaults);
    let q = queue("q");
    let stored = engine
        .enqueue(
            q.clone(),
            (0..10).map(|i| job(&i.to_string())).collect(),
            None,
        )
        .await
        .expect("enqueue");
    let leased = engine
        .lease(q.clone(), 10, None, WAIT)
        .await
        .expect("lease");
    let tokens: Vec<_> = leased.iter().map(|d| d.token).collect();
    engine.ack(&q, &tokens).await.expect("ack");
    // The forgetting task runs every second: wait for it, without a
    // fixed sleep.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let kept = engine
            .list_jobs(&q, Some(JobState::Acked), None, 100)
            .await
            .expect("list")
            .jobs;
        if kept.len() <= 3 {
            let ids: Vec<_> = kept.iter().map(|s| s.job.id).collect();
            let newest: Vec<_> = stored[7..].iter().map(|e| e.id).collect();
            assert_eq!(ids, newest, "the newest finished jobs are the ones kept");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "finished jobs were never capped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
