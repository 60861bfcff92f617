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
use std::task::{Context, Poll, ready};

use tokio_stream::Stream;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::{Status, Streaming};

use super::convert::{self, Limits};
use super::pb;
use super::status;
use crate::broker::Broker;
use crate::telemetry::TRACEPARENT;

/// The answers of one producer stream, in request order.
pub struct ResponseStream {
    broker: Broker,
    limits: Limits,
    inbound: Streaming<pb::StreamEnqueueRequest>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    stored: u64,
    ended: bool,
}

impl ResponseStream {
    /// The answers to `inbound`'s jobs.
    pub fn new(
        broker: &Broker,
        limits: &Limits,
        inbound: Streaming<pb::StreamEnqueueRequest>,
    ) -> Self {
        tracing::debug!("enqueue stream opened");
        Self {
            shutdown: Box::pin(broker.shutdown_signal()),
            broker: broker.clone(),
            limits: limits.clone(),
            inbound,
            stored: 0,
            ended: false,
        }
    }

    fn end(&mut self, how: &str) {
        self.ended = true;
        tracing::debug!(stored = self.stored, "enqueue stream {how}");
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
        match ready!(Pin::new(&mut this.inbound).poll_next(cx)) {
            Some(Ok(request)) => {
                let answer = store(&this.broker, &this.limits, request);
                this.stored += u64::from(answer.code == 0);
                Poll::Ready(Some(Ok(answer)))
            }
            // A frame that does not decode, or a broken connection: the
            // jobs before it are stored and answered.
            Some(Err(status)) => {
                this.end("broke");
                Poll::Ready(Some(Err(status)))
            }
            None => {
                this.end("closed by the producer");
                Poll::Ready(None)
            }
        }
    }
}

/// Stores one job as `Enqueue` would, without waiting for room, and
/// answers with its id or its error.
fn store(
    broker: &Broker,
    limits: &Limits,
    request: pb::StreamEnqueueRequest,
) -> pb::StreamEnqueueResponse {
    let request_id = request.request_id;
    // A job from a traced producer gets its own span in the producer's
    // trace; untraced jobs cost no span.
    let span = request
        .job
        .as_ref()
        .filter(|job| job.metadata.contains_key(TRACEPARENT))
        .map(|job| {
            super::service::traced_span(
                "jobq.v1.JobQueue",
                "StreamEnqueue",
                &request.queue,
                &job.metadata,
            )
        });
    let _entered = span.as_ref().map(tracing::Span::enter);
    let outcome = (|| {
        let queue = convert::queue_name(&request.queue)?;
        let job = request
            .job
            .ok_or_else(|| Status::invalid_argument("job: is required"))?;
        let job = limits.new_job("job", job)?;
        let stored = broker
            .try_enqueue(&queue, vec![job])
            .map_err(status::from_broker)?;
        stored
            .first()
            .copied()
            .ok_or_else(|| Status::internal("enqueue stored no job"))
    })();
    if let Some(span) = &span {
        match &outcome {
            Ok(stored) => span.record("messaging.message.id", stored.id.to_string()),
            Err(status) => span.record("rpc.grpc.status_code", status.code() as i32),
        };
    }
    match outcome {
        Ok(stored) => pb::StreamEnqueueResponse {
            request_id,
            job_id: stored.id.to_string(),
            duplicate: stored.duplicate,
            ..pb::StreamEnqueueResponse::default()
        },
        Err(status) => pb::StreamEnqueueResponse {
            request_id,
            code: status.code() as i32,
            message: status.message().to_string(),
            ..pb::StreamEnqueueResponse::default()
        },
    }
}
