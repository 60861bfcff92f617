//! Behaviour of the queue core, with time moved by hand.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;
use ulid::Ulid;

use super::cost::{self, JOB_OVERHEAD_BYTES};
use super::*;

const SEC: Duration = Duration::from_secs(1);

fn queue_with(config: QueueConfig) -> Queue {
    Queue::new(QueueName::new("test").expect("valid name"), config)
}

fn queue() -> Queue {
    queue_with(QueueConfig::default())
}

fn job(payload: &str) -> NewJob {
    NewJob {
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        ..NewJob::default()
    }
}

fn with_priority(payload: &str, priority: i32) -> NewJob {
    NewJob {
        priority,
        ..job(payload)
    }
}

fn put(q: &mut Queue, now: Instant, jobs: Vec<NewJob>) -> Vec<JobId> {
    let mut batch: Vec<_> = jobs
        .into_iter()
        .map(|j| (JobId::from_ulid(Ulid::new()), j))
        .collect();
    let ids = batch.iter().map(|(id, _)| *id).collect();
    q.enqueue(now, SystemTime::now(), &mut batch)
        .expect("enqueue");
    ids
}

fn payloads(deliveries: &[Delivery]) -> Vec<&str> {
    deliveries
        .iter()
        .map(|d| std::str::from_utf8(&d.job.payload).expect("utf-8"))
        .collect()
}

#[test]
fn higher_priority_is_delivered_first_and_fifo_within_a_priority() {
    let now = Instant::now();
    let mut q = queue();
    put(
        &mut q,
        now,
        vec![
            with_priority("low-1", -1),
            with_priority("mid-1", 0),
            with_priority("high-1", 5),
            with_priority("mid-2", 0),
            with_priority("high-2", 5),
            with_priority("low-2", -1),
        ],
    );
    let got = q.lease(now, 10, None);
    assert_eq!(
        payloads(&got),
        ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"]
    );
}

#[test]
fn lease_returns_at_most_max_jobs() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("a"), job("b"), job("c")]);
    assert_eq!(payloads(&q.lease(now, 2, None)), ["a", "b"]);
    assert_eq!(payloads(&q.lease(now, 2, None)), ["c"]);
    assert!(q.lease(now, 2, None).is_empty());
}

#[test]
fn delayed_job_becomes_leasable_at_its_time() {
    let now = Instant::now();
    let mut q = queue();
    put(
        &mut q,
        now,
        vec![NewJob {
            delay: Some(5 * SEC),
            ..job("later")
        }],
    );
    assert_eq!(q.counts().scheduled, 1);
    assert_eq!(q.next_deadline(), Some(now + 5 * SEC));
    assert!(q.lease(now + 4 * SEC, 1, None).is_empty());
    assert_eq!(payloads(&q.lease(now + 5 * SEC, 1, None)), ["later"]);
}

#[test]
fn a_zero_delay_is_ready_at_once() {
    let now = Instant::now() + 10 * SEC;
    let mut q = queue();
    put(
        &mut q,
        now,
        vec![NewJob {
            delay: Some(Duration::ZERO),
            ..job("now")
        }],
    );
    assert_eq!(q.counts().ready, 1);
}

#[test]
fn expired_lease_is_redelivered_with_attempt_2_and_a_new_token() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("a")]);
    let first = q.lease(now, 1, Some(10 * SEC)).remove(0);
    assert_eq!(first.attempt, 1);
    assert_eq!(first.deadline, now + 10 * SEC);
    assert!(q.lease(now + 9 * SEC, 1, None).is_empty());

    let second = q.lease(now + 10 * SEC, 1, None).remove(0);
    assert_eq!(second.job.id, first.job.id);
    assert_eq!(second.attempt, 2);
    assert_ne!(second.token, first.token);
    assert_eq!(q.stats().expired, 1);
    let status = q.job_status(now, &first.job.id).expect("job is held");
    assert!(status.last_error.expect("error kept").contains("expired"));
}

