//! A Rust client for jobq, and a worker runtime on top of it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), jobq_client::ClientError> {
//! use jobq_client::{Client, JobError};
//!
//! let client = Client::connect("http://127.0.0.1:50051").await?;
//! let id = client
//!     .enqueue("emails", "alice@example.com")
//!     .metadata("kind", "welcome")
//!     .send()
//!     .await?;
//! println!("enqueued {id}");
//!
//! client
//!     .worker("emails")
//!     .concurrency(8)
//!     .run(
//!         |job| async move {
//!             println!("sending to {:?}", job.payload);
//!             Ok::<(), JobError>(())
//!         },
//!         tokio::signal::ctrl_c(),
//!     )
//!     .await;
//! # Ok(())
//! # }
//! ```

mod connect;
mod delivery;
mod error;
mod producer;
pub mod trace;
mod worker;

/// The protocol crate, re-exported: the generated messages and clients, and
/// the limits every request must keep.
pub use jobq_proto as proto;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use connect::{Bearer, ClientOptions};
pub use delivery::{Delivery, Disposition, JobError};
pub use error::ClientError;
pub use worker::{Worker, WorkerStats};

use producer::Producer;

use jobq_proto::v1 as pb;
use jobq_proto::v1::job_queue_client::JobQueueClient;

/// How long [`Client::connect`] keeps trying by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to a jobq server. Cheap to clone: clones share one HTTP/2
/// connection, which reconnects by itself after the server comes back, and
/// one producer stream that carries every [`enqueue`](Self::enqueue).
#[derive(Clone, Debug)]
pub struct Client {
    inner: RawClient,
    producer: Arc<Producer>,
}

/// The generated client the [`Client`] wraps: a channel, with the bearer
/// token added to each call.
pub type RawClient = JobQueueClient<InterceptedService<Channel, Bearer>>;

