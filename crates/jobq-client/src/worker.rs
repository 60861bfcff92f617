//! [`Worker`]: runs an async handler over a queue, the remote equivalent of
//! a `BackgroundService` reading a channel.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tracing::Instrument;

use super::{Backoff, Client, Delivery, Disposition, JobError, nack_fields, proto_duration};
use crate::trace as telemetry;
use jobq_proto::v1::{
    self as pb, stream_leases_request::Kind as RequestKind,
    stream_leases_response::Kind as ResponseKind,
};

/// Runs a handler over one queue through a lease stream:
/// - at most `concurrency` jobs run at once (the stream's credits);
/// - `Ok(())` acks; [`JobError::retry`] nacks for the queue's backoff;
///   [`JobError::permanent`] dead-letters with the reason; a panic nacks
///   for a retry and the worker carries on;
/// - a job still running at two thirds of its lease has the lease
///   extended, again and again, so long jobs are not delivered twice;
/// - when the shutdown future completes, no new jobs are taken, running
///   handlers get `shutdown_grace` to finish, and the rest are stopped and
///   nacked for an immediate retry elsewhere;
/// - when the server goes away, the worker reconnects with exponential
///   backoff. Handlers still running then are stopped: the server has
///   already put their jobs back.
#[derive(Debug)]
#[must_use = "a worker does nothing until it is run"]
pub struct Worker {
    client: Client,
    queue: String,
    concurrency: u32,
    lease_duration: Duration,
    shutdown_grace: Duration,
    reconnect_max: Duration,
    connected: Option<tokio::sync::watch::Sender<bool>>,
}

/// What a worker did, returned when it stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    /// Jobs whose handler succeeded.
    pub succeeded: u64,
    /// Jobs whose handler failed with a retryable error.
    pub retried: u64,
    /// Jobs whose handler failed permanently.
    pub dead_lettered: u64,
    /// Jobs whose handler panicked.
    pub panicked: u64,
    /// Jobs given back unfinished at shutdown or on a lost connection.
    pub abandoned: u64,
    /// Times the stream was (re)opened.
    pub connections: u64,
}

#[derive(Debug, Default)]
struct Counters {
    succeeded: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    panicked: AtomicU64,
    abandoned: AtomicU64,
    connections: AtomicU64,
    next_request: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WorkerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerStats {
            succeeded: get(&self.succeeded),
            retried: get(&self.retried),
            dead_lettered: get(&self.dead_lettered),
            panicked: get(&self.panicked),
            abandoned: get(&self.abandoned),
            connections: get(&self.connections),
        }
    }
}

/// Why a stream session ended.
enum SessionEnd {
    /// Shutdown was asked for and the session drained.
    Stopped,
    /// The connection or the server went away; `connected` says whether
    /// the stream had opened first.
    Lost { why: String, connected: bool },
}

impl Worker {
    pub(super) fn new(client: Client, queue: String) -> Self {
        Self {
            client,
            queue,
            concurrency: 4,
            lease_duration: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            reconnect_max: Duration::from_secs(10),
            connected: None,
        }
    }

    /// Reports on `to` whether the worker's lease stream is open: true once
    /// it connects, false while it reconnects and once it stops. For a
    /// readiness probe.
    pub fn report_connected(mut self, to: tokio::sync::watch::Sender<bool>) -> Self {
        self.connected = Some(to);
        self
    }

    fn set_connected(&self, connected: bool) {
        if let Some(to) = &self.connected {
            to.send_replace(connected);
        }
    }

    /// Jobs run at once, 1 to 10 000. Default 4.
    pub fn concurrency(mut self, jobs: u32) -> Self {
        self.concurrency = jobs.clamp(1, jobq_proto::limits::MAX_STREAM_CREDITS);
        self
    }

    /// Lease asked for each job; extended while the handler runs. Default
    /// 30 s.
    pub fn lease_duration(mut self, lease: Duration) -> Self {
        self.lease_duration = lease;
        self
    }

    /// Time running handlers get to finish after shutdown is asked for.
    /// Default 10 s.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Longest wait between reconnection attempts. Default 10 s.
    pub fn reconnect_backoff_max(mut self, max: Duration) -> Self {
        self.reconnect_max = max;
        self
    }

