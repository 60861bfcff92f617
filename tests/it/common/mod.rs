//! Starts a real jobq server on an ephemeral loopback port for each test.

#![allow(dead_code)]

pub(crate) mod certs;
pub(crate) mod cluster;
pub(crate) mod gated;
pub(crate) mod raw;
pub(crate) mod store;

use std::net::SocketAddr;
use std::time::Duration;

use jobq::config::Config;
use jobq::engine::postgres::testing::TestSchema;
use jobq::engine::postgres::{PgEngine, PgOptions};
use jobq::engine::{MemoryEngine, SharedEngine};
use jobq::grpc::pb;
use jobq::grpc::pb::job_queue_client::JobQueueClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A server running in this test process, on the store the run chose
/// (see [`store`]).
pub(crate) struct TestServer {
    pub addr: SocketAddr,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    /// Where the web dashboard is served.
    pub web_addr: SocketAddr,
    /// The engine serving, to look inside through the engine interface
    /// (see the helpers below, which work on every store).
    pub engine: SharedEngine,
    pub channel: Channel,
    inner: Inner,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The concrete engine behind [`TestServer::engine`], for what only one
/// store can tell.
enum Inner {
    Memory(MemoryEngine),
    // The schema is dropped after the engine's tasks are told to stop.
    Postgres(PgEngine, #[allow(dead_code)] TestSchema),
}

impl TestServer {
    /// A server with the default settings.
    pub(crate) async fn start() -> Self {
        Self::start_with(Config::defaults()).await
    }

    /// A server with `config` (its listen address is ignored).
    pub(crate) async fn start_with(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_listening(config, listener).await
    }

    /// A server with the default settings on a given address (to restart
    /// one on the address a stopped server had).
    pub(crate) async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind again");
        Self::start_listening(Config::defaults(), listener).await
    }

    /// A server on the in-memory store whatever the run chose, for tests
    /// of what only it has (its memory budget, its insides).
    pub(crate) async fn start_memory_with(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serving(config, listener, |engine| std::sync::Arc::new(engine)).await
    }

    async fn start_listening(config: Config, listener: TcpListener) -> Self {
        match store::chosen() {
            store::Kind::Memory => {
                Self::serving(config, listener, |engine| std::sync::Arc::new(engine)).await
            }
            store::Kind::Postgres => Self::serving_postgres(config, listener).await,
        }
    }

    /// A server on the in-memory store whose engine is `wrap` around it
    /// (which the test can still look inside), whatever the run chose.
    pub(crate) async fn start_wrapped(
        config: Config,
        wrap: impl FnOnce(MemoryEngine) -> SharedEngine,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serving(config, listener, wrap).await
    }

    async fn serving(
        config: Config,
        listener: TcpListener,
        wrap: impl FnOnce(MemoryEngine) -> SharedEngine,
    ) -> Self {
        let metrics = std::sync::Arc::new(jobq::metrics::Metrics::with_named_queues(
            config.metrics_max_queues,
        ));
        let memory = jobq::server::memory_engine(&config, &metrics);
        let engine = wrap(memory.clone());
        Self::serving_engine(config, listener, metrics, engine, Inner::Memory(memory)).await
    }

    async fn serving_postgres(config: Config, listener: TcpListener) -> Self {
        let schema = store::schema().await;
        let metrics = std::sync::Arc::new(jobq::metrics::Metrics::with_named_queues(
            config.metrics_max_queues,
        ));
        let mut options = PgOptions::new(schema.url());
        options.max_connections = config.store_pool_size.min(store::POOL_SIZE);
        let pg = PgEngine::connect_observed(&options, config.engine(), metrics.job_observer())
            .await
            .expect("the test database answers");
        let engine: SharedEngine = std::sync::Arc::new(pg.clone());
        Self::serving_engine(
            config,
            listener,
            metrics,
            engine,
            Inner::Postgres(pg, schema),
        )
        .await
    }

