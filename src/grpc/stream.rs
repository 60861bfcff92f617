//! The `StreamLeases` RPC: a worker's long-lived, credit-limited stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::FuturesOrdered;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::TaskTracker;
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::convert;
use super::pb::{
    self, stream_leases_request::Kind as RequestKind, stream_leases_response::Kind as ResponseKind,
};
use super::status;
use super::validate::{self, Limits};
use crate::engine::{EngineError, SharedEngine, WorkerAttachment};

use jobq_proto::limits::MAX_STREAM_CREDITS;
/// Most jobs leased in one step before the stream lets other streams in.
const LEASE_BATCH: usize = 32;
/// Responses buffered towards a worker that reads slowly.
const SEND_BUFFER: usize = 64;

/// What the server sends on a lease stream.
pub(super) type ResponseStream = ReceiverStream<Result<pb::StreamLeasesResponse, Status>>;

/// Reads the stream's `open` message, attaches it to its queue and starts
/// serving it in its own task.
pub(super) async fn open(
    engine: &SharedEngine,
    limits: &Limits,
    tasks: &TaskTracker,
    mut inbound: Streaming<pb::StreamLeasesRequest>,
) -> Result<ResponseStream, Status> {
    let first = inbound
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("open: the stream ended before it was opened"))?;
    let Some(RequestKind::Open(open)) = first.kind else {
        return Err(Status::invalid_argument(
            "open: the first message on a lease stream must be `open`",
        ));
    };
    let queue = validate::queue_name(&open.queue)?;
    if !(1..=MAX_STREAM_CREDITS).contains(&open.credits) {
        return Err(Status::invalid_argument(format!(
            "open.credits: is {}; it must be from 1 to {MAX_STREAM_CREDITS}",
            open.credits
        )));
    }
    let lease_for = limits.lease_duration("open.lease_duration", open.lease_duration)?;
    let worker = engine
        .attach_worker(queue)
        .await
        .map_err(status::from_engine)?;
    let (tx, rx) = mpsc::channel(SEND_BUFFER);
    let span = tracing::info_span!("lease_stream", queue = %worker.queue());
    let session = Session {
        engine: Arc::clone(engine),
        limits: limits.clone(),
        worker: Arc::from(worker),
        credits: open.credits,
        lease_for,
        tx,
    };
    tasks.spawn(session.run(inbound).instrument(span));
    Ok(ReceiverStream::new(rx))
}

/// Why a stream ended.
enum End {
    /// The worker closed its side, or its connection went away.
    WorkerGone,
    /// The server is shutting down.
    Shutdown,
    /// The worker broke the stream's protocol.
    Refused(Status),
}

/// An ack, nack or extend being made durable, and its answer.
type Settling = Pin<Box<dyn Future<Output = pb::StreamResult> + Send>>;

/// Acks, nacks and extends of one stream whose answers wait for the store
/// at once, at most: past this the stream stops reading the worker.
const MAX_SETTLING: usize = 256;

struct Session {
    engine: SharedEngine,
    limits: Limits,
    worker: Arc<dyn WorkerAttachment>,
    /// The most leases the stream may hold.
    credits: u32,
    lease_for: Option<Duration>,
    tx: mpsc::Sender<Result<pb::StreamLeasesResponse, Status>>,
}