#[test]
fn stale_token_is_rejected_and_does_not_touch_the_redelivered_job() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("a")]);
    let first = q.lease(now, 1, Some(SEC)).remove(0);
    let second = q.lease(now + 2 * SEC, 1, None).remove(0);

    let err = q.ack(now + 2 * SEC, &[first.token]).expect_err("stale ack");
    assert!(matches!(err, QueueError::LeaseNotFound { .. }));
    assert!(
        q.nack(now + 2 * SEC, &first.token, NackRequest::default())
            .is_err()
    );
    assert!(q.extend(now + 2 * SEC, &first.token, SEC).is_err());
    assert_eq!(q.counts().leased, 1);

    q.ack(now + 2 * SEC, &[second.token]).expect("live ack");
    assert!(q.is_empty());
}

#[test]
fn ack_removes_the_job_and_a_second_ack_fails() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("abc")]);
    assert_eq!(q.bytes(), 3 + JOB_OVERHEAD_BYTES);
    let d = q.lease(now, 1, None).remove(0);
    let acked = q.ack(now, &[d.token]).expect("ack");
    assert_eq!(
        acked,
        Acked {
            jobs: 1,
            bytes: 3 + JOB_OVERHEAD_BYTES,
            held: vec![Duration::ZERO]
        }
    );
    assert!(q.is_empty());
    assert_eq!(q.bytes(), 0);
    assert!(q.ack(now, &[d.token]).is_err());
    assert_eq!(q.next_deadline(), None);
}

#[test]
fn ack_is_all_or_nothing() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("a"), job("b")]);
    let got = q.lease(now, 2, None);
    let bogus = LeaseToken {
        job: got[0].job.id,
        delivery: got[0].token.delivery + 1000,
    };
    assert!(q.ack(now, &[got[0].token, bogus]).is_err());
    assert_eq!(q.counts().leased, 2);
    q.ack(now, &[got[0].token, got[1].token]).expect("ack both");
    assert!(q.is_empty());
}

#[test]
fn ack_after_the_deadline_fails() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("a")]);
    let d = q.lease(now, 1, Some(SEC)).remove(0);
    assert!(q.ack(now + SEC, &[d.token]).is_err());
    assert_eq!(q.counts().ready, 1);
}

#[test]
fn nack_with_a_delay_retries_exactly_then() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("a")]);
    let d = q.lease(now, 1, None).remove(0);
    let outcome = q
        .nack(
            now,
            &d.token,
            NackRequest {
                retry_delay: Some(7 * SEC),
                reason: "smtp timeout".into(),
                ..NackRequest::default()
            },
        )
        .expect("nack");
    assert_eq!(outcome, NackOutcome::RetryAt(now + 7 * SEC));
    assert_eq!(q.counts().scheduled, 1);
    assert!(q.lease(now + 6 * SEC, 1, None).is_empty());
    let again = q.lease(now + 7 * SEC, 1, None).remove(0);
    assert_eq!(again.attempt, 2);
    let status = q.job_status(now, &again.job.id).expect("held");
    assert_eq!(status.last_error.as_deref(), Some("smtp timeout"));
}

#[test]
fn nack_with_zero_delay_is_ready_at_once() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("a")]);
    let d = q.lease(now, 1, None).remove(0);
    q.nack(
        now,
        &d.token,
        NackRequest {
            retry_delay: Some(Duration::ZERO),
            ..NackRequest::default()
        },
    )
    .expect("nack");
    assert_eq!(q.lease(now, 1, None).len(), 1);
}

#[test]
fn nack_without_delay_uses_exponential_backoff_within_jitter() {
    let now = Instant::now();
    let retry = RetryPolicy {
        base: SEC,
        cap: 6 * SEC,
        jitter: 0.2,
    };
    let mut q = queue_with(QueueConfig {
        retry,
        max_attempts: 100,
        ..QueueConfig::default()
    });
    put(&mut q, now, vec![job("a")]);
    let mut t = now;
    // Nominal waits 1, 2, 4, then capped at 6 s.
    for nominal in [1.0, 2.0, 4.0, 6.0, 6.0] {
        let d = q.lease(t, 1, None).remove(0);
        let NackOutcome::RetryAt(at) = q.nack(t, &d.token, NackRequest::default()).expect("nack")
        else {
            panic!("expected a retry");
        };
        let wait = (at - t).as_secs_f64();
        assert!(
            wait >= nominal * 0.8 - 1e-9 && wait <= (nominal * 1.2f64).min(6.0) + 1e-9,
            "attempt {}: waited {wait}, nominal {nominal}",
            d.attempt
        );
        t = at;
    }
}

