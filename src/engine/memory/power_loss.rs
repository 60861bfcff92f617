//! Power loss, simulated as LazyFS does it: the journal's files keep only
//! what an `fdatasync` covered (and, in a second variant, a random part of
//! what was written after it, as a disk that wrote some pages back on its
//! own). Producers and workers run against a durable engine; at a random
//! moment the test notes what the clients were told, then copies the data
//! dir as a power loss would leave it, and starts an engine on the copy.
//! Under `fsync=always` no acknowledged change may be missing: every job
//! whose enqueue was answered OK is there unless its ack was answered OK,
//! and no job whose ack was answered OK is. Under `fsync=never` the same
//! check must find losses, which shows it can.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::MemoryEngine;
use crate::engine::journal::{self, Fsync, Journal, JournalOptions, RecoveryMode};
use crate::engine::{Consume, Engine, EngineConfig, NoObserver, Produce, Recovery};
use crate::queue::{JobId, NewJob, QueueName};

/// What the clients were told, and which acks they had sent.
#[derive(Clone, Debug, Default)]
struct Told {
    enqueued: HashSet<JobId>,
    acked: HashSet<JobId>,
    /// Acks sent, answered or not: such a job may be gone either way.
    acking: HashSet<JobId>,
}

fn lock(told: &Mutex<Told>) -> std::sync::MutexGuard<'_, Told> {
    told.lock().unwrap_or_else(|e| e.into_inner())
}

fn queue() -> QueueName {
    QueueName::new("power").expect("name")
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jobq-power-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

fn open(dir: &Path, fsync: Fsync, mode: RecoveryMode) -> (MemoryEngine, Journal) {
    let mut recovery = Recovery::default();
    let replayed = journal::replay(dir, mode, |seq, record| {
        recovery.apply(seq, record);
    })
    .expect("the journal replays");
    let options = JournalOptions {
        fsync,
        // Small, so segments turn over during the run.
        segment_bytes: 32 << 10,
        ..JournalOptions::default()
    };
    let journal = Journal::open(dir, replayed.next_seq, options).expect("journal");
    let (engine, _) = MemoryEngine::durable(
        EngineConfig::default(),
        Arc::new(NoObserver),
        journal.clone(),
        recovery,
    );
    (engine, journal)
}

/// Copies `dir` as a power loss would leave it: each segment as long as
/// its last sync made it, plus (with `rng`) a random part of what was
/// written after; a segment never synced is gone.
fn lose_unsynced(journal: &Journal, dir: &Path, to: &Path, rng: Option<&mut SmallRng>) {
    let synced = journal.synced_lengths_for_test();
    let mut rng = rng;
    for segment in journal.segments().expect("segments") {
        let Some(&length) = synced.get(&segment.path) else {
            continue;
        };
        let bytes = std::fs::read(&segment.path).expect("segment");
        let extra = match rng.as_deref_mut() {
            Some(rng) if bytes.len() as u64 > length => {
                rng.random_range(0..=bytes.len() as u64 - length)
            }
            _ => 0,
        };
        let kept = usize::try_from(length + extra).expect("size");
        let name = segment.path.strip_prefix(dir).expect("in the dir");
        std::fs::write(to.join(name), &bytes[..kept]).expect("copy");
    }
}

/// Runs producers and workers until `cut_after` enqueues were answered,
/// then takes the power-loss copy; returns what the clients were told by
/// then and the copy's dir.
async fn run_and_cut(name: &str, fsync: Fsync, seed: u64, torn: bool) -> (Told, PathBuf) {
    let dir = fresh_dir(name);
    let (engine, journal) = open(&dir, fsync, RecoveryMode::Strict);
    let told = Arc::new(Mutex::new(Told::default()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for producer in 0..4u8 {
        let (engine, told, stop) = (engine.clone(), Arc::clone(&told), stop.clone());
        tasks.spawn(async move {
            while !stop.is_cancelled() {
                let job = NewJob {
                    payload: Bytes::from(vec![producer; 200]),
                    ..NewJob::default()
                };
                if let Ok(stored) = Produce::enqueue(&engine, queue(), vec![job], None).await {
                    lock(&told).enqueued.insert(stored[0].id);
                }
            }
        });
    }
    for _ in 0..2 {
        let (engine, told, stop) = (engine.clone(), Arc::clone(&told), stop.clone());
        tasks.spawn(async move {
            while !stop.is_cancelled() {
                let Ok(leased) =
                    Consume::lease(&engine, queue(), 8, None, Duration::from_millis(5)).await
                else {
                    continue;
                };
                for delivery in leased {
                    lock(&told).acking.insert(delivery.job.id);
                    if Consume::ack(&engine, &queue(), &[delivery.token])
                        .await
                        .is_ok()
                    {
                        lock(&told).acked.insert(delivery.job.id);
                    }
                }
            }
        });
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let cut_after = rng.random_range(500..3000);
    while lock(&told).enqueued.len() < cut_after {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // With the writer held (a write under way may finish), what the
    // clients were told, then what is synced: a change answered by then
    // was synced before, and no record on disk is of an ack sent later.
    let paused = journal.pause_for_test();
    let told_then = lock(&told).clone();
    let copy = fresh_dir(&format!("{name}-copy"));
    lose_unsynced(&journal, &dir, &copy, torn.then_some(&mut rng));
    drop(paused);
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    engine.shutdown();
    engine.stopped().await;
    tokio::task::spawn_blocking(move || journal.close())
        .await
        .expect("close");
    let _ = std::fs::remove_dir_all(&dir);
    (told_then, copy)
}

/// Acknowledged changes missing after the power loss: enqueued jobs gone
/// without an ack, and acked jobs back.
async fn lost_after_power_loss(name: &str, fsync: Fsync, seed: u64, torn: bool) -> Vec<String> {
    let (told, copy) = run_and_cut(name, fsync, seed, torn).await;
    // Under `never` even a segment's start may be lost: only `truncate`
    // starts on what is left.
    let mode = match fsync {
        Fsync::Never => RecoveryMode::Truncate,
        _ => RecoveryMode::Strict,
    };
    let (engine, journal) = open(&copy, Fsync::Always, mode);
    let mut lost = Vec::new();
    for id in &told.enqueued {
        let held = engine.job_status(&queue(), id).is_some();
        if !held && !told.acking.contains(id) {
            lost.push(format!("job {id} was enqueued OK and is gone"));
        }
    }
    for id in &told.acked {
        if engine.job_status(&queue(), id).is_some() {
            lost.push(format!("job {id} was acked OK and is back"));
        }
    }
    assert!(!told.enqueued.is_empty() && !told.acked.is_empty());
    engine.shutdown();
    engine.stopped().await;
    tokio::task::spawn_blocking(move || journal.close())
        .await
        .expect("close");
    let _ = std::fs::remove_dir_all(&copy);
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fsync_always_a_power_loss_loses_no_acknowledged_change() {
    for seed in 1..=3 {
        let lost = lost_after_power_loss("always", Fsync::Always, seed, false).await;
        assert!(lost.is_empty(), "seed {seed}: {lost:?}");
        let lost = lost_after_power_loss("always-torn", Fsync::Always, seed, true).await;
        assert!(lost.is_empty(), "seed {seed}, torn: {lost:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fsync_never_the_same_power_loss_loses_acknowledged_jobs() {
    let lost = lost_after_power_loss("never", Fsync::Never, 1, false).await;
    assert!(!lost.is_empty(), "nothing was synced, yet nothing was lost");
}