    /// Runs `handler` on every job until `shutdown` completes, then drains
    /// gracefully and returns what was done.
    pub async fn run<H, F, S>(self, handler: H, shutdown: S) -> WorkerStats
    where
        H: Fn(Delivery) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), JobError>> + Send + 'static,
        S: Future,
    {
        let handler = Arc::new(handler);
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let mut shutdown = pin!(shutdown);
        let mut backoff = Backoff::new(Duration::from_millis(100), self.reconnect_max);
        loop {
            let mut session = pin!(self.session(&handler, &counters, &stop));
            let end = if stop.is_cancelled() {
                session.await
            } else {
                tokio::select! {
                    end = &mut session => end,
                    _ = &mut shutdown => {
                        stop.cancel();
                        session.await
                    }
                }
            };
            self.set_connected(false);
            match end {
                SessionEnd::Stopped => break,
                SessionEnd::Lost { why, connected } => {
                    if stop.is_cancelled() {
                        break;
                    }
                    if connected {
                        // It worked for a while: start the backoff afresh.
                        backoff = Backoff::new(Duration::from_millis(100), self.reconnect_max);
                    }
                    let wait = backoff.next_delay();
                    tracing::warn!(queue = %self.queue, reason = %why, retry_in = ?wait, "lease stream lost; reconnecting");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = &mut shutdown => break,
                    }
                }
            }
        }
        counters.snapshot()
    }

    /// One lease stream: take jobs until stopped or lost, then settle.
    async fn session<H, F>(
        &self,
        handler: &Arc<H>,
        counters: &Arc<Counters>,
        stop: &CancellationToken,
    ) -> SessionEnd
    where
        H: Fn(Delivery) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let (tx, mut inbound) = match self.open().await {
            Ok(opened) => opened,
            Err(why) => {
                return SessionEnd::Lost {
                    why,
                    connected: false,
                };
            }
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        self.set_connected(true);
        tracing::info!(queue = %self.queue, concurrency = self.concurrency, "worker connected");
        let mut running = Running {
            tasks: JoinSet::new(),
            // Stops running handlers: at the end of the grace period, or
            // when the connection is lost.
            hard_stop: CancellationToken::new(),
        };
        let spawn = |running: &mut Running, job: Delivery| {
            running.tasks.spawn(process(
                job,
                Arc::clone(handler),
                tx.clone(),
                running.hard_stop.clone(),
                self.lease_duration,
                Arc::clone(counters),
            ));
        };
        if let Some(why) = take_jobs(&self.queue, &mut inbound, &mut running, stop, spawn).await {
            running.hard_stop.cancel();
            while running.tasks.join_next().await.is_some() {}
            return SessionEnd::Lost {
                why,
                connected: true,
            };
        }
        self.drain(tx, inbound, running, counters).await;
        tracing::info!(queue = %self.queue, "worker stopped");
        SessionEnd::Stopped
    }

    /// Opens a lease stream with the worker's credits and lease.
    async fn open(
        &self,
    ) -> Result<
        (
            mpsc::Sender<pb::StreamLeasesRequest>,
            Streaming<pb::StreamLeasesResponse>,
        ),
        String,
    > {
        let (tx, rx) = mpsc::channel(self.concurrency as usize + 16);
        let open = RequestKind::Open(pb::StreamOpen {
            queue: self.queue.clone(),
            credits: self.concurrency,
            lease_duration: Some(proto_duration(self.lease_duration)),
        });
        if tx.send(request(open)).await.is_err() {
            return Err("stream closed before it opened".into());
        }
        let response = self
            .client
            .raw()
            .stream_leases(ReceiverStream::new(rx))
            .await
            .map_err(|status| status.to_string())?;
        Ok((tx, response.into_inner()))
    }

    /// Takes nothing new and lets running handlers finish within the grace
    /// period; leases pushed before the server saw the drain go straight
    /// back. Closes the stream after the last ack, so the server applies
    /// everything sent before it sees the end.
    async fn drain(
        &self,
        tx: mpsc::Sender<pb::StreamLeasesRequest>,
        mut inbound: Streaming<pb::StreamLeasesResponse>,
        mut running: Running,
        counters: &Counters,
    ) {
        let _ = tx
            .send(request(RequestKind::Drain(pb::StreamDrain {})))
            .await;
        let grace_over = Instant::now() + self.shutdown_grace;
        let mut reading = true;
        loop {
            tokio::select! {
                joined = running.tasks.join_next() => if joined.is_none() { break },
                message = inbound.message(), if reading => match message {
                    Ok(Some(message)) => match message.kind {
                        // Sent before the server saw the drain: give it
                        // straight back for another worker.
                        Some(ResponseKind::Lease(lease)) => {
                            counters.abandoned.fetch_add(1, Ordering::Relaxed);
                            let job = Delivery::from(lease);
                            let _ = tx.send(nack(&counters.next_request, &job.lease_token, &abandon_error())).await;
                        }
                        Some(ResponseKind::Result(result)) => log_result(&result),
                        Some(ResponseKind::QueueState(_)) | None => {}
                    },
                    Ok(None) | Err(_) => reading = false,
                },
                () = sleep_until(grace_over), if !running.hard_stop.is_cancelled() => {
                    tracing::warn!(queue = %self.queue, running = running.tasks.len(), "shutdown grace over; stopping running handlers");
                    running.hard_stop.cancel();
                }
            }
        }
        drop(tx);
        while reading {
            match inbound.message().await {
                Ok(Some(message)) => {
                    if let Some(ResponseKind::Result(result)) = message.kind {
                        log_result(&result);
                    }
                }
                Ok(None) | Err(_) => reading = false,
            }
        }
    }
}