#[test]
fn nack_with_dead_letter_skips_remaining_attempts() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("a")]);
    let d = q.lease(now, 1, None).remove(0);
    let outcome = q
        .nack(
            now,
            &d.token,
            NackRequest {
                dead_letter: true,
                reason: "bad address".into(),
                ..NackRequest::default()
            },
        )
        .expect("nack");
    assert_eq!(outcome, NackOutcome::DeadLettered);
    assert_eq!(q.counts().dead, 1);
    let status = q.job_status(now, &d.job.id).expect("held");
    assert_eq!(status.state, JobState::Dead);
    assert_eq!(status.last_error.as_deref(), Some("bad address"));
    assert!(q.lease(now + 3600 * SEC, 1, None).is_empty());
}

#[test]
fn job_is_dead_lettered_after_max_attempts_of_nacks() {
    let now = Instant::now();
    let mut q = queue();
    put(
        &mut q,
        now,
        vec![NewJob {
            max_attempts: Some(3),
            ..job("a")
        }],
    );
    let mut last = None;
    for attempt in 1..=3 {
        let d = q.lease(now, 1, None).remove(0);
        assert_eq!(d.attempt, attempt);
        last = Some(
            q.nack(
                now,
                &d.token,
                NackRequest {
                    retry_delay: Some(Duration::ZERO),
                    reason: format!("failure {attempt}"),
                    ..NackRequest::default()
                },
            )
            .expect("nack"),
        );
    }
    assert_eq!(last, Some(NackOutcome::DeadLettered));
    assert_eq!(q.counts().dead, 1);
    assert_eq!(q.stats().dead_lettered, 1);
}

#[test]
fn job_is_dead_lettered_when_its_last_lease_expires() {
    let now = Instant::now();
    let mut q = queue_with(QueueConfig {
        max_attempts: 2,
        ..QueueConfig::default()
    });
    let id = put(&mut q, now, vec![job("a")])[0];
    q.lease(now, 1, Some(SEC));
    q.lease(now + SEC, 1, Some(SEC));
    q.advance(now + 2 * SEC);
    let status = q.job_status(now, &id).expect("held");
    assert_eq!(status.state, JobState::Dead);
    assert_eq!(status.attempts, 2);
    assert_eq!(q.stats().expired, 2);
}

#[test]
fn full_queue_refuses_and_a_batch_is_all_or_nothing() {
    let now = Instant::now();
    let mut q = queue_with(QueueConfig {
        capacity: 3,
        ..QueueConfig::default()
    });
    put(&mut q, now, vec![job("a"), job("b")]);
    let mut batch = vec![
        (JobId::from_ulid(Ulid::new()), job("c")),
        (JobId::from_ulid(Ulid::new()), job("d")),
    ];
    let err = q
        .enqueue(now, SystemTime::now(), &mut batch)
        .expect_err("over capacity");
    assert_eq!(batch.len(), 2, "a refused batch is left to retry");
    assert_eq!(
        err.to_string(),
        "queue test is full: it holds 2 of its 3 jobs and 2 more were offered"
    );
    assert_eq!(q.len(), 2);
    put(&mut q, now, vec![job("c")]);
    assert_eq!(q.len(), 3);
}

#[test]
fn dead_letters_count_against_capacity() {
    let now = Instant::now();
    let mut q = queue_with(QueueConfig {
        capacity: 1,
        ..QueueConfig::default()
    });
    put(&mut q, now, vec![job("a")]);
    let d = q.lease(now, 1, None).remove(0);
    let dead = NackRequest {
        dead_letter: true,
        ..NackRequest::default()
    };
    q.nack(now, &d.token, dead).expect("nack");
    let mut batch = vec![(JobId::from_ulid(Ulid::new()), job("b"))];
    assert!(q.enqueue(now, SystemTime::now(), &mut batch).is_err());
}

#[test]
fn extend_moves_the_deadline_from_now_and_keeps_the_token() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("a")]);
    let d = q.lease(now, 1, Some(10 * SEC)).remove(0);
    let deadline = q.extend(now + 8 * SEC, &d.token, 10 * SEC).expect("extend");
    assert_eq!(deadline, now + 18 * SEC);
    assert_eq!(q.next_deadline(), Some(now + 18 * SEC));
    q.advance(now + 17 * SEC);
    assert_eq!(q.counts().leased, 1);
    q.ack(now + 17 * SEC, &[d.token])
        .expect("ack with same token");
}

