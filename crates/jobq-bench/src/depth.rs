//! Memory for many queued jobs, and lease throughput with a deep queue.

use super::*;

/// The server's resident memory in bytes (Linux): this process's with
/// `--embedded`, else that of `--server-pid`.
pub(crate) fn resident_bytes(args: &Args) -> Option<u64> {
    let path = match (args.embedded, args.server_pid) {
        (true, _) => "/proc/self/status".to_string(),
        (false, Some(pid)) => format!("/proc/{pid}/status"),
        (false, None) => return None,
    };
    let status = std::fs::read_to_string(path).ok()?;
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

/// The value of each metadata entry of a deep job.
const METADATA_VALUE: &str = "0123456789abcdef";

/// Fills `queue` with `jobs` jobs, 1 000 per RPC, each with `metadata`
/// entries.
pub(crate) async fn fill(
    args: &Args,
    client: &Client,
    queue: &str,
    jobs: usize,
    metadata: usize,
) -> anyhow::Result<()> {
    let body = payload(args.payload);
    let job = (0..metadata).fold(NewJob::new(body), |job, i| {
        job.metadata(format!("attr-{i}"), METADATA_VALUE)
    });
    for _ in 0..jobs.div_ceil(1000) {
        let batch = (0..1000).map(|_| job.clone()).collect();
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

pub(crate) async fn depth(
    args: &Args,
    client: &Client,
    deep: usize,
    metadata: usize,
) -> anyhow::Result<()> {
    let measured = args.jobs;
    let before = resident_bytes(args);
    fill(args, client, "bench-depth-deep", deep, metadata).await?;
    let after = resident_bytes(args);
    if let (Some(before), Some(after)) = (before, after) {
        let grew = after.saturating_sub(before) as f64;
        let per_job = grew / deep.max(1) as f64;
        // What the job's own data is: the payload, and each entry's key
        // and value.
        let data = args.payload.max(8)
            + (0..metadata)
                .map(|i| format!("attr-{i}").len() + METADATA_VALUE.len())
                .sum::<usize>();
        println!(
            "memory: {deep} queued jobs of {} bytes with {metadata} metadata entries take {:.0} MiB resident: {per_job:.0} bytes a job, {:.0} beyond its {data} bytes of payload and metadata",
            args.payload,
            grew / (1 << 20) as f64,
            per_job - data as f64,
        );
    }
    fill(args, client, "bench-depth-deep", measured, 0).await?;
    let deep_report = drain_from(args, client, "bench-depth-deep", measured).await?;
    fill(args, client, "bench-depth-shallow", 1_000 + measured, 0).await?;
    let shallow = drain_from(args, client, "bench-depth-shallow", measured).await?;
    let mut deep_report = deep_report;
    deep_report.name = format!("lease + ack, {deep} queued");
    let mut shallow = shallow;
    shallow.name = "lease + ack, 1000 queued".into();
    shallow.print(None);
    deep_report.print(Some(&shallow));
    Ok(())
}
