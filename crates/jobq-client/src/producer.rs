//! [`Producer`]: the client's one `StreamEnqueue` stream, shared by every
//! task that enqueues through the client.
//!
//! A call registers its answer slot under a fresh request id, queues its
//! job towards the stream, and awaits the answer. One task per stream reads
//! the answers and hands each to its caller. Jobs queued while earlier ones
//! are on the wire go out together in one write; nothing waits to fill a
//! batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::RawClient;
use jobq_proto::v1 as pb;

/// Jobs queued towards the stream, not yet written. More callers wait for
/// room, so a burst is slowed rather than buffered without bound.
const OUTBOUND_BUFFER: usize = 1024;

/// A job's fate on the stream.
pub(super) type Answer = Result<pb::StreamEnqueueResponse, Status>;

/// Opens producer streams on demand and shares the live one.
#[derive(Debug, Default)]
pub(super) struct Producer {
    current: Mutex<Option<Arc<Stream>>>,
}

impl Producer {
    /// Enqueues one job over the shared stream, opening one if there is
    /// none or the last one broke.
    pub(super) async fn enqueue(
        &self,
        client: &RawClient,
        queue: String,
        job: pb::NewJob,
    ) -> Result<pb::StreamEnqueueResponse, Status> {
        let mut request = pb::StreamEnqueueRequest {
            request_id: 0,
            queue,
            job: Some(job),
        };
        // A stream found broken before the job was queued on it never saw
        // the job, so one more try on a fresh stream is safe.
        for _ in 0..2 {
            let stream = self.stream(client);
            match stream.send(request).await {
                Sent::Queued(pending) => return pending.answer().await,
                Sent::Closed(back) => {
                    self.forget(&stream);
                    request = back;
                }
            }
        }
        Err(Status::unavailable(
            "could not open a producer stream to jobq; the job was not sent",
        ))
    }

    fn stream(&self, client: &RawClient) -> Arc<Stream> {
        let mut current = lock(&self.current);
        match current.as_ref() {
            Some(stream) if !stream.is_closed() => Arc::clone(stream),
            _ => {
                let stream = Stream::open(client.clone());
                *current = Some(Arc::clone(&stream));
                stream
            }
        }
    }

    fn forget(&self, stream: &Arc<Stream>) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, stream)) {
            *current = None;
        }
    }
}

/// One open `StreamEnqueue` call.
#[derive(Debug)]
struct Stream {
    outbound: mpsc::Sender<pb::StreamEnqueueRequest>,
    waiting: Mutex<Waiting>,
    next_id: AtomicU64,
}

/// Callers waiting for answers, by request id. Once `closed`, nobody new
/// may wait: the reader has already failed everyone who was.
#[derive(Debug, Default)]
struct Waiting {
    closed: bool,
    callers: HashMap<u64, oneshot::Sender<Answer>>,
}

/// The result of queueing a job on a stream.
enum Sent {
    /// Queued; the answer will come (or the stream's failure will).
    Queued(Pending),
    /// The stream was already closed; here is the job back.
    Closed(pb::StreamEnqueueRequest),
}

impl Stream {
    /// Starts the call and the task that reads its answers.
    fn open(mut client: RawClient) -> Arc<Self> {
        let (outbound, rx) = mpsc::channel(OUTBOUND_BUFFER);
        let stream = Arc::new(Self {
            outbound,
            waiting: Mutex::default(),
            next_id: AtomicU64::new(1),
        });
        let reader = Arc::clone(&stream);
        tokio::spawn(async move {
            let why = match client.stream_enqueue(ReceiverStream::new(rx)).await {
                Ok(response) => reader.read_answers(response.into_inner()).await,
                Err(status) => status,
            };
            reader.close(&why);
        });
        stream
    }

    fn is_closed(&self) -> bool {
        self.outbound.is_closed()
    }

    /// Registers for the answer, then queues the job.
    async fn send(self: &Arc<Self>, mut request: pb::StreamEnqueueRequest) -> Sent {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request.request_id = id;
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = lock(&self.waiting);
            if waiting.closed {
                return Sent::Closed(request);
            }
            waiting.callers.insert(id, tx);
        }
        let pending = Pending {
            stream: Arc::clone(self),
            id,
            rx,
            answered: false,
        };
        match self.outbound.send(request).await {
            Ok(()) => Sent::Queued(pending),
            Err(mpsc::error::SendError(request)) => {
                drop(pending);
                Sent::Closed(request)
            }
        }
    }

    /// Hands each answer to its caller until the stream ends; returns why
    /// it ended.
    async fn read_answers(
        &self,
        mut inbound: tonic::Streaming<pb::StreamEnqueueResponse>,
    ) -> Status {
        loop {
            match inbound.message().await {
                Ok(Some(answer)) => {
                    let caller = lock(&self.waiting).callers.remove(&answer.request_id);
                    if let Some(caller) = caller {
                        // A caller that gave up has dropped its receiver.
                        let _ = caller.send(Ok(answer));
                    }
                }
                Ok(None) => return Status::unavailable("jobq closed the producer stream"),
                Err(status) => return status,
            }
        }
    }

    /// Fails every caller still waiting: their jobs may or may not have
    /// been stored.
    fn close(&self, why: &Status) {
        let callers = {
            let mut waiting = lock(&self.waiting);
            waiting.closed = true;
            std::mem::take(&mut waiting.callers)
        };
        if !callers.is_empty() {
            tracing::debug!(waiting = callers.len(), status = %why, "producer stream lost");
        }
        for (_, caller) in callers {
            let _ = caller.send(Err(Status::new(
                unknown_outcome_code(why.code()),
                format!(
                    "the producer stream broke before the answer came ({}: {}); the job may or may not be stored: retry with an idempotency key to be sure",
                    why.code(),
                    why.message()
                ),
            )));
        }
    }
}

/// A queued job's answer to come. Dropping it before the answer (the
/// caller gave up) frees its slot.
struct Pending {
    stream: Arc<Stream>,
    id: u64,
    rx: oneshot::Receiver<Answer>,
    answered: bool,
}

impl Pending {
    async fn answer(mut self) -> Answer {
        let answer = (&mut self.rx).await;
        // Whoever resolved the receiver took it out of `waiting` first.
        self.answered = true;
        answer.unwrap_or_else(|_| {
            Err(Status::unavailable(
                "the producer stream ended before the answer came; the job may or may not be stored",
            ))
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            lock(&self.stream.waiting).callers.remove(&self.id);
        }
    }
}

/// The code for a job whose answer was lost with its stream: UNAVAILABLE
/// for a transport failure, else the stream's own (e.g. a shutdown's
/// UNAVAILABLE, or UNAUTHENTICATED).
fn unknown_outcome_code(code: Code) -> Code {
    match code {
        Code::Ok | Code::Unknown | Code::Cancelled => Code::Unavailable,
        other => other,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