#[test]
fn take_readied_counts_jobs_that_became_ready() {
    let now = Instant::now();
    let mut q = queue();
    put(
        &mut q,
        now,
        vec![
            job("a"),
            NewJob {
                delay: Some(SEC),
                ..job("b")
            },
        ],
    );
    assert_eq!(q.take_readied(), 1);
    q.advance(now + SEC);
    assert_eq!(q.take_readied(), 1);
    assert_eq!(q.take_readied(), 0);
}

#[test]
fn payload_is_shared_not_copied_on_delivery() {
    let now = Instant::now();
    let mut q = queue();
    let payload = Bytes::from(vec![7u8; 1024]);
    let ptr = payload.as_ptr();
    put(
        &mut q,
        now,
        vec![NewJob {
            payload,
            ..NewJob::default()
        }],
    );
    let d = q.lease(now, 1, None).remove(0);
    assert_eq!(d.job.payload.as_ptr(), ptr);
}

#[test]
fn cancel_removes_jobs_no_worker_holds_and_refuses_leased_ones() {
    let now = Instant::now();
    let mut q = queue();
    let ids = put(
        &mut q,
        now,
        vec![
            job("ready"),
            NewJob {
                delay: Some(SEC),
                ..job("scheduled")
            },
            job("leased"),
        ],
    );
    q.cancel(now, &ids[0]).expect("cancel ready");
    let leased = q.lease(now, 1, None).remove(0);
    assert_eq!(leased.job.id, ids[2]);
    assert!(matches!(
        q.cancel(now, &ids[2]),
        Err(QueueError::JobLeased { .. })
    ));
    q.cancel(now, &ids[1]).expect("cancel scheduled");
    assert!(matches!(
        q.cancel(now, &ids[1]),
        Err(QueueError::JobNotFound { .. })
    ));
    assert_eq!(q.next_deadline(), Some(leased.deadline));
    assert_eq!(q.len(), 1);
    assert!(q.lease(now + 2 * SEC, 1, None).is_empty());
}

#[test]
fn holder_leases_are_counted_and_released_by_any_path() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("a"), job("b"), job("c")]);
    let stream = HolderId(1);
    let got = q.lease_as(now, 3, Some(10 * SEC), Some(stream));
    assert_eq!(q.held_by(stream), 3);
    assert!(q.take_released().is_empty());

    q.ack(now, &[got[0].token]).expect("unary ack");
    assert_eq!(q.held_by(stream), 2);
    assert_eq!(q.take_released(), [stream]);

    q.advance(now + 10 * SEC);
    assert_eq!(q.held_by(stream), 0, "expiry ends the holder's leases too");
    assert_eq!(q.take_released(), [stream, stream]);
}

#[test]
fn releasing_a_holder_requeues_its_jobs_as_drops_not_failures() {
    let now = Instant::now();
    let mut q = queue_with(QueueConfig {
        max_attempts: 2,
        ..QueueConfig::default()
    });
    let ids = put(&mut q, now, vec![job("a")]);
    let worker = HolderId(7);
    q.lease_as(now, 1, None, Some(worker));
    assert_eq!(q.release_holder(now, worker, "stream closed"), 1);
    let status = q.job_status(now, &ids[0]).expect("held");
    assert_eq!(status.state, JobState::Ready);
    assert_eq!(status.last_error.as_deref(), Some("stream closed"));
    assert_eq!(q.counts().leased, 0);

    // Dropped deliveries add to what the job is allowed: the second one
    // is attempt 2 of 3, not the last.
    let again = q.lease_as(now, 1, None, Some(worker)).remove(0);
    assert_eq!((again.attempt, again.max_attempts), (2, 3));
    // Drops up to DROPS_PER_ATTEMPT x max_attempts (4 here): the fourth
    // dead-letters it, however few attempts failed.
    for drop in 2..=4 {
        q.release_holder(now, worker, "stream closed");
        let state = q.job_status(now, &ids[0]).expect("held").state;
        if drop < 4 {
            assert_eq!(state, JobState::Ready, "drop {drop}");
            q.lease_as(now, 1, None, Some(worker));
        } else {
            assert_eq!(state, JobState::Dead, "drop {drop}");
        }
    }
    assert_eq!(q.release_holder(now, worker, "again"), 0);
}