    async fn serving_engine(
        config: Config,
        listener: TcpListener,
        server_metrics: std::sync::Arc<jobq::metrics::Metrics>,
        engine: SharedEngine,
        inner: Inner,
    ) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let metrics = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind metrics");
        let metrics_addr = metrics.local_addr().expect("metrics addr");
        let web = TcpListener::bind("127.0.0.1:0").await.expect("bind web");
        let web_addr = web.local_addr().expect("web addr");
        let listeners = jobq::server::Listeners {
            grpc: listener,
            metrics: Some(metrics),
            web: Some(web),
        };
        let handle = tokio::spawn(jobq::server::serve(
            engine.clone(),
            server_metrics,
            config,
            listeners,
            async {
                let _ = stopped.await;
            },
        ));
        // Lazy: a server on TLS refuses this plain-text channel, and tests
        // of it connect their own.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_lazy();
        Self {
            addr,
            metrics_addr,
            web_addr,
            engine,
            channel,
            inner,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// A client for the JobQueue service.
    pub(crate) fn client(&self) -> JobQueueClient<Channel> {
        JobQueueClient::new(self.channel.clone())
    }

    /// `queue`'s counts, if it exists.
    pub(crate) async fn counts(&self, queue: &str) -> Option<jobq::queue::QueueCounts> {
        self.info(queue).await.map(|info| info.counts)
    }

    /// What the server tells about `queue`, if it exists.
    pub(crate) async fn info(&self, queue: &str) -> Option<jobq::engine::QueueInfo> {
        match self.engine.queue_info(&self::queue(queue)).await {
            Ok(info) => Some(info),
            Err(jobq::engine::EngineError::QueueNotFound(_)) => None,
            Err(other) => panic!("queue info for {queue}: {other}"),
        }
    }

    /// A job's state, if `queue` holds it.
    pub(crate) async fn job_status(
        &self,
        queue: &str,
        id: &jobq::queue::JobId,
    ) -> Option<jobq::queue::JobStatus> {
        match self.engine.find_job(Some(&self::queue(queue)), id).await {
            Ok((_, status)) => Some(status),
            Err(
                jobq::engine::EngineError::JobNotFound(_)
                | jobq::engine::EngineError::QueueNotFound(_),
            ) => None,
            Err(other) => panic!("job {id} in {queue}: {other}"),
        }
    }

    /// Jobs held in every state, over all queues.
    pub(crate) async fn jobs_held(&self) -> usize {
        self.engine.stats().await.expect("stats").jobs_held
    }

    /// Worker streams open on `queue`.
    pub(crate) async fn workers(&self, queue: &str) -> usize {
        self.info(queue).await.map_or(0, |info| info.workers)
    }

    /// Unary leases waiting on `queue` on this server.
    pub(crate) fn long_polls(&self, queue: &str) -> usize {
        match &self.inner {
            Inner::Memory(engine) => engine.long_polls(&self::queue(queue)),
            Inner::Postgres(engine, _) => engine.long_polls(&self::queue(queue)),
        }
    }

    /// Sends the shutdown signal without waiting for the server to stop.
    pub(crate) fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts the server down and returns what `server::run` returned.
    pub(crate) async fn shutdown(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        let handle = self.handle.take().expect("not yet awaited");
        handle.await.expect("server task")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Its background tasks stop before its schema goes.
        if let Inner::Postgres(engine, _) = &self.inner {
            jobq::engine::Engine::shutdown(engine);
        }
    }
}

/// The flags that put every port of a spawned `jobq` binary (gRPC,
/// metrics, dashboard) on a free loopback port.
pub(crate) const FREE_PORTS: [&str; 6] = [
    "--listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
    "--web-listen",
    "127.0.0.1:0",
];

/// A queue name the tests know to be valid.
pub(crate) fn queue(name: &str) -> jobq::queue::QueueName {
    jobq::queue::QueueName::new(name).expect("a valid queue name")
}

/// A job with this payload and nothing else set.
pub(crate) fn job(payload: &str) -> pb::NewJob {
    pb::NewJob {
        payload: payload.as_bytes().to_vec().into(),
        ..pb::NewJob::default()
    }
}

pub(crate) fn secs(s: u64) -> Option<prost_types::Duration> {
    Some(Duration::from_secs(s).try_into().expect("in range"))
}

pub(crate) fn millis(ms: u64) -> Option<prost_types::Duration> {
    Some(Duration::from_millis(ms).try_into().expect("in range"))
}

/// Enqueues one job and returns its id.
pub(crate) async fn enqueue(
    client: &mut JobQueueClient<Channel>,
    queue: &str,
    job: pb::NewJob,
) -> String {
    client
        .enqueue(pb::EnqueueRequest {
            queue: queue.into(),
            job: Some(job),
            wait_for_room: false,
        })
        .await
        .expect("enqueue")
        .into_inner()
        .job_id
}

/// Leases up to `max` jobs, waiting up to `wait_secs` for the first.
pub(crate) async fn lease(
    client: &mut JobQueueClient<Channel>,
    queue: &str,
    max: u32,
    wait_secs: u64,
) -> Vec<pb::Lease> {
    client
        .lease(pb::LeaseRequest {
            queue: queue.into(),
            max_jobs: max,
            lease_duration: None,
            wait_time: secs(wait_secs),
        })
        .await
        .expect("lease")
        .into_inner()
        .leases
}

/// Acks the given tokens.
pub(crate) async fn ack(
    client: &mut JobQueueClient<Channel>,
    queue: &str,
    tokens: Vec<String>,
) -> Result<u32, tonic::Status> {
    client
        .ack(pb::AckRequest {
            queue: queue.into(),
            lease_tokens: tokens,
        })
        .await
        .map(|r| r.into_inner().acked_count)
}

/// The worker's end of a StreamLeases stream.
pub(crate) struct TestStream {
    pub tx: tokio::sync::mpsc::Sender<pb::StreamLeasesRequest>,
    pub rx: tonic::Streaming<pb::StreamLeasesResponse>,
    next_request: u64,
}

/// Opens a lease stream on `queue` with `credits`.
pub(crate) async fn open_stream(server: &TestServer, queue: &str, credits: u32) -> TestStream {
    try_open_stream(server, queue, credits)
        .await
        .expect("stream opened")
}

/// Opens a lease stream, returning the server's refusal if any.
pub(crate) async fn try_open_stream(
    server: &TestServer,
    queue: &str,
    credits: u32,
) -> Result<TestStream, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tx.send(pb::StreamLeasesRequest {
        kind: Some(pb::stream_leases_request::Kind::Open(pb::StreamOpen {
            queue: queue.into(),
            credits,
            lease_duration: None,
        })),
    })
    .await
    .expect("send open");
    let rx = server
        .client()
        .stream_leases(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok(TestStream {
        tx,
        rx,
        next_request: 1,
    })
}

/// Waits this long at most for a message the server must send; a test
/// that hits it has found a bug, not bad luck.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

impl TestStream {
    /// The next message from the server.
    pub(crate) async fn next(&mut self) -> Result<Option<pb::StreamLeasesResponse>, tonic::Status> {
        tokio::time::timeout(PATIENCE, self.rx.message())
            .await
            .expect("the server answered in time")
    }