/// The handlers a session runs, and what stops them early.
struct Running {
    tasks: JoinSet<()>,
    hard_stop: CancellationToken,
}

/// Hands each pushed lease to `spawn` until `stop` (returns `None`) or the
/// stream is lost (returns why).
async fn take_jobs(
    queue: &str,
    inbound: &mut Streaming<pb::StreamLeasesResponse>,
    running: &mut Running,
    stop: &CancellationToken,
    spawn: impl Fn(&mut Running, Delivery),
) -> Option<String> {
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            message = inbound.message() => match message {
                Ok(Some(message)) => match message.kind {
                    Some(ResponseKind::Lease(lease)) => spawn(running, Delivery::from(lease)),
                    Some(ResponseKind::Result(result)) => log_result(&result),
                    // Said once per change: the server sends it only then.
                    Some(ResponseKind::QueueState(state)) if state.paused => tracing::info!(
                        queue,
                        "the queue is paused: no job comes until an operator resumes it"
                    ),
                    Some(ResponseKind::QueueState(_)) => {
                        tracing::info!(queue, "the queue was resumed");
                    }
                    None => {}
                },
                Ok(None) => return Some("the server closed the stream".to_string()),
                Err(status) => return Some(status.to_string()),
            },
            Some(_) = running.tasks.join_next() => {}
        }
    }
}

/// Runs one job's handler, extending its lease while it runs, and sends the
/// ack or nack its outcome calls for.
async fn process<H, F>(
    job: Delivery,
    handler: Arc<H>,
    out: mpsc::Sender<pb::StreamLeasesRequest>,
    hard_stop: CancellationToken,
    lease_duration: Duration,
    counters: Arc<Counters>,
) where
    H: Fn(Delivery) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), JobError>> + Send + 'static,
{
    let token = job.lease_token.clone();
    let received = Instant::now();
    let mut next_extend = extend_point(received, lease_end(received, &job, lease_duration));
    let span = tracing::info_span!(
        "process",
        otel.name = "process",
        otel.kind = "consumer",
        messaging.system = "jobq",
        messaging.operation.type = "process",
        messaging.destination.name = %job.queue,
        messaging.message.id = %job.id,
        jobq.attempt = job.attempt,
        trace_id = tracing::field::Empty,
    );
    // Continue the producer's trace, stored with the job.
    if let Some(trace_id) = telemetry::continue_trace(&span, &job.metadata) {
        span.record("trace_id", trace_id);
    }
    // The handler runs in its own task so that a panic is caught as a
    // JoinError instead of taking the worker down.
    let mut work = tokio::spawn(handler(job).instrument(span));
    let outcome = loop {
        tokio::select! {
            joined = &mut work => break match joined {
                Ok(result) => result,
                Err(e) if e.is_panic() => {
                    counters.panicked.fetch_add(1, Ordering::Relaxed);
                    Err(JobError::retry(format!("handler panicked: {}", panic_message(e.into_panic()))))
                }
                Err(_) => Err(abandon_error()),
            },
            () = sleep_until(next_extend) => {
                let request_id = counters.next_request.fetch_add(1, Ordering::Relaxed);
                let extend = RequestKind::Extend(pb::StreamExtend {
                    request_id,
                    lease_token: token.clone(),
                    lease_duration: Some(proto_duration(lease_duration)),
                });
                if out.send(request(extend)).await.is_err() {
                    // The stream is gone; the hard stop follows.
                    next_extend = Instant::now() + lease_duration;
                    continue;
                }
                let now = Instant::now();
                next_extend = extend_point(now, now + lease_duration);
            }
            () = hard_stop.cancelled() => {
                work.abort();
                counters.abandoned.fetch_add(1, Ordering::Relaxed);
                break Err(abandon_error());
            }
        }
    };
    let message = match outcome {
        Ok(()) => {
            counters.succeeded.fetch_add(1, Ordering::Relaxed);
            let request_id = counters.next_request.fetch_add(1, Ordering::Relaxed);
            request(RequestKind::Ack(pb::StreamAck {
                request_id,
                lease_token: token,
            }))
        }
        Err(error) => {
            match error.disposition() {
                Disposition::DeadLetter => &counters.dead_lettered,
                Disposition::Retry | Disposition::RetryAfter(_) => &counters.retried,
            }
            .fetch_add(1, Ordering::Relaxed);
            nack(&counters.next_request, &token, &error)
        }
    };
    // If the stream is gone the server has already put the job back.
    let _ = out.send(message).await;
}

