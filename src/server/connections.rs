//! Accepting connections on the gRPC port, within bounds: at most
//! `--max-connections` open at once (one past it is closed at once, with a
//! warning at most once a minute naming the flag), at most
//! [`MAX_HANDSHAKES`] TLS handshakes in progress, and each connection's
//! handshake (TLS, then the HTTP/2 preface and first frame) within
//! `--handshake-timeout`: a connection short of that then, or when shutdown
//! begins, is closed, so a silent socket never holds a place or the
//! shutdown. A handshaken connection with no call open for
//! `--idle-timeout` is closed too (see [`Idle`]). Every task here belongs
//! to the server's tracker.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::Connected;

use crate::tls::Tls;

/// TLS handshakes in progress at most; past this, accepting waits.
pub const MAX_HANDSHAKES: usize = 256;
/// Accepted connections waiting for the server to take them.
const ACCEPT_BACKLOG: usize = 128;
/// How often a refusal or an accept error is logged at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The open connections, counted against `--max-connections`.
#[derive(Debug)]
pub struct ConnectionLimit {
    open: Arc<Semaphore>,
    limit: usize,
    last_warning: Mutex<Option<Instant>>,
}

impl ConnectionLimit {
    /// A limit of `limit` open connections.
    pub fn new(limit: usize) -> Self {
        Self {
            open: Arc::new(Semaphore::new(limit)),
            limit,
            last_warning: Mutex::new(None),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.limit - self.open.available_permits()
    }

    /// A place for one more connection, or `None` at the limit.
    fn admit(&self, peer: SocketAddr) -> Option<OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.open).try_acquire_owned().ok();
        if permit.is_none() && self.may_warn() {
            tracing::warn!(
                %peer,
                limit = self.limit,
                "connection refused: {} connections are open, the most --max-connections allows; raise it or add replicas",
                self.limit
            );
        }
        permit
    }

    /// Whether a warning may be logged now (at most one per [`WARN_EVERY`]).
    fn may_warn(&self) -> bool {
        // A std mutex: held to read and set one instant, never across an
        // `.await`.
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now < at + WARN_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// The HTTP/2 client preface (24 bytes) and the header of the SETTINGS
/// frame that must follow it: once read, the connection has handshaken.
const HANDSHAKE_BYTES: usize = 24 + 9;

/// What one connection's calls share with the connection: how many are
/// open (for the idle timeout) and how many bytes of incomplete request
/// messages they hold (for the per-connection limit). Reaches each call as
/// its connect info.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    calls: AtomicUsize,
    /// When the last call ended (or the connection opened), in nanoseconds
    /// since `opened`.
    idle_since: AtomicU64,
    opened: Instant,
    /// Bytes of request messages received but not yet complete.
    pub(super) pending_bytes: AtomicUsize,
}

impl ConnectionState {
    fn new() -> Self {
        Self {
            calls: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            opened: Instant::now(),
            pending_bytes: AtomicUsize::new(0),
        }
    }

    /// Counts a call as open until the guard drops.
    pub(super) fn call(self: &Arc<Self>) -> OpenCall {
        self.calls.fetch_add(1, Ordering::AcqRel);
        OpenCall(Arc::clone(self))
    }

    /// Since when no call has been open, or `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        if self.calls.load(Ordering::Acquire) > 0 {
            return None;
        }
        let nanos = self.idle_since.load(Ordering::Acquire);
        Some(self.opened + Duration::from_nanos(nanos))
    }
}

/// An open call on a connection (see [`ConnectionState::call`]).
#[derive(Debug)]
pub(super) struct OpenCall(Arc<ConnectionState>);

