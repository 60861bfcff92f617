//! [`MemoryAttachment`]: a worker's hold on one in-memory queue.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::slot::Slot;
use super::{EngineError, MemoryEngine};
use crate::queue::{Delivery, HolderId, LeaseToken, NackOutcome, NackRequest, QueueName};

/// A worker attached to one queue. Leases taken through it are counted as
/// its own; when it is dropped, for whatever reason (the worker closed its
/// stream, the connection broke, the task was cancelled), every lease it
/// still holds goes back to the queue at once as a failed attempt.
#[derive(Debug)]
pub struct MemoryAttachment {
    engine: MemoryEngine,
    slot: Arc<Slot>,
    queue: QueueName,
    holder: HolderId,
    released: Arc<Notify>,
}

impl MemoryAttachment {
    pub(super) fn new(
        engine: MemoryEngine,
        slot: Arc<Slot>,
        queue: QueueName,
        holder: HolderId,
    ) -> Self {
        let released = slot.add_holder(holder);
        Self {
            engine,
            slot,
            queue,
            holder,
            released,
        }
    }

    /// The engine it is attached to.
    pub(super) fn engine(&self) -> &MemoryEngine {
        &self.engine
    }

    /// The queue.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    /// Whether the queue is paused, now and as it changes.
    pub fn paused(&self) -> tokio::sync::watch::Receiver<bool> {
        self.slot.paused.subscribe()
    }

    /// Leases this attachment holds now.
    pub fn held(&self) -> usize {
        self.slot.with(|q| q.held_by(self.holder))
    }

    /// Leases up to `max` ready jobs for this attachment, without waiting.
    pub fn try_lease(&self, max: usize, lease_for: Option<Duration>) -> Vec<Delivery> {
        let (leased, more_ready) = self.slot.with(|q| {
            let leased = q.lease_as(Instant::now(), max, lease_for, Some(self.holder));
            (leased, q.counts().ready > 0)
        });
        if !leased.is_empty() && more_ready {
            // Pass the wake-up on to the next waiting worker.
            self.slot.ready.notify_one();
        }
        self.slot.observe_leases(&leased);
        leased
    }

    /// See [`WorkerAttachment::next_leases`](crate::engine::WorkerAttachment::next_leases).
    pub async fn next_leases(
        &self,
        credits: usize,
        max: usize,
        lease_for: Option<Duration>,
    ) -> Result<Vec<Delivery>, EngineError> {
        loop {
            let spare = credits.saturating_sub(self.held());
            let mut ready = pin!(self.slot.ready.notified());
            if spare > 0 {
                // Only an attachment with room joins the queue's waiters, so
                // a full one never swallows a wake-up another could use.
                ready.as_mut().enable();
            }
            let mut released = pin!(self.released.notified());
            released.as_mut().enable();
            if spare > 0 {
                // One synchronous step after the last await: the jobs leave
                // the ready set and reach the caller with no cancellation
                // point in between.
                let leased = self.try_lease(spare.min(max), lease_for);
                if !leased.is_empty() {
                    return Ok(leased);
                }
            }
            if self.engine.is_shutting_down() {
                return Err(EngineError::ShuttingDown);
            }
            tokio::select! {
                () = self.slot.closed.cancelled() => {
                    return Err(if self.engine.is_shutting_down() {
                        EngineError::ShuttingDown
                    } else {
                        EngineError::QueueNotFound(self.queue.clone())
                    });
                }
                () = &mut ready, if spare > 0 => {}
                // A lease of this attachment ended elsewhere (a unary ack, an
                // expiry), which gives its credit back.
                () = &mut released => {}
            }
        }
    }

    /// Acks one of this queue's leases.
    pub fn ack(&self, token: &LeaseToken) -> Result<usize, EngineError> {
        self.engine.ack(&self.queue, std::slice::from_ref(token))
    }

    /// Nacks one of this queue's leases.
    pub fn nack(
        &self,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, EngineError> {
        self.engine.nack(&self.queue, token, request)
    }

    /// Extends one of this queue's leases.
    pub fn extend(&self, token: &LeaseToken, lease_for: Duration) -> Result<Instant, EngineError> {
        self.engine.extend(&self.queue, token, lease_for)
    }
}

impl Drop for MemoryAttachment {
    fn drop(&mut self) {
        let released = self
            .slot
            .remove_holder(self.holder, "the worker stream holding the lease closed");
        if released > 0 {
            tracing::info!(queue = %self.queue, leases = released, "worker detached; its leases went back to the queue");
        }
    }
}
