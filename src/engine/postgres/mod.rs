//! [`PgEngine`]: the jobs of any number of jobq replicas in one PostgreSQL
//! database.
//!
//! Every replica is stateless: jobs, queues, keys and failures live in the
//! tables of `migrations/`, and a replica keeps only what makes it fast:
//! - wake-ups ([`wake`]): a job stored on this replica wakes this replica's
//!   waiting workers at once, and other replicas through a debounced
//!   `NOTIFY` sent after the commit, never inside it;
//! - timers ([`timers`]): one task sleeps until the earliest due delay or
//!   lease deadline in the database (at most a second, to see other
//!   replicas' jobs), then promotes and expires what is due, claiming rows
//!   with `FOR UPDATE SKIP LOCKED` so replicas share the work;
//! - a heartbeat row, whose age tells the other replicas that this one is
//!   gone, so they give its worker streams' leases back;
//! - figures ([`figures`]): per-state counts refreshed every few seconds,
//!   and totals added to the database every 2 s, so a scrape never
//!   scans the jobs table;
//! - which of its worker streams holds which lease ([`holdings`]), so a
//!   lease ended by any call, through any replica, frees the credit;
//! - a firing task for schedules ([`schedules`]), which live in the
//!   database like the jobs.
//!
//! A lease token carries the job's delivery number, and ack, nack and
//! extend match both, so a stale token changes nothing. No transaction is
//! held open across anything but its own statements.

mod batch;
mod consume;
mod error;
mod figures;
mod holdings;
mod operate;
mod produce;
mod rows;
mod schedules;
mod schema;
mod timers;
mod wake;
mod worker;

#[cfg(test)]
mod race_tests;
#[cfg(test)]
mod schedule_tests;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::engine::{Engine, EngineConfig, EngineError, JobObserver, NoObserver};
use crate::queue::{QueueConfig, QueueName};

pub use error::STORE;
use figures::Figures;
pub use schema::{SchemaError, migrate};
use wake::Wakers;

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// A `postgres://` URL (libpq's parameters, such as `sslmode` and
    /// `options=-csearch_path%3Dname`, included).
    pub url: String,
    /// Connections this replica opens at most.
    pub max_connections: u32,
    /// How long a call waits for a free connection, or for a new one to
    /// open, before it fails with UNAVAILABLE.
    pub acquire_timeout: Duration,
}

impl PgOptions {
    /// The defaults for `url`: 16 connections, 3 s to get one.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }

    /// The connection options the URL names.
    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions, EngineError> {
        PgConnectOptions::from_str(&self.url)
            // `jobq` in pg_stat_activity, unless the URL names another.
            .map(|o| match o.get_application_name() {
                Some(_) => o,
                None => o.application_name("jobq"),
            })
            .map_err(|e| EngineError::StoreFailed {
                store: STORE,
                reason: format!("the store URL is not a valid postgres:// URL: {e}"),
            })
    }
}

/// Jobs in PostgreSQL, shared by every replica that points at it. Cheap to
/// clone: clones share one pool and one set of background tasks.
#[derive(Clone, Debug)]
pub struct PgEngine {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pool: PgPool,
    /// This replica's id, in its heartbeat row and its streams' leases.
    replica: Uuid,
    config: EngineConfig,
    observer: Arc<dyn JobObserver>,
    wakers: Wakers,
    figures: Figures,
    ids: crate::engine::memory::IdGenerator,
    /// Wakes the timer task when this replica stores an earlier due time.
    timer: tokio::sync::Notify,
    observers: Mutex<HashMap<QueueName, Arc<dyn crate::engine::QueueObserver>>>,
    /// Single acks, gathered per queue (see `batch.rs`).
    acks: batch::Batcher<crate::queue::LeaseToken, bool>,
    /// Enqueues without idempotency keys, gathered per queue.
    enqueues: batch::Batcher<produce::Columns, bool>,
    /// Enqueues with idempotency keys, gathered per queue and stored in
    /// the order they came.
    keyed: batch::Batcher<produce::Keyed, produce::Tried>,
    /// Worker attachments open on this replica, per queue.
    workers: Mutex<HashMap<QueueName, usize>>,
    /// Worker streams' leases, to give credits back (see `holdings.rs`).
    holdings: holdings::Holdings,
    /// Woken when a schedule changes through this replica, so its firing
    /// task looks at the due times again.
    schedules_changed: tokio::sync::Notify,
    /// Unary leases waiting on this replica, per queue.
    long_polls: Mutex<HashMap<QueueName, usize>>,
    next_holder: AtomicU64,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Whether the database answered the last heartbeat.
    available: tokio::sync::watch::Sender<bool>,
}