/// When a lease received at `received` runs out, on this machine's
/// monotonic clock: from how long the server said it had left (or, from a
/// server that does not say, the duration asked for). The server's
/// `lease_deadline` is never compared with this machine's wall clock, so a
/// clock skewed either way changes nothing.
fn lease_end(received: Instant, job: &Delivery, asked: Duration) -> Instant {
    received + job.lease_duration.unwrap_or(asked)
}

/// When to extend a lease that ends at `deadline`: two thirds of the way.
fn extend_point(now: Instant, deadline: Instant) -> Instant {
    now + deadline.saturating_duration_since(now) * 2 / 3
}

fn abandon_error() -> JobError {
    JobError::retry_after(
        "the worker stopped before the handler finished",
        Duration::ZERO,
    )
}

fn nack(next_request: &AtomicU64, token: &str, error: &JobError) -> pb::StreamLeasesRequest {
    let (retry_delay, dead_letter) = nack_fields(error.disposition());
    request(RequestKind::Nack(pb::StreamNack {
        request_id: next_request.fetch_add(1, Ordering::Relaxed),
        lease_token: token.to_string(),
        retry_delay,
        dead_letter,
        reason: truncate(error.message(), jobq_proto::limits::MAX_REASON_BYTES),
    }))
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub(super) fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn request(kind: RequestKind) -> pb::StreamLeasesRequest {
    pb::StreamLeasesRequest { kind: Some(kind) }
}

fn log_result(result: &pb::StreamResult) {
    if result.code != 0 {
        tracing::warn!(request = result.request_id, code = result.code, message = %result.message, "jobq refused a worker request");
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_string())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn delivery(deadline: SystemTime, left: Option<Duration>) -> Delivery {
        Delivery {
            id: "01J".into(),
            queue: "q".into(),
            payload: bytes::Bytes::new(),
            metadata: std::collections::HashMap::new(),
            priority: 0,
            attempt: 1,
            max_attempts: 3,
            enqueue_time: None,
            lease_token: "t".into(),
            lease_deadline: Some(deadline),
            lease_duration: left,
        }
    }

    #[test]
    fn a_lease_ends_by_its_duration_whatever_the_two_clocks_say() {
        let received = Instant::now();
        let hour = Duration::from_secs(3600);
        let lease = Duration::from_secs(30);
        // The server's deadline as a worker's clock an hour behind, an hour
        // ahead, and right would see it: the end is the same every time.
        for deadline in [
            SystemTime::now() + hour,
            SystemTime::now() - hour,
            SystemTime::now() + lease,
        ] {
            let job = delivery(deadline, Some(lease));
            assert_eq!(
                lease_end(received, &job, Duration::from_secs(99)),
                received + lease
            );
            let extend = extend_point(received, lease_end(received, &job, lease));
            assert_eq!(extend, received + Duration::from_secs(20));
        }
        // A server that sends no duration: the one asked for.
        let job = delivery(SystemTime::now() - hour, None);
        assert_eq!(lease_end(received, &job, lease), received + lease);
    }
}