impl Session {
    /// Pushes jobs while credits allow and answers the worker's messages,
    /// sleeping (on jobs ready, a lease ended elsewhere, a message,
    /// shutdown) when there is nothing to do.
    async fn run(mut self, mut inbound: Streaming<pb::StreamLeasesRequest>) {
        tracing::debug!(credits = self.credits, "lease stream opened");
        let mut shutdown = std::pin::pin!(self.engine.shutting_down());
        // Answers still waiting for the store, in the order asked: a
        // worker's acks are applied as they arrive and made durable
        // together, not one store round trip each.
        let mut settling: FuturesOrdered<Settling> = FuturesOrdered::new();
        // A worker is told when its queue is paused, so that a paused queue
        // does not look like an empty one: at once if it is paused now, and
        // on each change after.
        // A stream of changes, kept across the loop: polling it costs
        // nothing until the queue's pause changes (a fresh `changed()` per
        // turn would register with the watch on every job).
        let paused = self.worker.paused();
        let paused_now = *paused.borrow();
        let mut pause_changes = tokio_stream::wrappers::WatchStream::from_changes(paused);
        let mut pause_known = true;
        if paused_now {
            let state = ResponseKind::QueueState(pb::QueueState { paused: true });
            if let Some(end) = self.send(state).await {
                return self.close(end, settling).await;
            }
        }
        let end = 'session: loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break 'session End::Shutdown,
                changed = pause_changes.next(), if pause_known => {
                    let Some(now) = changed else {
                        // The queue is gone; its end comes from next_leases.
                        pause_known = false;
                        continue;
                    };
                    let state = ResponseKind::QueueState(pb::QueueState { paused: now });
                    if let Some(end) = self.send(state).await {
                        break 'session end;
                    }
                }
                leased = self.worker.next_leases(self.credits as usize, LEASE_BATCH, self.lease_for) => {
                    let leased = match leased {
                        Ok(leased) => leased,
                        Err(error) => break 'session self.ended_by(error),
                    };
                    if let Err(error) = self.worker.leases_recorded().await {
                        break 'session self.ended_by(error);
                    }
                    let queue = self.worker.queue().clone();
                    for delivery in leased {
                        let lease = ResponseKind::Lease(convert::lease(&queue, delivery));
                        if let Some(end) = self.send(lease).await {
                            break 'session end;
                        }
                    }
                }
                Some(result) = settling.next(), if !settling.is_empty() => {
                    if let Some(end) = self.send(ResponseKind::Result(result)).await {
                        break 'session end;
                    }
                }
                message = inbound.next(), if settling.len() < MAX_SETTLING => match message {
                    Some(Ok(message)) => match self.handle(message) {
                        Ok(Some(mut answer)) => {
                            // Answered on the spot (the in-memory engine
                            // always is) when nothing is ahead of it.
                            let now = if settling.is_empty() {
                                (&mut answer).now_or_never()
                            } else {
                                None
                            };
                            match now {
                                Some(result) => {
                                    if let Some(end) = self.send(ResponseKind::Result(result)).await {
                                        break 'session end;
                                    }
                                }
                                None => settling.push_back(answer),
                            }
                        }
                        Ok(None) => {}
                        Err(status) => break 'session End::Refused(status),
                    },
                    Some(Err(status)) => {
                        if let Some(refused) =
                            super::client_faults::explain(&status, self.limits.max_request_bytes)
                        {
                            break 'session End::Refused(refused);
                        }
                        tracing::debug!(%status, "lease stream broke");
                        break 'session End::WorkerGone;
                    }
                    None => break 'session End::WorkerGone,
                },
            }
        };
        self.close(end, settling).await;
    }

    /// Ends the session: settles what the worker sent, gives the stream's
    /// leases back, then says why it ended.
    async fn close(self, end: End, mut settling: FuturesOrdered<Settling>) {
        // Acks, nacks and extends the worker sent count, answered or not:
        // apply and settle them before the stream's leases go back.
        while settling.next().await.is_some() {}
        let Session { worker, tx, .. } = self;
        // Give the stream's leases back before saying goodbye.
        drop(worker);
        let last = match end {
            End::WorkerGone => return,
            End::Shutdown => Status::unavailable("the server is shutting down; reconnect"),
            End::Refused(status) => status,
        };
        let _ = tx.send(Err(last)).await;
    }

    /// Why the stream ends when the engine stops handing out leases.
    fn ended_by(&self, error: EngineError) -> End {
        match error {
            EngineError::ShuttingDown => End::Shutdown,
            EngineError::QueueNotFound(queue) => {
                End::Refused(Status::not_found(format!("queue {queue} was deleted")))
            }
            other => End::Refused(status::from_engine(other)),
        }
    }

    /// Sends one message, unless the worker is gone or the server shuts
    /// down first (a worker that stops reading must not hold shutdown up).
    async fn send(&self, kind: ResponseKind) -> Option<End> {
        let message = pb::StreamLeasesResponse { kind: Some(kind) };
        tokio::select! {
            biased;
            () = self.engine.shutting_down() => Some(End::Shutdown),
            sent = self.tx.send(Ok(message)) => sent.err().map(|_| End::WorkerGone),
        }
    }

    /// Applies one message from the worker. Returns the result to send
    /// back, or the status that ends the stream for a protocol error.
    fn handle(&mut self, message: pb::StreamLeasesRequest) -> Result<Option<Settling>, Status> {
        match message.kind {
            None => Err(Status::invalid_argument(
                "kind: each message on a lease stream must set one of grant, ack, nack, extend or drain",
            )),
            Some(RequestKind::Open(_)) => {
                Err(Status::invalid_argument("open: the stream is already open"))
            }
            Some(RequestKind::Grant(grant)) => {
                let total = self.credits.saturating_add(grant.credits);
                if grant.credits == 0 || total > MAX_STREAM_CREDITS {
                    return Err(Status::invalid_argument(format!(
                        "grant.credits: {} would make {total} credits; grant at least 1, up to {MAX_STREAM_CREDITS} in all",
                        grant.credits
                    )));
                }
                self.credits = total;
                Ok(None)
            }
            Some(RequestKind::Drain(_)) => {
                tracing::debug!("lease stream draining");
                self.credits = 0;
                Ok(None)
            }
            Some(RequestKind::Ack(ack)) => {
                Ok(Some(Box::pin(ack_answer(Arc::clone(&self.worker), ack))))
            }
            Some(RequestKind::Nack(nack)) => {
                Ok(Some(Box::pin(nack_answer(Arc::clone(&self.worker), nack))))
            }
            Some(RequestKind::Extend(extend)) => Ok(Some(Box::pin(extend_answer(
                Arc::clone(&self.worker),
                self.limits.clone(),
                extend,
            )))),
        }
    }
}

