//! The `StreamEnqueue` RPC: a producer's stream of single-job enqueues,
//! each stored on arrival and answered on its own.

use std::pin::pin;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::convert::{self, Limits};
use super::pb;
use super::status;
use crate::broker::Broker;

/// Answers buffered towards a producer that reads slowly. When it is full
/// the stream stops reading, and HTTP/2 flow control slows the producer.
const SEND_BUFFER: usize = 256;

/// What the server sends on a producer stream.
pub type ResponseStream = ReceiverStream<Result<pb::StreamEnqueueResponse, Status>>;

/// Serves a producer stream in its own task.
pub fn open(
    broker: &Broker,
    limits: &Limits,
    inbound: Streaming<pb::StreamEnqueueRequest>,
) -> ResponseStream {
    let (tx, rx) = mpsc::channel(SEND_BUFFER);
    let span = tracing::info_span!("enqueue_stream");
    tokio::spawn(run(broker.clone(), limits.clone(), inbound, tx).instrument(span));
    ReceiverStream::new(rx)
}

/// Stores and answers each job in turn until the producer closes its side,
/// goes away, or the server shuts down.
async fn run(
    broker: Broker,
    limits: Limits,
    mut inbound: Streaming<pb::StreamEnqueueRequest>,
    tx: mpsc::Sender<Result<pb::StreamEnqueueResponse, Status>>,
) {
    tracing::debug!("enqueue stream opened");
    let mut shutdown = pin!(broker.shutting_down());
    let mut stored = 0_u64;
    loop {
        let request = tokio::select! {
            biased;
            () = &mut shutdown => break,
            message = inbound.next() => match message {
                Some(Ok(request)) => request,
                Some(Err(status)) => {
                    // A frame that does not decode, or a broken connection:
                    // the jobs before it are stored and answered.
                    tracing::debug!(%status, stored, "enqueue stream broke");
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                None => {
                    tracing::debug!(stored, "enqueue stream closed by the producer");
                    return;
                }
            },
        };
        let answer = store(&broker, &limits, request);
        stored += u64::from(answer.code == 0);
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            sent = tx.send(Ok(answer)) => if sent.is_err() { return },
        }
    }
    tracing::debug!(stored, "enqueue stream ended by shutdown");
    let _ = tx
        .send(Err(Status::unavailable(
            "the server is shutting down; jobs without an answer may not be stored: reconnect and retry them",
        )))
        .await;
}

/// Stores one job as `Enqueue` would, without waiting for room, and
/// answers with its id or its error.
fn store(
    broker: &Broker,
    limits: &Limits,
    request: pb::StreamEnqueueRequest,
) -> pb::StreamEnqueueResponse {
    let request_id = request.request_id;
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
