//! Cost of one enqueue → lease → ack cycle with 1 000 and with 1 000 000
//! jobs already queued: every step is O(log n) or better, so the two costs
//! should stay within 1.5× of each other.
//!
//! `cargo bench --bench engine`

// A benchmark's setup states what it needs with `expect`: a failed one
// stops the run, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::SystemTime;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jobq::engine::{EngineConfig, MemoryEngine};
use jobq::queue::{JobId, NewJob, Queue, QueueConfig, QueueName};
use tokio::time::Instant;

const SIZES: [usize; 2] = [1_000, 1_000_000];

fn job() -> NewJob {
    NewJob {
        payload: Bytes::from_static(&[b'x'; 128]),
        ..NewJob::default()
    }
}

fn config() -> QueueConfig {
    QueueConfig {
        capacity: 2_000_000,
        ..QueueConfig::default()
    }
}

fn queue_core(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_core_cycle");
    for size in SIZES {
        let now = Instant::now();
        let mut q = Queue::new(QueueName::new("bench").expect("name"), config());
        let mut next_id = 0u128;
        let mut ids = |n: usize| {
            (0..n)
                .map(|_| {
                    next_id += 1;
                    (JobId::from_u128(next_id), job())
                })
                .collect::<Vec<_>>()
        };
        for _ in 0..size / 1000 {
            q.enqueue(now, SystemTime::now(), &mut ids(1000))
                .expect("prefill");
        }
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                q.enqueue(now, SystemTime::UNIX_EPOCH, &mut ids(1))
                    .expect("enqueue");
                let leased = q.lease(now, 1, None);
                let token = leased[0].token;
                black_box(q.ack(now, &[token]).expect("ack"));
            })
        });
        assert_eq!(q.len(), size);
    }
    group.finish();
}

fn memory_engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_engine_cycle");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    for size in SIZES {
        let name = QueueName::new("bench").expect("name");
        let engine = rt.block_on(async {
            let engine = MemoryEngine::new(EngineConfig {
                queue_defaults: config(),
                memory_budget: 1 << 34,
                max_queues: 10,
                ..EngineConfig::default()
            });
            for _ in 0..size / 1000 {
                let jobs = (0..1000).map(|_| job()).collect();
                engine
                    .enqueue(name.clone(), jobs, None)
                    .await
                    .expect("prefill");
            }
            engine
        });
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                rt.block_on(async {
                    engine
                        .enqueue(name.clone(), vec![job()], None)
                        .await
                        .expect("enqueue");
                    let leased = engine
                        .lease(name.clone(), 1, None, std::time::Duration::ZERO)
                        .await
                        .expect("lease");
                    black_box(engine.ack(&name, &[leased[0].token]).expect("ack"));
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, queue_core, memory_engine);
criterion_main!(benches);