#[test]
fn drops_do_not_use_up_the_attempts_that_failures_do() {
    let now = Instant::now();
    let mut q = queue_with(QueueConfig {
        max_attempts: 2,
        ..QueueConfig::default()
    });
    let ids = put(&mut q, now, vec![job("a")]);
    let worker = HolderId(7);
    // Dropped once, then one failed attempt: one failure of two allowed.
    q.lease_as(now, 1, None, Some(worker));
    q.release_holder(now, worker, "stream closed");
    let leased = q.lease(now, 1, None).remove(0);
    let nacked = q
        .nack(now, &leased.token, NackRequest::default())
        .expect("nack");
    assert!(matches!(nacked, NackOutcome::RetryAt(_)), "{nacked:?}");
    // The second failure is the last.
    let leased = q.lease(now + 3600 * SEC, 1, None).remove(0);
    assert_eq!((leased.attempt, leased.max_attempts), (3, 3));
    let nacked = q
        .nack(now + 3600 * SEC, &leased.token, NackRequest::default())
        .expect("nack");
    assert_eq!(nacked, NackOutcome::DeadLettered);
    assert_eq!(
        q.job_status(now, &ids[0]).expect("held").state,
        JobState::Dead
    );
}

fn keyed(payload: &str, key: &str) -> NewJob {
    NewJob {
        idempotency_key: Some(key.to_string()),
        ..job(payload)
    }
}

fn enqueue_raw(q: &mut Queue, now: Instant, jobs: Vec<NewJob>) -> Vec<Enqueued> {
    let mut batch: Vec<_> = jobs
        .into_iter()
        .map(|j| (JobId::from_ulid(Ulid::new()), j))
        .collect();
    q.enqueue(now, SystemTime::now(), &mut batch)
        .expect("enqueue")
}

#[test]
fn same_idempotency_key_within_the_window_stores_nothing() {
    let now = Instant::now();
    let mut q = queue_with(QueueConfig {
        idempotency_window: 60 * SEC,
        ..QueueConfig::default()
    });
    let first = enqueue_raw(&mut q, now, vec![keyed("a", "order-1")]);
    assert!(!first[0].duplicate);
    let again = enqueue_raw(
        &mut q,
        now + 59 * SEC,
        vec![
            keyed("a", "order-1"),
            keyed("b", "order-2"),
            keyed("b", "order-2"),
        ],
    );
    assert_eq!(again[0].id, first[0].id);
    assert!(again[0].duplicate);
    assert!(!again[1].duplicate);
    assert_eq!((again[2].id, again[2].duplicate), (again[1].id, true));
    assert_eq!(q.len(), 2);
    // After the window the key makes a new job.
    let later = enqueue_raw(&mut q, now + 60 * SEC, vec![keyed("a", "order-1")]);
    assert!(!later[0].duplicate);
    assert_ne!(later[0].id, first[0].id);
}

#[test]
fn acked_and_cancelled_jobs_stay_visible_for_the_retention() {
    let now = Instant::now();
    let mut q = queue_with(QueueConfig {
        finished_retention: 60 * SEC,
        finished_max: 10,
        ..QueueConfig::default()
    });
    let ids = put(&mut q, now, vec![job("done"), job("cancel me")]);
    let d = q.lease(now, 1, None).remove(0);
    q.ack(now, &[d.token]).expect("ack");
    q.cancel(now, &ids[1]).expect("cancel");
    let acked = q.job_status(now + 59 * SEC, &ids[0]).expect("kept");
    assert_eq!(acked.state, JobState::Acked);
    assert_eq!(acked.attempts, 1);
    assert!(acked.job.payload.is_empty(), "payload not kept");
    assert_eq!(
        q.job_status(now, &ids[1]).expect("kept").state,
        JobState::Cancelled
    );
    assert!(q.job_status(now + 60 * SEC, &ids[0]).is_none());
}

#[test]
fn paused_queue_delivers_nothing_until_resumed() {
    let now = Instant::now();
    let mut q = queue();
    q.set_paused(true);
    put(&mut q, now, vec![job("a")]);
    q.take_readied();
    assert!(q.lease(now, 1, None).is_empty());
    q.set_paused(false);
    assert_eq!(q.take_readied(), 1, "resume wakes waiting workers");
    assert_eq!(q.lease(now, 1, None).len(), 1);
}

