//! Every call, at the HTTP level just outside tonic's router: counted as
//! open on its connection until its answer ends (for `--idle-timeout`), and
//! its request body watched, so a client cannot make the server hold bytes
//! or wait without end by sending part of a message:
//! - a request message must arrive whole within `--request-stall-timeout`:
//!   for a unary call, its one message and the request's end, from the
//!   call's start (tonic waits for both before the handler runs); on a
//!   stream, each message from its first byte (a stream may sit quiet
//!   between messages);
//! - bytes of messages begun but not yet whole count against
//!   `--max-pending-request-bytes-per-connection` and, over all
//!   connections, `--max-pending-request-bytes`.
//!
//! Past either, the call ends with DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED
//! saying which limit and flag, and its bytes are given back.
//!
//! Written here because the gRPC framing (a 5-byte prefix per message) is
//! what tells a begun message from a whole one, and no HTTP middleware
//! crate counts that.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::{Instant, Sleep};
use tonic::Status;

use super::connections::{ConnectionInfo, ConnectionState, OpenCall};

/// Methods whose request is a stream of messages; every other method's
/// request is one message.
const STREAMING_REQUESTS: [&str; 4] = [
    "/jobq.v1.JobQueue/StreamLeases",
    "/jobq.v1.JobQueue/StreamEnqueue",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The limits on request bodies (see the module).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimits {
    /// `--request-stall-timeout`.
    pub(crate) stall: Duration,
    /// `--max-pending-request-bytes-per-connection`.
    pub(crate) per_connection: usize,
    /// `--max-pending-request-bytes`.
    pub(crate) total: usize,
}

/// Counts calls and watches request bodies (see the module).
#[derive(Clone, Debug)]
pub(crate) struct CallLayer {
    limits: BodyLimits,
    /// Bytes of incomplete request messages over all connections (the
    /// metric `jobq_pending_request_bytes`).
    pending: Gauge,
}

impl CallLayer {
    pub(crate) fn new(limits: BodyLimits, pending: Gauge) -> Self {
        Self { limits, pending }
    }
}

impl<S> tower_layer::Layer<S> for CallLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Calls {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`CallLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Calls<S> {
    inner: S,
    layer: CallLayer,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for Calls<S>
where
    S: tower_service::Service<http::Request<Watched<B>>, Response = http::Response<R>>,
    R: Body<Data = Bytes> + Send + 'static,
    R::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let connection = request
            .extensions()
            .get::<ConnectionInfo>()
            .map(|info| Arc::clone(&info.0));
        let open = connection.as_ref().map(ConnectionState::call);
        let unary = !STREAMING_REQUESTS.contains(&request.uri().path());
        let limits = self.layer.limits;
        let pending = self.layer.pending.clone();
        let request = request.map(|inner| Watched {
            inner,
            framing: Framing::default(),
            messages: 0,
            // A unary call's one message is due from the start.
            due: unary.then(|| Instant::now() + limits.stall),
            unary,
            timer: None,
            held: 0,
            limits,
            pending,
            connection,
            failed: false,
        });
        Answer {
            inner: self.inner.call(request),
            open,
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's answer, holding the call open until its body ends.
    pub(crate) struct Answer<F> {
        #[pin]
        inner: F,
        open: Option<OpenCall>,
    }
}

impl<F, R, E> Future for Answer<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    R: Body<Data = Bytes> + Send + 'static,
    R::Error: Into<tonic::codegen::StdError>,
{
    type Output = Result<http::Response<tonic::body::Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let open = this.open.take();
        Poll::Ready(Ok(response.map(|inner| {
            tonic::body::Body::new(Answering { inner, _open: open })
        })))
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, with the call counted open until it is dropped.
    struct Answering<R> {
        #[pin]
        inner: R,
        _open: Option<OpenCall>,
    }
}

impl<R: Body> Body for Answering<R> {
    type Data = R::Data;
    type Error = R::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a request body is in gRPC's framing: each message is a 5-byte
/// prefix (a compression flag, then its length, big-endian) and its bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Framing {
    prefix: [u8; 5],
    prefix_read: usize,
    /// Bytes of the current message still to come, once its prefix is in.
    rest: u64,
    /// Bytes of the current message (prefix included) received so far.
    received: u64,
}

impl Framing {
    /// Reads `data`; returns how many messages it completed.
    fn read(&mut self, mut data: &[u8]) -> usize {
        let mut completed = 0;
        while !data.is_empty() {
            if self.prefix_read < self.prefix.len() {
                let take = (self.prefix.len() - self.prefix_read).min(data.len());
                self.prefix[self.prefix_read..self.prefix_read + take]
                    .copy_from_slice(&data[..take]);
                self.prefix_read += take;
                self.received += take as u64;
                data = &data[take..];
                if self.prefix_read == self.prefix.len() {
                    let [_, a, b, c, d] = self.prefix;
                    self.rest = u64::from(u32::from_be_bytes([a, b, c, d]));
                }
            } else {
                let take = self.rest.min(data.len() as u64);
                self.rest -= take;
                self.received += take;
                // `take` is at most `data.len()`.
                #[allow(clippy::cast_possible_truncation)]
                let take = take as usize;
                data = &data[take..];
            }
            if self.prefix_read == self.prefix.len() && self.rest == 0 {
                completed += 1;
                *self = Self::default();
            }
        }
        completed
    }

    /// Whether a message has begun and is not yet whole.
    fn begun(&self) -> bool {
        self.received > 0
    }
}

pin_project_lite::pin_project! {
    /// A request body, watched (see the module).
    pub(crate) struct Watched<B> {
        #[pin]
        inner: B,
        framing: Framing,
        // Whole messages read.
        messages: usize,
        unary: bool,
        // When the message under way must be whole.
        due: Option<Instant>,
        // Made only when a read has to wait with a message due: most
        // messages arrive whole in one read and never need it.
        timer: Option<Pin<Box<Sleep>>>,
        // Bytes counted in `pending` and the connection's count.
        held: usize,
        limits: BodyLimits,
        pending: Gauge,
        connection: Option<Arc<ConnectionState>>,
        failed: bool,
    }
    impl<B> PinnedDrop for Watched<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            release(this.held, this.pending, this.connection.as_deref());
        }
    }
}

fn release(held: &mut usize, pending: &Gauge, connection: Option<&ConnectionState>) {
    if *held == 0 {
        return;
    }
    pending.dec_by(as_gauge(*held));
    if let Some(connection) = connection {
        connection.pending_bytes.fetch_sub(*held, Ordering::AcqRel);
    }
    *held = 0;
}

/// The error a watched body ends with: a status tonic hands the client.
fn refused(status: Status) -> tonic::codegen::StdError {
    Box::new(status)
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = tonic::codegen::StdError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let Some(data) = frame.data_ref() else {
                    return Poll::Ready(Some(Ok(frame)));
                };
                let completed = this.framing.read(data);
                *this.messages += completed;
                // A unary call stays due until its request ends.
                if completed > 0 && !*this.unary {
                    *this.due = None;
                    *this.timer = None;
                }
                if this.framing.begun() && this.due.is_none() {
                    *this.due = Some(Instant::now() + this.limits.stall);
                }
                // Bytes of a message not yet whole: what tonic holds for it.
                let now_held = usize::try_from(this.framing.received).unwrap_or(usize::MAX);
                if let Err(status) = hold(
                    now_held,
                    this.held,
                    this.limits,
                    this.pending,
                    this.connection.as_deref(),
                ) {
                    *this.failed = true;
                    release(this.held, this.pending, this.connection.as_deref());
                    return Poll::Ready(Some(Err(refused(status))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => {
                release(this.held, this.pending, this.connection.as_deref());
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(due) = *this.due else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *this.failed = true;
                release(this.held, this.pending, this.connection.as_deref());
                let stall = this.limits.stall;
                let what = if this.framing.begun() {
                    format!(
                        "{} bytes of a request message came, and not the rest,",
                        this.framing.received
                    )
                } else if *this.messages > 0 {
                    "the request message came but the request did not end".to_string()
                } else {
                    "the request message did not come".to_string()
                };
                Poll::Ready(Some(Err(refused(Status::deadline_exceeded(format!(
                    "{what} within {}; send each message whole without pausing, or raise --request-stall-timeout (JOBQ_REQUEST_STALL_TIMEOUT)",
                    humantime::format_duration(stall)
                ))))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts `now_held` bytes of incomplete messages where `held` were, or
/// refuses if the connection's or the server's limit would be passed.
fn hold(
    now_held: usize,
    held: &mut usize,
    limits: &BodyLimits,
    pending: &Gauge,
    connection: Option<&ConnectionState>,
) -> Result<(), Status> {
    if now_held <= *held {
        let freed = *held - now_held;
        pending.dec_by(as_gauge(freed));
        if let Some(connection) = connection {
            connection.pending_bytes.fetch_sub(freed, Ordering::AcqRel);
        }
        *held = now_held;
        return Ok(());
    }
    let more = now_held - *held;
    let total = usize::try_from(pending.inc_by(as_gauge(more))).unwrap_or(0) + more;
    let on_connection = connection.map_or(0, |c| {
        c.pending_bytes.fetch_add(more, Ordering::AcqRel) + more
    });
    *held = now_held;
    if on_connection > limits.per_connection {
        return Err(Status::resource_exhausted(format!(
            "this connection's calls hold {on_connection} bytes of request messages not yet whole, over --max-pending-request-bytes-per-connection ({}); send fewer large messages at once on one connection, or raise the limit",
            limits.per_connection
        )));
    }
    if total > limits.total {
        return Err(Status::resource_exhausted(format!(
            "the server holds {total} bytes of request messages not yet whole, over --max-pending-request-bytes ({}); retry shortly",
            limits.total
        )));
    }
    Ok(())
}

/// A byte count as the gauge holds it (they never come near `i64::MAX`).
fn as_gauge(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_tells_begun_messages_from_whole_ones() {
        let mut framing = Framing::default();
        // A 3-byte message in pieces: the prefix split, then the body.
        assert_eq!(framing.read(&[0, 0]), 0);
        assert!(framing.begun());
        assert_eq!(framing.read(&[0, 0, 3, b'a']), 0);
        assert_eq!(framing.received, 6);
        assert_eq!(framing.read(b"bc"), 1);
        assert!(!framing.begun());
        // Two whole messages and the start of a third in one read; an
        // empty message is whole with its prefix.
        let mut data = vec![0, 0, 0, 0, 1, b'x', 0, 0, 0, 0, 0];
        data.extend_from_slice(&[0, 0, 0, 0, 9, b'y']);
        assert_eq!(framing.read(&data), 2);
        assert_eq!(framing.received, 6);
    }
}
