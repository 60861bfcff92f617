//! Property test: random operation sequences against a simple model of
//! which leases are live, checking that no job is ever lost or duplicated.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Enqueue {
        priority: i8,
        delay_ms: u16,
    },
    Lease {
        max: u8,
        lease_ms: u16,
    },
    Ack {
        pick: usize,
    },
    Nack {
        pick: usize,
        dead: bool,
        delay_ms: u16,
    },
    Extend {
        pick: usize,
        lease_ms: u16,
    },
    Advance {
        ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<i8>(), 0u16..50).prop_map(|(priority, delay_ms)| Op::Enqueue {
            priority: priority % 3,
            delay_ms: if delay_ms < 25 { 0 } else { delay_ms },
        }),
        (1u8..4, 1u16..100).prop_map(|(max, lease_ms)| Op::Lease { max, lease_ms }),
        any::<usize>().prop_map(|pick| Op::Ack { pick }),
        (any::<usize>(), any::<bool>(), 0u16..50).prop_map(|(pick, dead, delay_ms)| Op::Nack {
            pick,
            dead,
            delay_ms
        }),
        (any::<usize>(), 1u16..100).prop_map(|(pick, lease_ms)| Op::Extend { pick, lease_ms }),
        (0u16..120).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// What the model knows of each lease handed out: its job, its deadline,
/// and whether it was given back.
struct ModelLease {
    token: LeaseToken,
    deadline: Instant,
    done: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn no_job_is_lost_duplicated_or_acked_by_a_dead_lease(ops in proptest::collection::vec(op(), 1..200)) {
        let start = Instant::now();
        let mut now = start;
        let mut q = Queue::new(
            QueueName::new("model").expect("name"),
            QueueConfig { capacity: 50, max_attempts: 3, ..QueueConfig::default() },
        );
        let mut next_id = 0u128;
        let mut leases: Vec<ModelLease> = Vec::new();
        // Latest delivery per job: only that one may be live.
        let mut latest: HashMap<JobId, u64> = HashMap::new();
        let mut acked = 0u64;

        for op in ops {
            match op {
                Op::Enqueue { priority, delay_ms } => {
                    next_id += 1;
                    let new = NewJob {
                        payload: Bytes::from_static(b"p"),
                        priority: priority.into(),
                        delay: Some(Duration::from_millis(delay_ms.into())),
                        ..NewJob::default()
                    };
                    let full = q.len() >= 50;
                    let result = q.enqueue(now, SystemTime::now(), &mut vec![(JobId::from_u128(next_id), new)]);
                    prop_assert_eq!(result.is_err(), full);
                }
                Op::Lease { max, lease_ms } => {
                    let got = q.lease(now, max.into(), Some(Duration::from_millis(lease_ms.into())));
                    prop_assert!(got.len() <= max.into());
                    for pair in got.windows(2) {
                        prop_assert!(pair[0].job.priority >= pair[1].job.priority);
                    }
                    for d in got {
                        prop_assert!(d.attempt >= 1 && d.attempt <= d.job.max_attempts);
                        // A job is never delivered while an earlier lease on
                        // it is still live.
                        for l in leases.iter().filter(|l| l.token.job == d.job.id && !l.done) {
                            prop_assert!(l.deadline <= now, "overlapping leases");
                        }
                        latest.insert(d.job.id, d.token.delivery);
                        leases.push(ModelLease { token: d.token, deadline: d.deadline, done: false });
                    }
                }
                Op::Ack { pick } | Op::Nack { pick, .. } | Op::Extend { pick, .. } if leases.is_empty() => {
                    let _ = pick;
                }
                Op::Ack { pick } => {
                    let n = leases.len();
                    let l = &mut leases[pick % n];
                    let live = !l.done && l.deadline > now && latest.get(&l.token.job) == Some(&l.token.delivery);
                    let result = q.ack(now, &[l.token]);
                    prop_assert_eq!(result.is_ok(), live, "ack of {:?}", l.token);
                    if live {
                        l.done = true;
                        acked += 1;
                    }
                }
                Op::Nack { pick, dead, delay_ms } => {
                    let n = leases.len();
                    let l = &mut leases[pick % n];
                    let live = !l.done && l.deadline > now && latest.get(&l.token.job) == Some(&l.token.delivery);
                    let request = NackRequest {
                        retry_delay: (!dead).then(|| Duration::from_millis(delay_ms.into())),
                        dead_letter: dead,
                        reason: "x".into(),
                    };
                    let result = q.nack(now, &l.token, request);
                    prop_assert_eq!(result.is_ok(), live);
                    if live {
                        l.done = true;
                        if dead {
                            prop_assert_eq!(result.ok(), Some(NackOutcome::DeadLettered));
                        }
                    }
                }
                Op::Extend { pick, lease_ms } => {
                    let n = leases.len();
                    let l = &mut leases[pick % n];
                    let live = !l.done && l.deadline > now && latest.get(&l.token.job) == Some(&l.token.delivery);
                    let result = q.extend(now, &l.token, Duration::from_millis(lease_ms.into()));
                    prop_assert_eq!(result.is_ok(), live);
                    if let Ok(deadline) = result {
                        l.deadline = deadline;
                    }
                }
                Op::Advance { ms } => {
                    now += Duration::from_millis(ms.into());
                    q.advance(now);
                }
            }
            // Conservation: every job accepted is held in exactly one state,
            // or was acked.
            let counts = q.counts();
            prop_assert_eq!(counts.ready + counts.scheduled + counts.leased + counts.dead, q.len());
            prop_assert_eq!(q.stats().enqueued, acked + q.len() as u64);
            prop_assert_eq!(q.stats().acked, acked);
            let live_leases = leases
                .iter()
                .filter(|l| !l.done && l.deadline > now && latest.get(&l.token.job) == Some(&l.token.delivery))
                .count();
            prop_assert_eq!(counts.leased, live_leases);
        }
    }
}