impl Drop for OpenCall {
    fn drop(&mut self) {
        let state = &self.0;
        // Stored before the count falls, so whoever sees no call open
        // reads this end (or a later one), never an older one.
        let nanos = u64::try_from(state.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        state.idle_since.fetch_max(nanos, Ordering::AcqRel);
        state.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's state, as its calls see it in their request extensions.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionInfo(pub(crate) Arc<ConnectionState>);

/// A connection that holds its place under the limit until it closes, and
/// is closed if it does not finish its handshake in time, or once
/// handshaken, if it has no call open for the idle timeout.
#[derive(Debug)]
pub(super) struct Limited<S> {
    inner: S,
    _place: OwnedSemaphorePermit,
    handshake: Option<Handshake>,
    state: Arc<ConnectionState>,
    idle: Option<Idle>,
}

/// The idle timeout of a handshaken connection: one timer, due when the
/// connection will have been without a call for `timeout`; when it fires
/// with a call open it is set a `timeout` ahead again, so a busy
/// connection costs one timer event per `timeout`, not one per call. The
/// connection is closed only when nothing waits to be read either, so a
/// request already on its way is served.
#[derive(Debug)]
struct Idle {
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    /// Whether the connection has been without a call for the timeout;
    /// registers for the timer otherwise.
    fn expired(&mut self, state: &ConnectionState, cx: &mut Context<'_>) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let due = match state.idle_since() {
                Some(since) if since + self.timeout <= now => return true,
                Some(since) => since + self.timeout,
                None => now + self.timeout,
            };
            self.timer.as_mut().reset(due);
        }
        false
    }
}

/// What a connection must do before it counts as handshaken: read
/// [`HANDSHAKE_BYTES`] before `deadline`, or before `stop`.
#[derive(Debug)]
struct Handshake {
    read: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
    stop: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl<S> Limited<S> {
    fn new(
        inner: S,
        place: OwnedSemaphorePermit,
        deadline: Instant,
        idle_timeout: Option<Duration>,
        stop: &CancellationToken,
    ) -> Self {
        let state = Arc::new(ConnectionState::new());
        Self {
            inner,
            _place: place,
            handshake: Some(Handshake {
                read: 0,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                stop: Box::pin(stop.clone().cancelled_owned()),
            }),
            idle: idle_timeout.map(|timeout| Idle {
                timeout,
                timer: Box::pin(tokio::time::sleep_until(state.opened + timeout)),
            }),
            state,
        }
    }
}

impl Handshake {
    /// Whether the connection ran out of time (or the server began to shut
    /// down) before finishing its handshake; registers for both otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready() || self.stop.as_mut().poll(cx).is_ready()
    }
}

impl<S> Connected for Limited<S> {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo(Arc::clone(&self.state))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(handshake) = &mut this.handshake else {
            let read = Pin::new(&mut this.inner).poll_read(cx, buf);
            if read.is_pending()
                && let Some(idle) = &mut this.idle
                && idle.expired(&this.state, cx)
            {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no call on the connection for --idle-timeout",
                )));
            }
            return read;
        };
        if handshake.expired(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 handshake within --handshake-timeout (or the server is stopping)",
            )));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        handshake.read += buf.filled().len() - before;
        if handshake.read >= HANDSHAKE_BYTES {
            this.handshake = None;
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How long connections have to handshake, and may then sit without a
/// call (`None`: as long as they like).
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    pub(super) handshake: Duration,
    pub(super) idle: Option<Duration>,
}

/// Plain-text connections from `listener`, each with `timeouts`, until
/// `stop`.
pub(super) fn plain(
    listener: TcpListener,
    limit: Arc<ConnectionLimit>,
    timeouts: Timeouts,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> ReceiverStream<io::Result<Limited<TcpStream>>> {
    let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
    tasks.spawn(async move {
        while let Some((tcp, _peer, place)) = admit_next(&listener, &limit, &stop).await {
            let deadline = Instant::now() + timeouts.handshake;
            let connection = Limited::new(tcp, place, deadline, timeouts.idle, &stop);
            if tx.send(Ok(connection)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// TLS connections from `listener`, handshaken with the certificate `tls`
/// holds at the time, each within `timeouts.handshake` (TLS and HTTP/2
/// together), until `stop`.
pub(super) fn tls(
    listener: TcpListener,
    limit: Arc<ConnectionLimit>,
    tls: Arc<Tls>,
    timeouts: Timeouts,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> ReceiverStream<io::Result<Limited<TlsStream<TcpStream>>>> {
    let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let spawner = tasks.clone();
    tasks.spawn(async move {
        loop {
            // Wait for a handshake slot before taking the next connection,
            // so slow handshakes hold the backlog, not the server's memory.
            let slot = tokio::select! {
                () = stop.cancelled() => return,
                slot = Arc::clone(&handshakes).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let Some((tcp, peer, place)) = admit_next(&listener, &limit, &stop).await else {
                return;
            };
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            let stop = stop.clone();
            spawner.spawn(async move {
                let _slot = slot;
                let deadline = Instant::now() + timeouts.handshake;
                match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let connection =
                            Limited::new(stream, place, deadline, timeouts.idle, &stop);
                        let _ = tx.send(Ok(connection)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The next connection that fits under the limit (others are closed as
/// they come), or `None` once `stop` is cancelled.
async fn admit_next(
    listener: &TcpListener,
    limit: &ConnectionLimit,
    stop: &CancellationToken,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, or the peer gave up first: back off a
                // little rather than spin, and keep serving what is open.
                if limit.may_warn() {
                    tracing::warn!(%error, "accepting a connection failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(place) = limit.admit(peer) else {
            drop(tcp);
            continue;
        };
        // No Nagle delay: small gRPC frames go out at once.
        let _ = tcp.set_nodelay(true);
        return Some((tcp, peer, place));
    }
}
