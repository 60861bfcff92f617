//! Memory for many queued jobs, and lease throughput with a deep queue.

use super::*;

/// This process's resident memory in bytes (Linux), for `--embedded` runs.
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Fills `queue` with `jobs` jobs, 1 000 per RPC.
pub(crate) async fn fill(
    args: &Args,
    client: &Client,
    queue: &str,
    jobs: usize,
) -> anyhow::Result<()> {
    let body = payload(args.payload);
    for _ in 0..jobs.div_ceil(1000) {
        let batch = (0..1000).map(|_| NewJob::new(body.clone())).collect();
        client.enqueue_batch(queue.to_string(), batch).await?;
    }
    Ok(())
}

/// Drains `jobs` jobs from `queue` over `concurrency` streams.
pub(crate) async fn drain_from(
    args: &Args,
    client: &Client,
    queue: &str,
    jobs: usize,
) -> anyhow::Result<Report> {
    let finish = Finish::new(jobs);
    let start = Instant::now();
    let (_, latency) = run_tasks(args.concurrency, |_| {
        let (client, finish, queue) = (client.clone(), Arc::clone(&finish), queue.to_string());
        async move { drain_stream(client, queue, 100, finish).await }
    })
    .await?;
    Ok(Report {
        name: format!("stream drain of {jobs}"),
        count: jobs,
        elapsed: finish.finished_at().unwrap_or_else(Instant::now) - start,
        latency,
        server_cpu: None,
    })
}

pub(crate) async fn depth(args: &Args, client: &Client, deep: usize) -> anyhow::Result<()> {
    let measured = args.jobs;
    let before = resident_bytes();
    fill(args, client, "bench-depth-deep", deep).await?;
    let after = resident_bytes();
    if let (true, Some(before), Some(after)) = (args.embedded, before, after) {
        println!(
            "memory: {deep} queued jobs of {} bytes take {:.0} MiB resident ({:.0} bytes a job)",
            args.payload,
            (after.saturating_sub(before)) as f64 / (1 << 20) as f64,
            (after.saturating_sub(before)) as f64 / deep as f64
        );
    }
    fill(args, client, "bench-depth-deep", measured).await?;
    let deep_report = drain_from(args, client, "bench-depth-deep", measured).await?;
    fill(args, client, "bench-depth-shallow", 1_000 + measured).await?;
    let shallow = drain_from(args, client, "bench-depth-shallow", measured).await?;
    let mut deep_report = deep_report;
    deep_report.name = format!("lease + ack, {deep} queued");
    let mut shallow = shallow;
    shallow.name = "lease + ack, 1000 queued".into();
    shallow.print(None);
    deep_report.print(Some(&shallow));
    Ok(())
}