    /// The next message, which must be a lease.
    pub(crate) async fn next_lease(&mut self) -> pb::Lease {
        match self.next().await.expect("ok").expect("open").kind {
            Some(pb::stream_leases_response::Kind::Lease(lease)) => lease,
            other => panic!("expected a lease, got {other:?}"),
        }
    }

    /// The next message, which must be a result.
    pub(crate) async fn next_result(&mut self) -> pb::StreamResult {
        match self.next().await.expect("ok").expect("open").kind {
            Some(pb::stream_leases_response::Kind::Result(result)) => result,
            other => panic!("expected a result, got {other:?}"),
        }
    }

    /// Sends a message of the given kind.
    pub(crate) async fn send(&mut self, kind: pb::stream_leases_request::Kind) {
        self.tx
            .send(pb::StreamLeasesRequest { kind: Some(kind) })
            .await
            .expect("stream open");
    }

    /// Acks on the stream and returns the request id used.
    pub(crate) async fn ack(&mut self, lease_token: &str) -> u64 {
        let request_id = self.next_request;
        self.next_request += 1;
        self.send(pb::stream_leases_request::Kind::Ack(pb::StreamAck {
            request_id,
            lease_token: lease_token.into(),
        }))
        .await;
        request_id
    }
}

/// Waits until `check` holds, looking again every few milliseconds, for at
/// most [`PATIENCE`]: for effects the server applies on its own (a closed
/// stream's leases coming back).
pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// As [`eventually`], for a check that has to await.
pub(crate) async fn eventually_async(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A client for the Admin service.
pub(crate) fn admin(server: &TestServer) -> pb::admin_client::AdminClient<Channel> {
    pb::admin_client::AdminClient::new(server.channel.clone())
}

/// `GET path` on the metrics port with a plain HTTP/1.0 request: the
/// whole response, status line and headers included.
pub(crate) async fn http_get(server: &TestServer, path: &str) -> String {
    http_get_from(server.metrics_addr, path).await
}

/// `GET path` from the metrics port at `addr`: the whole response.
pub(crate) async fn http_get_from(addr: SocketAddr, path: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics port");
    socket
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: jobq\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut response = String::new();
    socket
        .read_to_string(&mut response)
        .await
        .expect("response");
    response
}

/// Scrapes `/metrics`.
pub(crate) async fn scrape(server: &TestServer) -> String {
    let response = http_get(server, "/metrics").await;
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    assert!(
        response.contains("content-type: text/plain; version=0.0.4"),
        "{response}"
    );
    response
}
