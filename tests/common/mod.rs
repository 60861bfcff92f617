//! Starts a real jobq server on an ephemeral loopback port for each test.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use jobq::config::Config;
use jobq::grpc::pb;
use jobq::grpc::pb::job_queue_client::JobQueueClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A server running in this test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// A server with the default settings.
    pub async fn start() -> Self {
        Self::start_with(Config::defaults()).await
    }

    /// A server with `config` (its listen address is ignored).
    pub async fn start_with(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(jobq::server::run(config, listener, async {
            let _ = stopped.await;
        }));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        Self {
            addr,
            channel,
            stop: Some(stop),
            handle,
        }
    }

    /// A client for the JobQueue service.
    pub fn client(&self) -> JobQueueClient<Channel> {
        JobQueueClient::new(self.channel.clone())
    }

    /// Sends the shutdown signal without waiting for the server to stop.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts the server down and returns what `server::run` returned.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        self.handle.await.expect("server task")
    }
}

/// A job with this payload and nothing else set.
pub fn job(payload: &str) -> pb::NewJob {
    pb::NewJob {
        payload: payload.as_bytes().to_vec().into(),
        ..pb::NewJob::default()
    }
}

pub fn secs(s: u64) -> Option<prost_types::Duration> {
    Some(Duration::from_secs(s).try_into().expect("in range"))
}

pub fn millis(ms: u64) -> Option<prost_types::Duration> {
    Some(Duration::from_millis(ms).try_into().expect("in range"))
}

/// Enqueues one job and returns its id.
pub async fn enqueue(client: &mut JobQueueClient<Channel>, queue: &str, job: pb::NewJob) -> String {
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
pub async fn lease(
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
pub async fn ack(
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
