//! Waking workers when jobs become ready, without polling the database.
//!
//! On this replica a waiting worker is woken at once through its queue's
//! [`Notify`]. Other replicas hear of it through `NOTIFY jobq_ready`, with
//! the queue's name as payload: [`send`] collects the queues that got jobs
//! over a few milliseconds and notifies them in one statement of its own,
//! never inside the transaction that stored the jobs (a `NOTIFY` takes a
//! database-wide lock at commit). [`receive`] listens and wakes this
//! replica's workers. A worker also looks again every second whatever it
//! hears, so a lost notification delays a job by at most that.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{PgEngine, PgOptions, error};
use crate::engine::EngineError;
use crate::queue::QueueName;

/// The channel replicas notify and listen on.
const CHANNEL: &str = "jobq_ready";

/// How long [`send`] gathers queues before notifying them together.
const DEBOUNCE: Duration = Duration::from_millis(2);

/// This replica's waiting workers, per queue, and the queues to tell the
/// other replicas about.
#[derive(Debug, Default)]
pub(super) struct Wakers {
    // std mutexes: held for a map lookup, never across an await.
    queues: Mutex<HashMap<QueueName, Arc<Notify>>>,
    /// Enqueues waiting for room, per queue.
    rooms: Mutex<HashMap<QueueName, Arc<Notify>>>,
    /// Cancelled when a queue is deleted through this replica.
    closed: Mutex<HashMap<QueueName, CancellationToken>>,
    outgoing: Mutex<HashSet<QueueName>>,
    send: Notify,
}

impl Wakers {
    /// The `Notify` workers of `queue` wait on.
    pub(super) fn of(&self, queue: &QueueName) -> Arc<Notify> {
        let mut queues = super::lock(&self.queues);
        Arc::clone(queues.entry(queue.clone()).or_default())
    }

    /// The `Notify` enqueues waiting for room in `queue` wait on.
    pub(super) fn of_room(&self, queue: &QueueName) -> Arc<Notify> {
        let mut rooms = super::lock(&self.rooms);
        Arc::clone(rooms.entry(queue.clone()).or_default())
    }

    /// Jobs left `queue` through this replica: waiting enqueues look again.
    pub(super) fn freed(&self, queue: &QueueName) {
        let notify = super::lock(&self.rooms).get(queue).cloned();
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Cancelled once `queue` is deleted through this replica.
    pub(super) fn closed(&self, queue: &QueueName) -> CancellationToken {
        let mut closed = super::lock(&self.closed);
        closed.entry(queue.clone()).or_default().clone()
    }

    /// Wakes one waiting worker of `queue` on this replica (or the next to
    /// wait); it passes the wake-up on if it leaves jobs behind.
    pub(super) fn wake(&self, queue: &QueueName) {
        let notify = super::lock(&self.queues).get(queue).cloned();
        if let Some(notify) = notify {
            notify.notify_one();
        }
    }

    /// Jobs became ready in `queue`: wakes a worker here, and has the
    /// other replicas told.
    pub(super) fn ready(&self, queue: &QueueName) {
        self.wake(queue);
        let first = {
            let mut outgoing = super::lock(&self.outgoing);
            outgoing.insert(queue.clone()) && outgoing.len() == 1
        };
        if first {
            self.send.notify_one();
        }
    }

    /// Wakes every waiting worker: after notifications may have been lost.
    pub(super) fn wake_all(&self) {
        let queues = super::lock(&self.queues);
        for notify in queues.values() {
            notify.notify_waiters();
            notify.notify_one();
        }
    }

    /// Forgets a deleted queue's waiters, once they have been woken.
    pub(super) fn forget(&self, queue: &QueueName) {
        let removed = super::lock(&self.queues).remove(queue);
        if let Some(notify) = removed {
            notify.notify_waiters();
        }
        let closed = super::lock(&self.closed).remove(queue);
        if let Some(closed) = closed {
            closed.cancel();
        }
        self.freed(queue);
        super::lock(&self.rooms).remove(queue);
    }

    async fn outgoing(&self) {
        self.send.notified().await;
    }

    fn take_outgoing(&self) -> Vec<String> {
        let mut outgoing = super::lock(&self.outgoing);
        outgoing.drain().map(|q| q.as_str().to_string()).collect()
    }
}

/// A listener on its own connection (a pool of one, so it reconnects by
/// itself), already listening for wake-ups and on `leases`, this
/// replica's channel for its streams' leases (see `holdings.rs`).
pub(super) async fn listen(options: &PgOptions, leases: &str) -> Result<PgListener, EngineError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(options.acquire_timeout)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.connect_options()?);
    let mut listener = PgListener::connect_with(&pool)
        .await
        .map_err(error::store)?;
    listener
        .listen_all([CHANNEL, leases])
        .await
        .map_err(error::store)?;
    Ok(listener)
}

/// Wakes this replica's workers for every queue another replica notifies,
/// and hands on what other replicas say of this one's streams' leases.
pub(super) async fn receive(engine: PgEngine, mut listener: PgListener) {
    let shutdown = engine.shared.shutdown.clone();
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) if notification.channel() != CHANNEL => {
                engine.lease_moved_elsewhere(notification.payload());
            }
            Ok(Some(notification)) => {
                if let Ok(queue) = QueueName::new(notification.payload()) {
                    engine.shared.wakers.wake(&queue);
                }
            }
            // The connection was lost and made again: what was sent
            // meanwhile is lost, so every worker looks again.
            Ok(None) => engine.shared.wakers.wake_all(),
            Err(error) => {
                tracing::debug!(%error, "listening for wake-ups failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Tells the other replicas which queues got jobs, a few milliseconds'
/// worth at a time.
pub(super) async fn send(engine: PgEngine) {
    let shared = &engine.shared;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = shared.wakers.outgoing() => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        let queues = shared.wakers.take_outgoing();
        if queues.is_empty() {
            continue;
        }
        let sent = sqlx::query("SELECT pg_notify($1, q) FROM unnest($2::text[]) AS q")
            .bind(CHANNEL)
            .bind(&queues)
            .execute(engine.pool())
            .await;
        if let Err(error) = sent {
            // The other replicas look again within a second anyway.
            tracing::debug!(%error, "could not notify the other replicas");
        }
    }
}
