//! The `StreamEnqueue` RPC: a producer's stream of single-job enqueues,
//! each stored on arrival and answered on its own.
//!
//! The answers are a stream adapter over the requests, not a task: the
//! connection polls it when it can write, each poll stores the next job
//! that has arrived, and answers produced in one go leave in one write. A
//! producer that does not read its answers is therefore not read either,
//! and HTTP/2 flow control slows it down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::FuturesOrdered;
use tokio_stream::Stream;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::pb;
use super::status;
use super::validate::{self, Limits};
use crate::engine::SharedEngine;
use crate::queue::{NewJob, QueueName};
use crate::telemetry::TRACEPARENT;

/// Jobs of one stream whose store has begun but not been answered: what a
/// producer can have the server hold for it before reading stops.
const MAX_IN_FLIGHT: usize = 128;

/// One job's answer, once its store is done.
type Answer = Pin<Box<dyn Future<Output = pb::StreamEnqueueResponse> + Send>>;

/// The answers of one producer stream, in request order.
///
/// Each arriving job starts its store at once; stores that the engine
/// cannot finish on the spot (an fsync, a database round trip) wait in an
/// ordered set of at most [`MAX_IN_FLIGHT`], so answers leave in request
/// order and reading stops while the set is full. A refused job is
/// answered with its error and the stream goes on.
pub struct ResponseStream {
    engine: SharedEngine,
    limits: Limits,
    inbound: Streaming<pb::StreamEnqueueRequest>,
    /// The producer closed its side, or it broke (then with its status,
    /// sent once the answers before it are out).
    inbound_done: bool,
    broke: Option<Status>,
    in_flight: FuturesOrdered<Answer>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    stored: u64,
    ended: bool,
}

impl std::fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("in_flight", &self.in_flight.len())
            .field("stored", &self.stored)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl ResponseStream {
    /// The answers to `inbound`'s jobs.
    pub fn new(
        engine: &SharedEngine,
        limits: &Limits,
        inbound: Streaming<pb::StreamEnqueueRequest>,
    ) -> Self {
        tracing::debug!("enqueue stream opened");
        Self {
            shutdown: Box::pin(engine.shutting_down()),
            engine: Arc::clone(engine),
            limits: limits.clone(),
            inbound,
            inbound_done: false,
            broke: None,
            in_flight: FuturesOrdered::new(),
            stored: 0,
            ended: false,
        }
    }

    fn end(&mut self, how: &str) {
        self.ended = true;
        tracing::debug!(stored = self.stored, "enqueue stream {how}");
    }

    fn answered(
        &mut self,
        answer: pb::StreamEnqueueResponse,
    ) -> Poll<Option<<Self as Stream>::Item>> {
        self.stored += u64::from(answer.code == 0);
        Poll::Ready(Some(Ok(answer)))
    }

    /// Starts storing one job as `Enqueue` would, without waiting for room.
    fn store(&self, request: pb::StreamEnqueueRequest) -> Answer {
        let request_id = request.request_id;
        // A job from a traced producer gets its own span in the producer's
        // trace; untraced jobs cost no span.
        let span = request
            .job
            .as_ref()
            .filter(|job| job.metadata.contains_key(TRACEPARENT))
            .map(|job| {
                super::observe::traced_span(
                    "jobq.v1.JobQueue",
                    "StreamEnqueue",
                    &request.queue,
                    &job.metadata,
                )
            });
        let (queue, job) = match validate(&self.limits, request) {
            Ok(valid) => valid,
            Err(status) => {
                if let Some(span) = &span {
                    span.record("rpc.grpc.status_code", status.code() as i32);
                }
                let answer = refused(request_id, &status);
                return Box::pin(std::future::ready(answer));
            }
        };
        let engine = Arc::clone(&self.engine);
        let recorded = span.clone();
        let store = async move {
            let outcome = engine
                .enqueue(queue, vec![job], None)
                .await
                .map_err(status::from_engine)
                .and_then(|stored| {
                    stored
                        .first()
                        .copied()
                        .ok_or_else(|| Status::internal("enqueue stored no job"))
                });
            match outcome {
                Ok(stored) => {
                    if let Some(span) = &recorded {
                        span.record("messaging.message.id", stored.id.to_string());
                    }
                    pb::StreamEnqueueResponse {
                        request_id,
                        job_id: stored.id.to_string(),
                        duplicate: stored.duplicate,
                        ..pb::StreamEnqueueResponse::default()
                    }
                }
                Err(status) => {
                    if let Some(span) = &recorded {
                        span.record("rpc.grpc.status_code", status.code() as i32);
                    }
                    refused(request_id, &status)
                }
            }
        };
        match span {
            Some(span) => Box::pin(store.instrument(span)),
            None => Box::pin(store),
        }
    }
}

impl Stream for ResponseStream {
    type Item = Result<pb::StreamEnqueueResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if this.shutdown.as_mut().poll(cx).is_ready() {
            this.end("ended by shutdown");
            return Poll::Ready(Some(Err(Status::unavailable(
                "the server is shutting down; jobs without an answer may not be stored: reconnect and retry them",
            ))));
        }
        // Start storing what has arrived, while the in-flight set has room.
        while !this.inbound_done && this.in_flight.len() < MAX_IN_FLIGHT {
            match Pin::new(&mut this.inbound).poll_next(cx) {
                Poll::Ready(Some(Ok(request))) => {
                    let mut answer = this.store(request);
                    if this.in_flight.is_empty()
                        && let Poll::Ready(answer) = answer.as_mut().poll(cx)
                    {
                        // Answered on the spot (the in-memory engine always
                        // is): nothing to keep in order.
                        return this.answered(answer);
                    }
                    this.in_flight.push_back(answer);
                }
                // A frame that does not decode, or a broken connection: the
                // jobs before it are stored and answered first.
                Poll::Ready(Some(Err(status))) => {
                    let limit = this.limits.max_request_bytes;
                    this.broke =
                        Some(super::client_faults::explain(&status, limit).unwrap_or(status));
                    this.inbound_done = true;
                }
                Poll::Ready(None) => this.inbound_done = true,
                Poll::Pending => break,
            }
        }
        match Pin::new(&mut this.in_flight).poll_next(cx) {
            Poll::Ready(Some(answer)) => this.answered(answer),
            Poll::Ready(None) if this.inbound_done => match this.broke.take() {
                Some(status) => {
                    this.end("broke");
                    Poll::Ready(Some(Err(status)))
                }
                None => {
                    this.end("closed by the producer");
                    Poll::Ready(None)
                }
            },
            // Nothing in flight: the inbound side has registered the wake-up.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

/// The job a request carries, checked as `Enqueue` checks it.
fn validate(
    limits: &Limits,
    mut request: pb::StreamEnqueueRequest,
) -> Result<(QueueName, NewJob), Status> {
    let queue = validate::owned_queue_name(std::mem::take(&mut request.queue))?;
    let job = request
        .job
        .ok_or_else(|| Status::invalid_argument("job: is required"))?;
    Ok((queue, limits.new_job("job", job)?))
}

/// The answer for a job that was refused.
fn refused(request_id: u64, status: &Status) -> pb::StreamEnqueueResponse {
    pb::StreamEnqueueResponse {
        request_id,
        code: status.code() as i32,
        message: status.message().to_string(),
        ..pb::StreamEnqueueResponse::default()
    }
}