impl Client {
    /// Connects to `address` (`http://127.0.0.1:50051`, or `127.0.0.1:50051`
    /// for short), retrying with
    /// exponential backoff for up to 30 s while the server is not up yet.
    pub async fn connect(address: impl Into<String>) -> Result<Self, ClientError> {
        Self::connect_within(address, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// As [`connect`](Self::connect), trying for up to `timeout`.
    pub async fn connect_within(
        address: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Self::connect_with(address, ClientOptions::default(), timeout).await
    }

    /// Connects with TLS or a token (see [`ClientOptions`]), retrying for
    /// up to `timeout` while the server is not up yet.
    pub async fn connect_with(
        address: impl Into<String>,
        options: ClientOptions,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let address = address.into();
        let endpoint = options.endpoint(&address)?;
        let start = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            match endpoint.connect().await {
                Ok(channel) => return Ok(Self::from_channel_with(channel, &options)),
                Err(source) if start.elapsed() >= timeout => {
                    return Err(ClientError::Connect {
                        address,
                        waited: start.elapsed(),
                        source,
                    });
                }
                Err(error) => {
                    tracing::debug!(%error, "jobq not reachable yet; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// A client over an existing channel, without a token.
    pub fn from_channel(channel: Channel) -> Self {
        Self::from_channel_with(channel, &ClientOptions::default())
    }

    /// A client over an existing channel, sending `options`' token (its
    /// TLS settings belong to the channel).
    pub fn from_channel_with(channel: Channel, options: &ClientOptions) -> Self {
        Self {
            inner: JobQueueClient::with_interceptor(channel, options.bearer()),
            producer: Arc::default(),
        }
    }

    /// The generated gRPC client, for calls this wrapper does not cover.
    pub fn raw(&self) -> RawClient {
        self.inner.clone()
    }

    /// Starts an enqueue of one job; set options on the builder, then
    /// [`send`](EnqueueBuilder::send) it. Concurrent enqueues from any
    /// number of tasks share one `StreamEnqueue` stream, so each costs a
    /// message on it rather than an RPC.
    pub fn enqueue(&self, queue: impl Into<String>, payload: impl Into<Bytes>) -> EnqueueBuilder {
        EnqueueBuilder {
            client: self.clone(),
            queue: queue.into(),
            job: NewJob::new(payload),
            wait_for_room: false,
        }
    }

    /// Enqueues several jobs into one queue, all or nothing. Returns their
    /// ids in order.
    pub async fn enqueue_batch(
        &self,
        queue: impl Into<String>,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<String>, ClientError> {
        let request = traced(pb::BatchEnqueueRequest {
            queue: queue.into(),
            jobs: jobs.into_iter().map(NewJob::into_proto).collect(),
            wait_for_room: false,
        });
        Ok(self
            .inner
            .clone()
            .batch_enqueue(request)
            .await?
            .into_inner()
            .job_ids)
    }

    /// Leases up to `max_jobs`, waiting up to `wait` for the first.
    /// `lease_duration` of `None` takes the queue's default.
    pub async fn lease(
        &self,
        queue: impl Into<String>,
        max_jobs: u32,
        lease_duration: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Delivery>, ClientError> {
        let request = pb::LeaseRequest {
            queue: queue.into(),
            max_jobs,
            lease_duration: lease_duration.map(proto_duration),
            wait_time: Some(proto_duration(wait)),
        };
        let leases = self.inner.clone().lease(request).await?.into_inner().leases;
        Ok(leases.into_iter().map(Delivery::from).collect())
    }

    /// Acks leases: the jobs are done.
    pub async fn ack(
        &self,
        queue: impl Into<String>,
        lease_tokens: Vec<String>,
    ) -> Result<(), ClientError> {
        let request = pb::AckRequest {
            queue: queue.into(),
            lease_tokens,
        };
        self.inner.clone().ack(request).await?;
        Ok(())
    }

    /// Nacks a lease as `error` says: retry (after the backoff or a given
    /// delay) or dead-letter.
    pub async fn nack(
        &self,
        queue: impl Into<String>,
        lease_token: impl Into<String>,
        error: &JobError,
    ) -> Result<pb::NackResponse, ClientError> {
        let (retry_delay, dead_letter) = nack_fields(error.disposition());
        let request = pb::NackRequest {
            queue: queue.into(),
            lease_token: lease_token.into(),
            retry_delay,
            dead_letter,
            reason: worker::truncate(error.message(), jobq_proto::limits::MAX_REASON_BYTES),
        };
        Ok(self.inner.clone().nack(request).await?.into_inner())
    }

    /// Extends a lease to `lease_duration` from now; returns the new
    /// deadline.
    pub async fn extend(
        &self,
        queue: impl Into<String>,
        lease_token: impl Into<String>,
        lease_duration: Duration,
    ) -> Result<Option<SystemTime>, ClientError> {
        let request = pb::ExtendLeaseRequest {
            queue: queue.into(),
            lease_token: lease_token.into(),
            lease_duration: Some(proto_duration(lease_duration)),
        };
        let response = self.inner.clone().extend_lease(request).await?.into_inner();
        Ok(response
            .lease_deadline
            .and_then(|t| SystemTime::try_from(t).ok()))
    }

    /// A worker over `queue`: set its options, then
    /// [`run`](Worker::run) a handler.
    pub fn worker(&self, queue: impl Into<String>) -> Worker {
        Worker::new(self.clone(), queue.into())
    }
}

/// A job to enqueue, for [`Client::enqueue_batch`].
#[derive(Clone, Debug, Default)]
pub struct NewJob {
    payload: Bytes,
    metadata: HashMap<String, String>,
    priority: i32,
    schedule: Option<pb::new_job::Schedule>,
    max_attempts: u32,
    idempotency_key: String,
}

impl NewJob {
    /// A job with this payload, priority 0, ready at once, and the queue's
    /// default attempts.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// Adds a header.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the priority (higher first; default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Makes the job leasable only after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.schedule = Some(pb::new_job::Schedule::Delay(proto_duration(delay)));
        self
    }

    /// Makes the job leasable only from `time`.
    pub fn not_before(mut self, time: SystemTime) -> Self {
        self.schedule = Some(pb::new_job::Schedule::NotBefore(time.into()));
        self
    }

    /// Sets how many deliveries the job gets before it is dead-lettered.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets an idempotency key: enqueuing the same key into the same queue
    /// again within the server's window stores nothing and returns the
    /// first job's id, so a retried enqueue cannot make a second job.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = key.into();
        self
    }

    fn into_proto(self) -> pb::NewJob {
        pb::NewJob {
            payload: self.payload,
            metadata: self.metadata,
            priority: self.priority,
            schedule: self.schedule,
            max_attempts: self.max_attempts,
            idempotency_key: self.idempotency_key,
        }
    }
}

/// One enqueue being built; see [`Client::enqueue`].
#[derive(Debug)]
#[must_use = "an enqueue does nothing until it is sent"]
pub struct EnqueueBuilder {
    client: Client,
    queue: String,
    job: NewJob,
    wait_for_room: bool,
}

impl EnqueueBuilder {
    /// Adds a header.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.job = self.job.metadata(key, value);
        self
    }

    /// Sets the priority (higher first; default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.job = self.job.priority(priority);
        self
    }

    /// Makes the job leasable only after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.job = self.job.delay(delay);
        self
    }

    /// Makes the job leasable only from `time`.
    pub fn not_before(mut self, time: SystemTime) -> Self {
        self.job = self.job.not_before(time);
        self
    }

    /// Sets how many deliveries the job gets before it is dead-lettered.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.job = self.job.max_attempts(attempts);
        self
    }

    /// Sets an idempotency key (see [`NewJob::idempotency_key`]).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.job = self.job.idempotency_key(key);
        self
    }

    /// When the queue is full, wait for room (up to the server's limit)
    /// instead of failing with `RESOURCE_EXHAUSTED`.
    pub fn wait_for_room(mut self) -> Self {
        self.wait_for_room = true;
        self
    }

    /// Sends the job over the client's shared producer stream; returns its
    /// id. With [`wait_for_room`](Self::wait_for_room) it goes as a unary
    /// `Enqueue` instead, since a stream never waits for room.
    ///
    /// If the stream breaks before the answer comes, the error is
    /// `UNAVAILABLE` and the job may or may not be stored: set an
    /// idempotency key to retry safely.
    pub async fn send(self) -> Result<String, ClientError> {
        if self.wait_for_room {
            return self.send_unary().await;
        }
        let mut job = self.job.into_proto();
        // The stream carries no per-job headers: the trace context goes
        // with the job, as the server would store it.
        crate::trace::inject_current_into(&mut job.metadata);
        let answer = self
            .client
            .producer
            .enqueue(&self.client.inner, self.queue, job)
            .await?;
        if answer.code != 0 {
            return Err(tonic::Status::new(tonic::Code::from(answer.code), answer.message).into());
        }
        Ok(answer.job_id)
    }

    /// Sends the job as one unary `Enqueue` RPC; returns its id.
    pub async fn send_unary(self) -> Result<String, ClientError> {
        let request = traced(pb::EnqueueRequest {
            queue: self.queue,
            job: Some(self.job.into_proto()),
            wait_for_room: self.wait_for_room,
        });
        Ok(self
            .client
            .inner
            .clone()
            .enqueue(request)
            .await?
            .into_inner()
            .job_id)
    }
}

/// A request carrying the current span's trace context (W3C
/// `traceparent`), which the server stores with the job so that the worker
/// continues this trace.
fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    crate::trace::inject_current(request.metadata_mut());
    request
}

fn proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(duration).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

/// The `retry_delay` and `dead_letter` fields of a nack for `disposition`.
fn nack_fields(disposition: Disposition) -> (Option<prost_types::Duration>, bool) {
    match disposition {
        Disposition::Retry => (None, false),
        Disposition::RetryAfter(delay) => (Some(proto_duration(delay)), false),
        Disposition::DeadLetter => (None, true),
    }
}

/// Exponential backoff with jitter (each wait is between half and all of
/// the current step), for reconnecting.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    /// The next wait: random up to the current step, which then doubles.
    fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}
