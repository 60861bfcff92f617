//! Keeping a durable engine's journal bounded by its live data, not by its
//! history: whenever the writer begins a segment and the journal holds more
//! than about twice the live bytes plus one segment, the oldest segment's
//! live jobs are copied forward (each as a snapshot of how it is now), and
//! so are its idempotency keys still inside their window (a key outlives
//! its job), and the segment is deleted. A segment with nothing live left
//! is deleted without copying anything. One old delayed or dead job therefore never
//! pins old files, and a steady enqueue/ack load keeps a steady size.
//!
//! Jobs are found by the record their state starts from (each slot keeps
//! that index), a bounded batch per hold of a queue's lock, so compaction
//! never holds a queue for long however many jobs it copies.

use super::durable;
use super::{EngineError, MemoryEngine};
use crate::engine::journal::{Journal, JournalError};

/// Jobs copied forward per hold of a queue's lock.
const COPY_BATCH: usize = 1000;
/// Bytes a live job's record takes beyond its payload and metadata,
/// roughly: framing, ids, times, counters.
const RECORD_OVERHEAD: u64 = 96;
/// Bytes an idempotency key's record takes beyond the key, roughly.
const KEY_RECORD_OVERHEAD: u64 = 64;

/// Compacts after each new segment until the engine shuts down.
pub(super) async fn run(engine: MemoryEngine, journal: Journal, epoch: u64) {
    let mut seen = 0;
    loop {
        if let Err(error) = compact(&engine, &journal, epoch).await {
            tracing::error!(%error, "journal compaction failed; the journal grows until the server restarts");
            return;
        }
        tokio::select! {
            () = engine.shared.shutdown.cancelled() => return,
            begun = journal.segment_begun(seen) => match begun {
                Ok(begun) => seen = begun,
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
        let keys: u64 = slots
            .iter()
            .map(|slot| {
                let (count, bytes) = slot.keys_on_record();
                bytes + count as u64 * KEY_RECORD_OVERHEAD
            })
            .sum();
        let live = engine.memory_used() + engine.jobs_held() as u64 * RECORD_OVERHEAD + keys;
        if total <= 2 * live + journal.segment_bytes() {
            return Ok(());
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
            live_bytes = live,
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
