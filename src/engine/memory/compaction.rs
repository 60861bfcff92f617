//! Keeping a durable engine's journal bounded by its live data, not by its
//! history. Whenever the journal has grown by a 256th of a segment (or begun
//! one), its oldest segment is looked at: one that holds nothing live is
//! deleted at once; one that does is compacted once the journal holds more
//! than about twice the live bytes plus one segment: its live jobs are
//! copied forward (each as a snapshot of how it is now), and so are its
//! idempotency keys still inside their window (a key outlives its job),
//! then it is deleted (schedules too: each whose latest record is there
//! is written again). One old delayed or dead job therefore never pins old
//! files, and a steady enqueue/ack load keeps a steady size.
//!
//! Jobs are found by the record their state starts from (each slot keeps
//! that index), a bounded batch per hold of a queue's lock, so compaction
//! never holds a queue for long however many jobs it copies.

use super::durable;
use super::{EngineError, MemoryEngine};
use crate::engine::journal::{Journal, JournalError};
use crate::queue::cost::JOB_OVERHEAD_BYTES;

/// Jobs copied forward per hold of a queue's lock.
const COPY_BATCH: usize = 1000;
/// Bytes a live job's record takes beyond its payload and metadata,
/// roughly: framing, ids, times, counters.
const RECORD_OVERHEAD: u64 = 96;
/// Bytes an idempotency key's record takes beyond the key, roughly.
const KEY_RECORD_OVERHEAD: u64 = 64;

/// Compacts as the journal grows, until the engine shuts down.
pub(super) async fn run(engine: MemoryEngine, journal: Journal, epoch: u64) {
    let mut seen = 0;
    loop {
        if let Err(error) = compact(&engine, &journal, epoch).await {
            tracing::error!(%error, "journal compaction failed; the journal grows until the server restarts");
            return;
        }
        tokio::select! {
            () = engine.shared.shutdown.cancelled() => return,
            grown = journal.grown(seen) => match grown {
                Ok(grown) => seen = grown,
                Err(_) => return,
            },
        }
    }
}

/// Deletes old segments, copying their live jobs forward first, while the
/// journal is over its bound.
async fn compact(engine: &MemoryEngine, journal: &Journal, epoch: u64) -> Result<(), EngineError> {
    loop {
        let segments = blocking(journal, |j| j.segments()).await?;
        let [oldest, next, ..] = segments.as_slice() else {
            return Ok(());
        };
        let total: u64 = segments.iter().map(|s| s.bytes).sum();
        journal.note_disk(segments.len(), total);
        let slots = engine.slots();
        // An oldest segment with nothing live in it goes at once, at the
        // cost of rewriting the settings; one that holds live jobs or keys
        // goes once the journal is over its bound.
        let schedules = &engine.shared.schedules;
        if slots.iter().any(|slot| slot.holds_live_before(next.first))
            || schedules.holds_live_before(next.first)
        {
            let bound = |live: u64| 2 * live + journal.segment_bytes();
            // What the live jobs take on disk: their payloads and
            // metadata (what the budget counts for them, less its fixed
            // overhead per job) and a record's overhead each.
            let held = engine.jobs_held() as u64;
            let jobs = engine.job_bytes().saturating_sub(held * JOB_OVERHEAD_BYTES)
                + held * RECORD_OVERHEAD;
            if total <= bound(jobs) {
                return Ok(());
            }
            let keys: u64 = slots
                .iter()
                .map(|slot| {
                    let (count, bytes) = slot.keys_on_record();
                    bytes + count as u64 * KEY_RECORD_OVERHEAD
                })
                .sum::<u64>()
                + schedules.record_bytes();
            if total <= bound(jobs + keys) {
                return Ok(());
            }
        }
        let mut copied = 0;
        for slot in slots {
            loop {
                let batch = slot.copy_forward(next.first, COPY_BATCH);
                if batch == 0 {
                    break;
                }
                copied += batch;
                tokio::task::yield_now().await;
            }
            // The settings a deleted segment may hold, written again.
            slot.write_settings();
        }
        // The schedules last written in the segment, written again.
        copied += schedules.copy_forward(journal, next.first);
        // And the run's epoch, so the next run's tokens stay past it.
        journal.append(&durable::booted_record(epoch));
        journal
            .durable(journal.last_appended())
            .await
            .map_err(super::journal_failed)?;
        let oldest = oldest.clone();
        blocking(journal, move |j| j.remove_segment(&oldest)).await?;
        journal.note_disk(segments.len() - 1, total - segments[0].bytes);
        tracing::debug!(
            segment = %segments[0].path.display(),
            bytes = segments[0].bytes,
            copied,
            journal_bytes = total - segments[0].bytes,
            "journal segment compacted"
        );
    }
}

/// Runs a blocking journal call off the Tokio workers.
async fn blocking<T: Send + 'static>(
    journal: &Journal,
    call: impl FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
) -> Result<T, EngineError> {
    let journal = journal.clone();
    tokio::task::spawn_blocking(move || call(&journal))
        .await
        .map_err(|e| EngineError::StoreFailed {
            store: "journal",
            reason: format!("a compaction step stopped: {e}"),
        })?
        .map_err(super::journal_failed)
}
