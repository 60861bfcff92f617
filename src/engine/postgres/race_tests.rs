//! Two replicas racing for the same jobs, with leases short enough to run
//! out under them, and a checker that reads the history for two live
//! leases on one job. The check is causal, not timed: an ack, nack or
//! extend on delivery `d` of a job that was invoked after delivery `d + k`
//! had been handed out must fail, whatever the clocks did.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::PgEngine;
use super::testing::TestSchema;
use super::tests::connect_with;
use crate::engine::{Consume, EngineConfig, Produce};
use crate::queue::{JobId, LeaseToken, NackRequest, NewJob, QueueConfig, QueueName};

const JOBS: usize = 300;
const WORKERS_PER_REPLICA: u64 = 3;
const LEASE: Duration = Duration::from_millis(40);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Ack,
    Nack,
    Extend,
}

#[derive(Clone, Copy, Debug)]
enum Event {
    /// Delivery `token` was handed out; `seq` taken after it arrived.
    Leased { token: LeaseToken, seq: u64 },
    /// `op` on `token`, invoked at `seq`, and whether it was accepted.
    Tried {
        token: LeaseToken,
        op: Op,
        seq: u64,
        ok: bool,
    },
}

/// The history, in one order every worker shares.
#[derive(Default)]
struct History {
    seq: AtomicU64,
    events: Mutex<Vec<Event>>,
}

impl History {
    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }

    fn push(&self, event: Event) {
        self.events.lock().expect("history").push(event);
    }
}

/// What the history shows that must not happen.
fn violations(events: &[Event], jobs: &HashSet<JobId>) -> Vec<String> {
    let mut wrong = Vec::new();
    // Per job: when each delivery was handed out.
    let mut handed: HashMap<JobId, Vec<(u64, u64)>> = HashMap::new();
    for event in events {
        if let Event::Leased { token, seq } = event {
            handed
                .entry(token.job)
                .or_default()
                .push((token.delivery, *seq));
        }
    }
    for (job, deliveries) in &handed {
        let distinct: HashSet<u64> = deliveries.iter().map(|(d, _)| *d).collect();
        if distinct.len() != deliveries.len() {
            wrong.push(format!("job {job}: one delivery number handed out twice"));
        }
    }
    let mut acked: HashMap<JobId, Vec<u64>> = HashMap::new();
    for event in events {
        let Event::Tried {
            token,
            op,
            seq,
            ok: true,
        } = *event
        else {
            continue;
        };
        let later = handed.get(&token.job).and_then(|ds| {
            ds.iter()
                .find(|(d, at)| *d > token.delivery && *at < seq)
                .copied()
        });
        if let Some((d, _)) = later {
            wrong.push(format!(
                "job {}: {op:?} on delivery {} accepted after delivery {d} was handed out: two live leases",
                token.job, token.delivery
            ));
        }
        if op == Op::Ack {
            acked.entry(token.job).or_default().push(token.delivery);
        }
    }
    for job in jobs {
        match acked.get(job).map(Vec::as_slice) {
            Some([d]) => {
                let redelivered = handed[job].iter().any(|(later, _)| later > d);
                if redelivered {
                    wrong.push(format!("job {job}: delivered again after its ack"));
                }
            }
            Some(many) => wrong.push(format!("job {job}: acked {} times", many.len())),
            None => wrong.push(format!("job {job}: never acked")),
        }
    }
    wrong
}