#[test]
fn purges_remove_only_their_state() {
    let now = Instant::now();
    let mut q = queue();
    put(&mut q, now, vec![job("aa"), job("bb"), job("cc")]);
    let d = q.lease(now, 1, None).remove(0);
    let dead = NackRequest {
        dead_letter: true,
        ..NackRequest::default()
    };
    q.nack(now, &d.token, dead).expect("nack");
    let (two, one) = (4 + 2 * JOB_OVERHEAD_BYTES, 2 + JOB_OVERHEAD_BYTES);
    assert_eq!(
        q.purge_ready(now),
        Purged {
            jobs: 2,
            bytes: two
        }
    );
    assert_eq!(q.counts().dead, 1);
    assert!(q.extra_bytes() > 0, "the dead job's failure is counted");
    assert_eq!(
        q.purge_dead(),
        Purged {
            jobs: 1,
            bytes: one
        }
    );
    assert!(q.is_empty());
    assert_eq!(q.bytes(), 0);
    assert_eq!(q.extra_bytes(), 0, "and forgotten with it");
}

#[test]
fn paging_lists_every_job_once_in_id_order() {
    let now = Instant::now();
    let mut q = queue();
    let ids = put(&mut q, now, (0..25).map(|i| job(&i.to_string())).collect());
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = q.list_jobs(now, None, after, 10);
        seen.extend(page.iter().map(|s| s.job.id));
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
}

#[test]
fn redrive_resets_attempts_and_makes_dead_jobs_leasable() {
    let now = Instant::now();
    let mut q = queue();
    let ids = put(&mut q, now, vec![job("a"), job("b")]);
    for _ in 0..2 {
        let d = q.lease(now, 1, None).remove(0);
        let dead = NackRequest {
            dead_letter: true,
            reason: "boom".into(),
            ..NackRequest::default()
        };
        q.nack(now, &d.token, dead).expect("nack");
    }
    let (dead, _) = q.list_jobs(now, Some(JobState::Dead), None, 10);
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].history.len(), 1);
    assert_eq!(dead[0].history[0].error, "boom");
    assert!(matches!(
        q.redrive(now, Some(&[ids[0], JobId::from_u128(1)])),
        Err(QueueError::JobNotFound { .. })
    ));
    assert_eq!(q.redrive(now, Some(&ids[..1])), Ok(1));
    assert!(matches!(
        q.redrive(now, Some(&ids[..1])),
        Err(QueueError::JobNotDead { .. })
    ));
    assert_eq!(q.redrive(now, None), Ok(1));
    let again = q.lease(now, 2, None);
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|d| d.attempt == 1));
}

#[test]
fn the_longest_accepted_durations_schedule_where_they_say_without_overflow() {
    // The ceilings the server accepts: a year of delay or backoff, a week's
    // lease, a month's idempotency window and retention.
    let year = 365 * 24 * 3600 * SEC;
    let week = 7 * 24 * 3600 * SEC;
    let month = 30 * 24 * 3600 * SEC;
    let mut q = queue_with(QueueConfig {
        lease_duration: week,
        retry: RetryPolicy {
            base: year,
            cap: year,
            jitter: 0.0,
        },
        idempotency_window: month,
        finished_retention: month,
        ..QueueConfig::default()
    });
    let now = Instant::now();
    let delayed = NewJob {
        delay: Some(year),
        ..job("later")
    };
    put(&mut q, now, vec![job("now"), delayed]);
    let leased = q.lease(now, 1, None);
    assert_eq!(leased[0].deadline, now + week);
    let extended = q
        .extend(now, &leased[0].token, week)
        .expect("extend by a week");
    assert_eq!(extended, now + week);
    let outcome = q
        .nack(now, &leased[0].token, NackRequest::default())
        .expect("nack");
    let NackOutcome::RetryAt(at) = outcome else {
        panic!("retried, not dead: {outcome:?}");
    };
    assert_eq!(at, now + year, "a year's backoff, capped at a year");
    // Nothing is due a day before the year is out; all of it is after.
    assert!(q.lease(now + year - 24 * 3600 * SEC, 2, None).is_empty());
    assert_eq!(q.lease(now + year, 2, None).len(), 2);
}

