//! Cost of jobq's tracing with export off: unary enqueue → lease → ack
//! cycles over loopback, with no subscriber at all (tracing disabled) and
//! with the server's own logging subscriber at `info` (one span per RPC,
//! no export), alternating, in one process on one thread.
//!
//! `cargo run --release --example tracing_overhead [-- CYCLES]`

use std::time::{Duration, Instant};

use jobq::config::Config;
use jobq_client::Client;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;

fn main() -> anyhow::Result<()> {
    let cycles: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5_000);
    // One thread, so a scoped subscriber covers client and server alike.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let listeners = jobq::server::Listeners {
            grpc: listener,
            metrics: None,
            web: None,
        };
        tokio::spawn(jobq::server::run(
            Config::defaults(),
            listeners,
            std::future::pending(),
        ));
        let client = Client::connect(format!("http://{addr}")).await?;
        let logging = tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
        let logging = tracing::Dispatch::new(logging);

        run(&client, 1_000).await?; // warm-up
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            off.push(run(&client, cycles).await?);
            let _scope = tracing::dispatcher::set_default(&logging);
            on.push(run(&client, cycles).await?);
        }
        let (off, on) = (median(off), median(on));
        let per = |d: Duration| d.as_secs_f64() * 1e6 / cycles as f64;
        println!("{cycles} enqueue + lease + ack cycles, median of 5 runs each");
        println!("tracing disabled:          {:>7.1} µs per job", per(off));
        println!("spans on, export off:      {:>7.1} µs per job", per(on));
        println!(
            "overhead:                  {:>7.1} %",
            (on.as_secs_f64() / off.as_secs_f64() - 1.0) * 100.0
        );
        anyhow::Ok(())
    })
}

async fn run(client: &Client, cycles: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for _ in 0..cycles {
        client.enqueue("bench", vec![b'x'; 128]).send().await?;
        let job = client
            .lease("bench", 1, None, Duration::ZERO)
            .await?
            .remove(0);
        client.ack("bench", vec![job.lease_token]).await?;
    }
    Ok(start.elapsed())
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}