/// Leases from `engine` until every job is acked, doing to each delivery
/// what the seeded dice say, and trying the previous delivery's token
/// (which must fail) whenever there was one.
async fn worker(
    engine: PgEngine,
    queue: QueueName,
    seed: u64,
    history: Arc<History>,
    acked: Arc<AtomicU64>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while acked.load(Ordering::SeqCst) < JOBS as u64 {
        let leased = engine
            .lease(queue.clone(), 3, Some(LEASE), Duration::from_millis(200))
            .await
            .expect("lease");
        for delivery in leased {
            let token = delivery.token;
            history.push(Event::Leased {
                token,
                seq: history.next(),
            });
            if token.delivery > 1 {
                let stale = LeaseToken {
                    delivery: token.delivery - 1,
                    ..token
                };
                let seq = history.next();
                let ok = engine.ack(&queue, &[stale]).await.is_ok();
                history.push(Event::Tried {
                    token: stale,
                    op: Op::Ack,
                    seq,
                    ok,
                });
            }
            let roll = rng.random_range(0..100);
            if roll < 20 {
                // Past the lease: the ack races the other replica.
                tokio::time::sleep(LEASE + Duration::from_millis(rng.random_range(0..30))).await;
            } else if roll < 35 {
                let seq = history.next();
                let ok = engine.extend(&queue, &token, LEASE).await.is_ok();
                history.push(Event::Tried {
                    token,
                    op: Op::Extend,
                    seq,
                    ok,
                });
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
            } else if roll < 45 {
                let seq = history.next();
                let request = NackRequest {
                    retry_delay: Some(Duration::ZERO),
                    dead_letter: false,
                    reason: "dice".into(),
                };
                let ok = engine.nack(&queue, &token, request).await.is_ok();
                history.push(Event::Tried {
                    token,
                    op: Op::Nack,
                    seq,
                    ok,
                });
                continue;
            }
            let seq = history.next();
            let ok = engine.ack(&queue, &[token]).await.is_ok();
            history.push(Event::Tried {
                token,
                op: Op::Ack,
                seq,
                ok,
            });
            if ok {
                acked.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_for_jobs_never_both_hold_a_live_lease_on_one() {
    let Some(schema) = TestSchema::create("pg_replicas_race").await else {
        return;
    };
    let config = EngineConfig {
        queue_defaults: QueueConfig {
            max_attempts: 10_000,
            ..QueueConfig::default()
        },
        ..EngineConfig::default()
    };
    let (a, b) = (
        connect_with(&schema, config.clone()).await,
        connect_with(&schema, config).await,
    );
    let queue = QueueName::new("raced").expect("name");
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|i| NewJob {
            payload: Bytes::from(i.to_string()),
            ..NewJob::default()
        })
        .collect();
    let stored = a.enqueue(queue.clone(), jobs, None).await.expect("enqueue");
    let ids: HashSet<JobId> = stored.iter().map(|e| e.id).collect();

    let history = Arc::new(History::default());
    let acked = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for n in 0..2 * WORKERS_PER_REPLICA {
        let engine = if n % 2 == 0 { a.clone() } else { b.clone() };
        workers.push(tokio::spawn(worker(
            engine,
            queue.clone(),
            n,
            Arc::clone(&history),
            Arc::clone(&acked),
        )));
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        for worker in workers {
            worker.await.expect("worker");
        }
    })
    .await
    .expect("every job acked within two minutes");

    let events = history.events.lock().expect("history").clone();
    let redelivered = events
        .iter()
        .filter(|e| matches!(e, Event::Leased { token, .. } if token.delivery > 1))
        .count();
    let refused = events
        .iter()
        .filter(|e| matches!(e, Event::Tried { ok: false, .. }))
        .count();
    // The race was run, not avoided: leases ran out and stale calls were
    // made and refused.
    assert!(redelivered > 0 && refused > 0, "{redelivered} {refused}");
    let wrong = violations(&events, &ids);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_an_ack_on_a_lease_that_was_handed_out_again() {
    let job = JobId::from_u128(1);
    let token = |delivery| LeaseToken { job, delivery };
    let events = [
        Event::Leased {
            token: token(1),
            seq: 0,
        },
        Event::Leased {
            token: token(2),
            seq: 1,
        },
        Event::Tried {
            token: token(1),
            op: Op::Ack,
            seq: 2,
            ok: true,
        },
    ];
    let wrong = violations(&events, &HashSet::from([job]));
    assert_eq!(wrong.len(), 2, "{wrong:?}");
    assert!(wrong[0].contains("two live leases"), "{wrong:?}");
    assert!(
        wrong[1].contains("delivered again after its ack"),
        "{wrong:?}"
    );
    // A stale ack refused, and the live one accepted, is as it should be.
    let ok_order = [
        events[0],
        Event::Tried {
            token: token(1),
            op: Op::Ack,
            seq: 1,
            ok: false,
        },
        Event::Leased {
            token: token(2),
            seq: 2,
        },
        Event::Tried {
            token: token(2),
            op: Op::Ack,
            seq: 3,
            ok: true,
        },
    ];
    assert!(violations(&ok_order, &HashSet::from([job])).is_empty());
}