#[test]
fn listing_a_rare_state_walks_a_bounded_stretch_per_page_and_misses_nothing() {
    let now = Instant::now();
    let mut q = queue_with(QueueConfig {
        capacity: 3 * MAX_SCAN,
        ..QueueConfig::default()
    });
    // Two and a half scans' worth of scheduled jobs, then one ready job.
    let scheduled = MAX_SCAN * 5 / 2;
    let later: Vec<NewJob> = (0..scheduled)
        .map(|_| NewJob {
            delay: Some(3600 * SEC),
            ..job("later")
        })
        .collect();
    put(&mut q, now, later);
    let ready = put(&mut q, now, vec![job("now")])[0];

    let mut pages = 0;
    let mut found = Vec::new();
    let mut after = None;
    loop {
        pages += 1;
        let (page, next) = q.list_jobs(now, Some(JobState::Ready), after, 10);
        found.extend(page.iter().map(|s| s.job.id));
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(pages <= 4, "the walk must move on each page");
    }
    assert_eq!(found, vec![ready]);
    assert_eq!(pages, 3, "ceil(25 001 / 10 000) pages");

    // An unfiltered listing fills its pages and ends without a token.
    let (page, next) = q.list_jobs(now, None, None, 1000);
    assert_eq!(page.len(), 1000);
    assert!(next.is_some());
}

#[test]
fn recorded_changes_say_where_each_job_went() {
    let now = Instant::now();
    let mut q = queue_with(QueueConfig {
        max_attempts: 2,
        ..QueueConfig::default()
    });
    assert!(
        q.take_changes().is_empty(),
        "nothing is recorded unless asked"
    );
    q.record_changes();
    let ids = put(
        &mut q,
        now,
        vec![
            job("a"),
            NewJob {
                delay: Some(5 * SEC),
                idempotency_key: Some("k".into()),
                ..job("b")
            },
        ],
    );
    let first = q.lease(now, 1, Some(SEC)).remove(0);
    q.nack(now, &first.token, NackRequest::default())
        .expect("nack");
    let kinds: Vec<String> = q
        .take_changes()
        .iter()
        .map(|c| match c {
            JobChange::Stored { job, delay, key } => {
                format!("stored {} {delay:?} {key:?}", payload_of(job))
            }
            JobChange::Leased { attempt, .. } => format!("leased {attempt}"),
            JobChange::Retried { failure, due, .. } => {
                format!("retried {} {}", failure.attempt, due.is_some())
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "stored a None None",
            "stored b Some(5s) Some(\"k\")",
            "leased 1",
            "retried 1 true",
        ]
    );
    // The retry comes due; its lease expires: the last attempt is dead.
    let later = now + 900 * SEC;
    let second = q.lease(later, 2, Some(SEC));
    assert_eq!(second.len(), 2);
    q.advance(later + 2 * SEC);
    let changes = q.take_changes();
    assert!(matches!(changes[0], JobChange::Leased { attempt: 2, .. }));
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, JobChange::DeadLettered { id, .. } if *id == ids[0]))
    );
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, JobChange::Retried { id, due: None, .. } if *id == ids[1]))
    );
    q.redrive(later + 2 * SEC, None).expect("redrive");
    q.purge_ready(later + 2 * SEC);
    let changes = q.take_changes();
    assert!(matches!(changes[0], JobChange::Redriven { id } if id == ids[0]));
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, JobChange::Removed { .. }))
            .count(),
        2
    );
}

#[test]
fn a_restored_job_is_where_it_was_with_its_attempts_and_failures() {
    let now = Instant::now();
    let mut q = queue();
    let job = Job {
        id: JobId::from_u128(7),
        payload: Bytes::from_static(b"p"),
        metadata: Metadata::default(),
        priority: 0,
        max_attempts: 5,
        enqueued_at: SystemTime::now(),
        size: 1,
    };
    let failure = Failure {
        attempt: 2,
        error: "boom".into(),
        at: now,
    };
    q.restore(
        now,
        RestoredJob {
            job,
            attempts: 2,
            drops: 0,
            failures: vec![failure.clone()],
            place: RestoredPlace::Scheduled(now + 10 * SEC),
        },
    );
    q.restore_key(now, "key".into(), JobId::from_u128(7), now - SEC);
    assert_eq!(
        q.remembered_key(now, "key"),
        Some((JobId::from_u128(7), now - SEC))
    );
    assert_eq!(q.counts().scheduled, 1);
    let status = q.job_status(now, &JobId::from_u128(7)).expect("held");
    assert_eq!((status.attempts, status.history), (2, vec![failure]));
    assert_eq!(status.last_error.as_deref(), Some("boom"));
    let leased = q.lease(now + 10 * SEC, 1, None);
    assert_eq!(leased[0].attempt, 3);
    // Its idempotency key still dedupes.
    let mut again = vec![(
        JobId::from_u128(8),
        NewJob {
            idempotency_key: Some("key".into()),
            ..NewJob::default()
        },
    )];
    let stored = q
        .enqueue(now + 10 * SEC, SystemTime::now(), &mut again)
        .expect("enqueue");
    assert_eq!(stored[0].id, JobId::from_u128(7));
    assert!(stored[0].duplicate);
}

