//! Drain measurements: unary lease + ack, a lease stream driven by hand,
//! and the client's worker runtime.

use super::*;

pub(crate) async fn drain(
    args: &Args,
    client: &Client,
    mode: Mode,
    credits: u32,
) -> anyhow::Result<Report> {
    let phase = format!("drain-{mode:?}-{credits}");
    let total = prefill(args, client, &phase).await?;
    let finish = Finish::new(total);
    let queues = args.queues;
    let cpu = cpu_time(args.server_pid);
    let start = Instant::now();
    let (ended, latency) = run_tasks(args.concurrency, |t| {
        let (client, finish) = (client.clone(), Arc::clone(&finish));
        let queue = queue_name(&phase, t, queues);
        async move {
            match mode {
                Mode::Unary => drain_unary(client, queue, finish).await,
                Mode::Stream => drain_stream(client, queue, credits, finish).await,
                Mode::Worker => drain_worker(client, queue, credits, finish).await,
            }
        }
    })
    .await?;
    let elapsed = match mode {
        // The workers return once their last acks are applied.
        Mode::Worker => ended,
        Mode::Unary | Mode::Stream => finish.finished_at().unwrap_or_else(Instant::now) - start,
    };
    let name = match mode {
        Mode::Unary => "drain, unary lease + ack".to_string(),
        Mode::Stream => format!("drain, stream lease + ack, credits {credits}"),
        Mode::Worker => format!("drain, worker runtime, {credits} handlers"),
    };
    Ok(Report {
        name,
        count: total,
        elapsed,
        latency,
        server_cpu: cpu_since(args.server_pid, cpu),
    })
}

/// The client's worker runtime with a handler that only counts: each job
/// is leased, handed to a task, and acked on the stream.
pub(crate) async fn drain_worker(
    client: Client,
    queue: String,
    handlers: u32,
    finish: Arc<Finish>,
) -> anyhow::Result<Histogram<u64>> {
    let counter = Arc::clone(&finish);
    let stats = client
        .worker(queue)
        .concurrency(handlers)
        .run(
            move |_job| {
                counter.claim();
                async { Ok(()) }
            },
            finish.stop.clone().cancelled_owned(),
        )
        .await;
    anyhow::ensure!(
        stats.retried + stats.dead_lettered + stats.panicked == 0,
        "worker failures: {stats:?}"
    );
    Ok(histogram())
}

pub(crate) async fn drain_unary(
    client: Client,
    queue: String,
    finish: Arc<Finish>,
) -> anyhow::Result<Histogram<u64>> {
    let mut h = histogram();
    while !finish.stop.is_cancelled() {
        let start = Instant::now();
        let jobs = client.lease(queue.clone(), 1, None, Duration::ZERO).await?;
        let Some(job) = jobs.into_iter().next() else {
            break; // this queue is empty
        };
        client.ack(queue.clone(), vec![job.lease_token]).await?;
        record(&mut h, start.elapsed());
        if !finish.claim() {
            break;
        }
    }
    Ok(h)
}

/// Opens a lease stream; returns its sender and receiver.
pub(crate) async fn open_stream(
    client: &Client,
    queue: String,
    credits: u32,
) -> anyhow::Result<(
    mpsc::Sender<pb::StreamLeasesRequest>,
    tonic::Streaming<pb::StreamLeasesResponse>,
)> {
    let (tx, rx) = mpsc::channel(credits as usize * 2 + 16);
    tx.send(pb::StreamLeasesRequest {
        kind: Some(RequestKind::Open(pb::StreamOpen {
            queue,
            credits,
            lease_duration: None,
        })),
    })
    .await?;
    let inbound = client
        .raw()
        .stream_leases(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, inbound))
}

pub(crate) async fn drain_stream(
    client: Client,
    queue: String,
    credits: u32,
    finish: Arc<Finish>,
) -> anyhow::Result<Histogram<u64>> {
    let mut h = histogram();
    let (tx, mut inbound) = open_stream(&client, queue, credits).await?;
    let mut sent = std::collections::HashMap::new();
    let mut next = 0u64;
    loop {
        let message = tokio::select! {
            () = finish.stop.cancelled() => break,
            message = inbound.message() => message?,
        };
        let Some(kind) = message.and_then(|m| m.kind) else {
            break;
        };
        match kind {
            ResponseKind::Lease(lease) => {
                next += 1;
                sent.insert(next, Instant::now());
                tx.send(pb::StreamLeasesRequest {
                    kind: Some(RequestKind::Ack(pb::StreamAck {
                        request_id: next,
                        lease_token: lease.lease_token,
                    })),
                })
                .await?;
            }
            ResponseKind::QueueState(state) => {
                anyhow::ensure!(!state.paused, "the queue is paused; resume it to measure");
            }
            ResponseKind::Result(result) => {
                anyhow::ensure!(result.code == 0, "ack refused: {}", result.message);
                if let Some(at) = sent.remove(&result.request_id) {
                    record(&mut h, at.elapsed());
                }
                if !finish.claim() {
                    break;
                }
            }
        }
    }
    Ok(h)
}
