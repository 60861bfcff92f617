//! Disk use of a durable server under a steady load: the queue is held at
//! a fixed depth while jobs are enqueued and acked through it, and the
//! server's data dir is measured as it goes. The journal promises to stay
//! within about twice the live bytes plus one segment, however many jobs
//! pass through.

use std::path::Path;

use super::*;

/// Bytes of the files in `dir`.
fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

pub(crate) async fn steady(
    args: &Args,
    client: &Client,
    depth: usize,
    data_dir: &Path,
    segment_bytes: u64,
) -> anyhow::Result<()> {
    const QUEUE: &str = "bench-steady";
    const BATCH: usize = 100;
    let empty = dir_bytes(data_dir)?;
    depth::fill(args, client, QUEUE, depth, 0).await?;
    // A fresh data dir holds little besides these jobs' records: what one
    // live job costs on disk.
    let per_job = dir_bytes(data_dir)?.saturating_sub(empty) / depth.max(1) as u64;
    let live = per_job * depth as u64;
    let bound = 2 * live + segment_bytes;

    let done = Arc::new(AtomicUsize::new(0));
    let body = payload(args.payload);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, done, body) = (client.clone(), Arc::clone(&done), body.clone());
        let jobs = args.jobs;
        tasks.spawn(async move {
            while done.fetch_add(BATCH, Ordering::Relaxed) < jobs {
                let batch = (0..BATCH).map(|_| NewJob::new(body.clone())).collect();
                client.enqueue_batch(QUEUE, batch).await?;
                // FIFO: these are the oldest jobs, so the depth holds.
                let leased = client
                    .lease(QUEUE, BATCH as u32, None, Duration::from_secs(5))
                    .await?;
                let tokens = leased.into_iter().map(|d| d.lease_token).collect();
                client.ack(QUEUE, tokens).await?;
            }
            anyhow::Ok(())
        });
    }
    let (mut max, mut samples) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            finished = tasks.join_next() => match finished {
                Some(result) => result??,
                None => break,
            },
            _ = tick.tick() => {
                max = max.max(dir_bytes(data_dir)?);
                samples += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    let end = dir_bytes(data_dir)?;
    max = max.max(end);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "steady depth {depth}: {} jobs through in {:.1} s ({:.0} jobs/s)",
        args.jobs,
        elapsed.as_secs_f64(),
        args.jobs as f64 / elapsed.as_secs_f64()
    );
    println!(
        "journal on disk: max {:.1} MiB over {samples} samples, {:.1} MiB at the end; live {:.1} MiB ({per_job} bytes a job); bound 2 x live + one segment = {:.1} MiB: {}",
        mib(max),
        mib(end),
        mib(live),
        mib(bound),
        if max <= bound { "within" } else { "EXCEEDED" }
    );
    Ok(())
}