async fn ack_answer(worker: Arc<dyn WorkerAttachment>, ack: pb::StreamAck) -> pb::StreamResult {
    let outcome = match validate::lease_token("ack.lease_token", &ack.lease_token) {
        Ok(token) => worker
            .ack(&token)
            .await
            .map(|_| pb::StreamResult::default())
            .map_err(status::from_engine),
        Err(invalid) => Err(invalid.into()),
    };
    result(ack.request_id, outcome)
}

async fn nack_answer(worker: Arc<dyn WorkerAttachment>, nack: pb::StreamNack) -> pb::StreamResult {
    let request_id = nack.request_id;
    let outcome = async {
        let token = validate::lease_token("nack.lease_token", &nack.lease_token)?;
        let request =
            validate::nack_request("nack.", nack.retry_delay, nack.dead_letter, nack.reason)?;
        let outcome = worker
            .nack(&token, request)
            .await
            .map_err(status::from_engine)?;
        let response = convert::nack_response(outcome);
        Ok(pb::StreamResult {
            nack_outcome: response.outcome,
            time: response.retry_time,
            ..pb::StreamResult::default()
        })
    };
    result(request_id, outcome.await)
}

async fn extend_answer(
    worker: Arc<dyn WorkerAttachment>,
    limits: Limits,
    extend: pb::StreamExtend,
) -> pb::StreamResult {
    let outcome = async {
        let token = validate::lease_token("extend.lease_token", &extend.lease_token)?;
        let lease_for = limits
            .lease_duration("extend.lease_duration", extend.lease_duration)?
            .ok_or_else(|| Status::invalid_argument("extend.lease_duration: is required"))?;
        let deadline = worker
            .extend(&token, lease_for)
            .await
            .map_err(status::from_engine)?;
        Ok(pb::StreamResult {
            time: Some(convert::timestamp(deadline)),
            ..pb::StreamResult::default()
        })
    };
    result(extend.request_id, outcome.await)
}

/// A StreamResult for `request_id`: the success fields, or the error's code
/// and message.
fn result(request_id: u64, outcome: Result<pb::StreamResult, Status>) -> pb::StreamResult {
    match outcome {
        Ok(done) => pb::StreamResult { request_id, ..done },
        Err(status) => pb::StreamResult {
            request_id,
            code: status.code() as i32,
            message: status.message().to_string(),
            ..pb::StreamResult::default()
        },
    }
}
