//! Starting on a data dir: lock it, read the journal back into the
//! in-memory engine, and keep writing to it; at exit, sync and close it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::config::Config;
use crate::engine::journal::{self, DataDir, Fsync, Journal, JournalOptions};
use crate::engine::{MemoryEngine, Recovery};
use crate::metrics::Metrics;

/// A durable engine and what it holds on to.
#[derive(Debug)]
pub(super) struct Durable {
    pub(super) engine: MemoryEngine,
    pub(super) journal: Journal,
    // Held until exit: no other jobq may open the dir meanwhile.
    _dir: DataDir,
}

/// Locks `dir`, replays its journal (on a blocking thread: this is all
/// file I/O), and starts the engine on it. Until this returns, the server
/// refuses every call (see [`crate::engine::Starting`]), so none sees a
/// half-recovered state.
pub(super) async fn open(
    dir: &Path,
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<Durable> {
    let started = Instant::now();
    let data_dir = DataDir::lock(dir)?;
    let mode = config.journal_recovery.into();
    let path = dir.to_path_buf();
    let (recovery, replayed) = tokio::task::spawn_blocking(move || {
        let mut recovery = Recovery::default();
        let replayed = journal::replay(&path, mode, |seq, record| recovery.apply(seq, record))?;
        Ok::<_, journal::JournalError>((recovery, replayed))
    })
    .await
    .context("the journal replay stopped")??;
    let options = JournalOptions {
        fsync: config.fsync,
        segment_bytes: config.journal_segment_bytes,
        sync_observer: Some(metrics.sync_observer()),
    };
    let journal = Journal::open(dir, replayed.next_seq, options)?;
    let (engine, counts) = MemoryEngine::durable(
        config.engine(),
        metrics.job_observer(),
        journal.clone(),
        recovery,
    );
    metrics.watch_journal(journal.clone(), started.elapsed());
    tracing::info!(
        data_dir = %dir.display(),
        fsync = ?config.fsync,
        queues = counts.queues,
        schedules = counts.schedules,
        ready = counts.ready,
        scheduled = counts.scheduled,
        were_leased = counts.were_leased,
        dead = counts.dead,
        records = replayed.records,
        torn_bytes = replayed.torn_bytes,
        took = ?started.elapsed(),
        "recovered the journal"
    );
    if config.fsync == Fsync::Never {
        tracing::warn!(
            data_dir = %dir.display(),
            "--fsync never: NOTHING IS SYNCED TO DISK. A crash of the machine (not just of jobq) can lose any change; use it for tests only"
        );
    }
    Ok(Durable {
        engine,
        journal,
        _dir: data_dir,
    })
}

impl Durable {
    /// Syncs what is pending and stops the journal's writer.
    pub(super) async fn close(self) {
        let journal = self.journal.clone();
        if tokio::task::spawn_blocking(move || journal.close())
            .await
            .is_err()
        {
            tracing::error!("closing the journal panicked");
        }
        let progress: Arc<str> = Arc::from(format!("{:?}", self.journal.progress()));
        tracing::info!(journal = %progress, "journal closed");
    }
}
