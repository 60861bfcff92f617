//! [`LeaseStream`]: a worker stream's hold on one queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::slot::Slot;
use super::{Broker, BrokerError};
use crate::queue::{Delivery, HolderId, LeaseToken, NackOutcome, NackRequest, QueueName};

/// A worker stream attached to one queue. Leases taken through it are
/// counted as its own; when it is dropped, for whatever reason (the worker
/// closed it, the connection broke, the task was cancelled), every lease it
/// still holds goes back to the queue at once as a failed attempt.
#[derive(Debug)]
pub struct LeaseStream {
    broker: Broker,
    slot: Arc<Slot>,
    queue: QueueName,
    holder: HolderId,
    released: Arc<Notify>,
}

impl LeaseStream {
    pub(super) fn new(broker: Broker, slot: Arc<Slot>, queue: QueueName, holder: HolderId) -> Self {
        let released = slot.add_holder(holder);
        Self {
            broker,
            slot,
            queue,
            holder,
            released,
        }
    }

    /// The queue.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    /// Leases this stream holds now.
    pub fn held(&self) -> usize {
        self.slot.with(|q| q.held_by(self.holder))
    }

    /// Leases up to `max` ready jobs for this stream, without waiting.
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

    /// Completes when the queue is deleted or the server shuts down.
    pub async fn closed(&self) {
        self.slot.closed.cancelled().await;
    }

    /// Woken when jobs become ready in the queue.
    pub fn ready(&self) -> &Notify {
        &self.slot.ready
    }

    /// Woken when a lease of this stream ends outside it (a unary ack or
    /// nack, an expiry), which gives its credit back.
    pub fn released(&self) -> &Notify {
        &self.released
    }

    /// Acks one of this queue's leases.
    pub fn ack(&self, token: &LeaseToken) -> Result<usize, BrokerError> {
        self.broker.ack(&self.queue, std::slice::from_ref(token))
    }

    /// Nacks one of this queue's leases.
    pub fn nack(
        &self,
        token: &LeaseToken,
        request: NackRequest,
    ) -> Result<NackOutcome, BrokerError> {
        self.broker.nack(&self.queue, token, request)
    }

    /// Extends one of this queue's leases.
    pub fn extend(&self, token: &LeaseToken, lease_for: Duration) -> Result<Instant, BrokerError> {
        self.broker.extend(&self.queue, token, lease_for)
    }
}

impl Drop for LeaseStream {
    fn drop(&mut self) {
        let released = self
            .slot
            .remove_holder(self.holder, "the worker stream holding the lease closed");
        if released > 0 {
            tracing::info!(queue = %self.queue, leases = released, "worker stream closed; its leases went back to the queue");
        }
    }
}
