//! Jobs per second through one lease stream with credits 1, 10 and 100:
//! enqueue N jobs, then a worker leases over `StreamLeases` and acks each
//! job on the stream as it arrives. Server and worker share this process.
//!
//! `cargo run --release --example stream_throughput [-- JOBS]`

use std::time::Instant;

use jobq::config::Config;
use jobq::grpc::pb::{
    self, stream_leases_request::Kind as Out, stream_leases_response::Kind as In,
};
use jobq_client::{Client, NewJob};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let jobs: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20_000);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = jobq::server::Listeners {
        grpc: listener,
        metrics: None,
        web: None,
    };
    let server = tokio::spawn(jobq::server::run(Config::defaults(), listeners, async {
        let _ = stopped.await;
    }));
    let client = Client::connect(format!("http://{addr}")).await?;

    println!("{jobs} jobs of 128 bytes per run");
    for credits in [1u32, 10, 100] {
        let queue = format!("bench-{credits}");
        for _ in 0..jobs / 100 {
            let batch = (0..100).map(|_| NewJob::new(vec![b'x'; 128])).collect();
            client.enqueue_batch(queue.clone(), batch).await?;
        }
        let started = Instant::now();
        drain(&client, &queue, credits, jobs / 100 * 100).await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "credits {credits:>3}: {:>8.0} jobs/s (lease + ack over one stream)",
            (jobs / 100 * 100) as f64 / secs
        );
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// Leases `jobs` jobs over one stream and acks each on the stream.
async fn drain(client: &Client, queue: &str, credits: u32, jobs: usize) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(1024);
    let request = |kind| pb::StreamLeasesRequest { kind: Some(kind) };
    tx.send(request(Out::Open(pb::StreamOpen {
        queue: queue.to_string(),
        credits,
        lease_duration: None,
    })))
    .await?;
    let mut inbound = client
        .raw()
        .stream_leases(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut acked = 0;
    let mut next_id = 0;
    while acked < jobs {
        match inbound.message().await?.and_then(|m| m.kind) {
            Some(In::Lease(lease)) => {
                next_id += 1;
                tx.send(request(Out::Ack(pb::StreamAck {
                    request_id: next_id,
                    lease_token: lease.lease_token,
                })))
                .await?;
            }
            Some(In::Result(result)) => {
                anyhow::ensure!(result.code == 0, "ack refused: {}", result.message);
                acked += 1;
            }
            Some(In::QueueState(state)) => {
                anyhow::ensure!(!state.paused, "the queue is paused; resume it first");
            }
            None => anyhow::bail!("stream ended early"),
        }
    }
    Ok(())
}