/// A replica-local map's lock; what it guards stays whole if a holder
/// panicked (counts only), so a poisoned lock is taken as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl PgEngine {
    /// Connects, migrates the schema (see [`migrate`]) and starts this
    /// replica's background tasks.
    pub async fn connect(options: &PgOptions, config: EngineConfig) -> Result<Self, EngineError> {
        Self::connect_observed(options, config, Arc::new(NoObserver)).await
    }

    /// As [`connect`](Self::connect), reporting job timings to `observer`.
    pub async fn connect_observed(
        options: &PgOptions,
        config: EngineConfig,
        observer: Arc<dyn JobObserver>,
    ) -> Result<Self, EngineError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(options.connect_options()?)
            .await
            .map_err(error::store)?;
        schema::run(&pool).await.map_err(EngineError::from)?;
        let replica = Uuid::new_v4();
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        sqlx::query("INSERT INTO jobq_replicas (id, host) VALUES ($1, $2)")
            .bind(replica)
            .bind(host)
            .execute(&pool)
            .await
            .map_err(error::store)?;
        let engine = Self {
            shared: Arc::new(Shared {
                pool,
                replica,
                config,
                observer,
                wakers: Wakers::default(),
                figures: Figures::default(),
                ids: crate::engine::memory::IdGenerator::default(),
                timer: tokio::sync::Notify::new(),
                observers: Mutex::default(),
                acks: batch::Batcher::new(consume::ack_batch, |engine| &engine.shared.acks),
                enqueues: batch::Batcher::new(produce::insert_batch, |engine| {
                    &engine.shared.enqueues
                }),
                keyed: batch::Batcher::new(produce::insert_keyed, |engine| &engine.shared.keyed),
                workers: Mutex::default(),
                holdings: holdings::Holdings::default(),
                schedules_changed: tokio::sync::Notify::new(),
                long_polls: Mutex::default(),
                next_holder: AtomicU64::new(1),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                available: tokio::sync::watch::Sender::new(true),
            }),
        };
        engine.start_tasks(options).await?;
        tracing::info!(replica = %replica, "connected to the postgres store");
        Ok(engine)
    }

    async fn start_tasks(&self, options: &PgOptions) -> Result<(), EngineError> {
        let listener = wake::listen(options, &holdings::channel(self.replica())).await?;
        let tasks = &self.shared.tasks;
        tasks.spawn(wake::receive(self.clone(), listener));
        tasks.spawn(wake::send(self.clone()));
        tasks.spawn(timers::run(self.clone()));
        tasks.spawn(timers::heartbeat(self.clone()));
        tasks.spawn(timers::forget(self.clone()));
        tasks.spawn(timers::vacuum(self.clone()));
        tasks.spawn(figures::refresh(self.clone()));
        tasks.spawn(schedules::run(self.clone()));
        tasks.close();
        Ok(())
    }

    fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    fn replica(&self) -> Uuid {
        self.shared.replica
    }

    fn defaults(&self) -> &QueueConfig {
        &self.shared.config.queue_defaults
    }

    fn new_holder(&self) -> u64 {
        self.shared.next_holder.fetch_add(1, Ordering::Relaxed)
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<QueueName, usize>> {
        lock(&self.shared.workers)
    }

    /// Unary leases waiting on `queue` on this replica.
    pub fn long_polls(&self, queue: &QueueName) -> usize {
        lock(&self.shared.long_polls)
            .get(queue)
            .copied()
            .unwrap_or(0)
    }

    /// Marks the store reachable or not, logging each change.
    fn set_available(&self, up: bool) {
        let changed = self.shared.available.send_if_modified(|now| {
            let changed = *now != up;
            *now = up;
            changed
        });
        if changed && up {
            tracing::info!("the postgres store is reachable again");
            // Wake-ups sent while it was away are lost: look again.
            self.shared.wakers.wake_all();
        } else if changed {
            tracing::error!(
                "the postgres store cannot be reached; calls fail with UNAVAILABLE until it is back"
            );
        }
    }
}

#[async_trait]
impl Engine for PgEngine {
    fn store_kind(&self) -> &'static str {
        STORE
    }

    fn queue_defaults(&self) -> &QueueConfig {
        self.defaults()
    }

    fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    async fn stopped(&self) {
        self.shared.tasks.wait().await;
    }

    fn shutting_down(&self) -> WaitForCancellationFutureOwned {
        self.shared.shutdown.clone().cancelled_owned()
    }

    fn available(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.shared.available.subscribe())
    }
}
