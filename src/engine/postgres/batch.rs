//! Group commit: calls on one queue that arrive while its previous
//! statement is in flight wait and then go together, in one statement and
//! one commit. A lone call goes at once; under load the batches grow by
//! themselves, so the database's commits (about a millisecond each, for
//! the WAL flush) stop being the limit on jobs per second.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::PgEngine;
use crate::engine::EngineError;
use crate::queue::QueueName;

/// Runs one batch: the answers, one per item, in order.
pub(super) type Flush<T, R> =
    fn(
        PgEngine,
        QueueName,
        Vec<T>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<R>, EngineError>> + Send>>;

/// Items waiting per queue, and whether a batch of that queue is in
/// flight.
#[derive(Debug)]
pub(super) struct Batcher<T, R> {
    // A std mutex: held to push or take items, never across an await.
    lanes: Mutex<HashMap<QueueName, Lane<T, R>>>,
    flush: Flush<T, R>,
    /// Finds this batcher in an engine, for the task that flushes.
    select: fn(&PgEngine) -> &Batcher<T, R>,
}

type Waiter<T, R> = (T, oneshot::Sender<Result<R, EngineError>>);

#[derive(Debug)]
struct Lane<T, R> {
    waiting: Vec<Waiter<T, R>>,
    flushing: bool,
}

/// Items per statement at most.
const MAX_BATCH: usize = 1000;

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    pub(super) fn new(flush: Flush<T, R>, select: fn(&PgEngine) -> &Batcher<T, R>) -> Self {
        Self {
            lanes: Mutex::default(),
            flush,
            select,
        }
    }

    /// Sends `item` with whatever else is waiting on `queue`, and returns
    /// its answer. Cancel-safe in the sense that matters: the batch runs
    /// to its end whether or not this caller still waits.
    pub(super) async fn submit(
        &self,
        engine: &PgEngine,
        queue: &QueueName,
        item: T,
    ) -> Result<R, EngineError> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut lanes = super::lock(&self.lanes);
            let lane = lanes.entry(queue.clone()).or_insert_with(|| Lane {
                waiting: Vec::new(),
                flushing: false,
            });
            lane.waiting.push((item, tx));
            !std::mem::replace(&mut lane.flushing, true)
        };
        if lead {
            let (owned, queue, select) = (engine.clone(), queue.clone(), self.select);
            engine.shared.tasks.spawn(async move {
                owned.run_lane(queue, select(&owned)).await;
            });
        }
        rx.await.unwrap_or(Err(EngineError::ShuttingDown))
    }

    /// Takes the next batch of `queue`, or marks the lane idle if none.
    fn take(&self, queue: &QueueName) -> Option<Vec<Waiter<T, R>>> {
        let mut lanes = super::lock(&self.lanes);
        let lane = lanes.get_mut(queue)?;
        if lane.waiting.is_empty() {
            lane.flushing = false;
            lanes.remove(queue);
            return None;
        }
        let n = lane.waiting.len().min(MAX_BATCH);
        Some(lane.waiting.drain(..n).collect())
    }
}

impl PgEngine {
    /// Flushes `queue`'s lane until it is empty.
    async fn run_lane<T: Send + 'static, R: Send + 'static>(
        &self,
        queue: QueueName,
        batcher: &Batcher<T, R>,
    ) {
        while let Some(batch) = batcher.take(&queue) {
            let (items, waiters): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
            let n = waiters.len();
            match (batcher.flush)(self.clone(), queue.clone(), items).await {
                Ok(answers) if answers.len() == n => {
                    for (tx, answer) in waiters.into_iter().zip(answers) {
                        let _ = tx.send(Ok(answer));
                    }
                }
                Ok(answers) => {
                    let error = EngineError::StoreFailed {
                        store: super::STORE,
                        reason: format!("a batch of {n} got {} answers", answers.len()),
                    };
                    for tx in waiters {
                        let _ = tx.send(Err(error.clone()));
                    }
                }
                Err(error) => {
                    for tx in waiters {
                        let _ = tx.send(Err(error.clone()));
                    }
                }
            }
        }
    }
}