fn payload_of(job: &Job) -> &str {
    std::str::from_utf8(&job.payload).expect("utf-8")
}

#[test]
fn failure_histories_are_counted_and_kept_within_the_room_they_are_told_of() {
    let now = Instant::now();
    let mut q = queue_with(QueueConfig {
        max_attempts: 100,
        ..QueueConfig::default()
    });
    let [id] = put(&mut q, now, vec![job("x")])[..] else {
        unreachable!()
    };
    let nack = |reason: &str| NackRequest {
        retry_delay: Some(Duration::ZERO),
        reason: reason.to_string(),
        ..NackRequest::default()
    };
    // Room enough: the text is kept and counted (twice: the history and
    // the last error).
    let d = q.lease(now, 1, None).remove(0);
    q.nack(now, &d.token, nack(&"e".repeat(1000)))
        .expect("nack");
    let first = q.extra_bytes();
    assert!(first >= 2000, "{first}");
    // No room: the next failure replaces the oldest without its text, so
    // the history does not grow; inspection says why the text is missing.
    q.set_room(0);
    let d = q.lease(now, 1, None).remove(0);
    q.nack(now, &d.token, nack(&"f".repeat(1000)))
        .expect("nack");
    assert!(q.extra_bytes() < first, "{} vs {first}", q.extra_bytes());
    let status = q.job_status(now, &id).expect("held");
    assert_eq!(status.attempts, 2);
    assert_eq!(status.history.len(), 1);
    assert_eq!(status.history[0].error, TEXT_NOT_KEPT);
    assert_eq!(status.last_error.as_deref(), Some(TEXT_NOT_KEPT));
    // A job with no history yet records none when there is no room.
    let [other] = put(&mut q, now, vec![job("y")])[..] else {
        unreachable!()
    };
    let before = q.extra_bytes();
    for d in q.lease(now, 2, None) {
        q.nack(now, &d.token, nack("boom")).expect("nack");
    }
    assert_eq!(q.extra_bytes(), before);
    assert!(q.job_status(now, &other).expect("held").history.is_empty());
    // At most MAX_HISTORY entries, however often it fails.
    q.set_room(u64::MAX);
    for _ in 0..3 * MAX_HISTORY {
        for d in q.lease(now, 2, None) {
            q.nack(now, &d.token, nack("again")).expect("nack");
        }
    }
    assert_eq!(
        q.job_status(now, &id).expect("held").history.len(),
        MAX_HISTORY
    );
}

#[test]
fn keys_and_finished_records_are_counted_until_they_are_forgotten() {
    let now = Instant::now();
    let mut q = queue_with(QueueConfig {
        idempotency_window: 10 * SEC,
        finished_retention: 5 * SEC,
        ..QueueConfig::default()
    });
    let keyed = NewJob {
        idempotency_key: Some("order-1".into()),
        ..job("x")
    };
    put(&mut q, now, vec![keyed]);
    assert_eq!(q.extra_bytes(), cost::key_bytes("order-1"));
    let d = q.lease(now, 1, None).remove(0);
    q.ack(now, &[d.token]).expect("ack");
    // The job is gone; its key and its finished record stay, counted.
    assert_eq!(
        q.extra_bytes(),
        cost::key_bytes("order-1") + cost::FINISHED_OVERHEAD_BYTES
    );
    // The record goes after its retention, the key after its window.
    let _ = q.job_status(now + 6 * SEC, &d.job.id);
    assert_eq!(q.extra_bytes(), cost::key_bytes("order-1"));
    put(&mut q, now + 11 * SEC, vec![job("y")]);
    assert_eq!(q.extra_bytes(), 0);
}
