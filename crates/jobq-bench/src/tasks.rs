//! What every measurement shares: payloads, queue names, concurrent
//! tasks and the finish line, and prefilling queues.

use super::*;

pub(crate) fn payload(size: usize) -> Bytes {
    Bytes::from(vec![b'x'; size.max(8)])
}

/// Each measurement uses its own queues, so one's leftovers never reach
/// another.
pub(crate) fn queue_name(phase: &str, i: usize, queues: usize) -> String {
    format!("bench-{phase}-{}", i % queues.max(1))
}

/// Counts finished jobs towards `total`; the one that completes it records
/// the time and tells everyone to stop.
pub(crate) struct Finish {
    pub(crate) total: usize,
    pub(crate) done: AtomicUsize,
    pub(crate) stop: CancellationToken,
    pub(crate) at: std::sync::Mutex<Option<Instant>>,
}

impl Finish {
    pub(crate) fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            done: AtomicUsize::new(0),
            stop: CancellationToken::new(),
            at: std::sync::Mutex::new(None),
        })
    }

    /// Claims one more job; false once all are claimed.
    pub(crate) fn claim(&self) -> bool {
        self.done
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                (d < self.total).then_some(d + 1)
            })
            .is_ok_and(|before| {
                if before + 1 == self.total {
                    *self.at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    self.stop.cancel();
                }
                true
            })
    }

    pub(crate) fn finished_at(&self) -> Option<Instant> {
        *self.at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `tasks` copies of `work` (each given its index), merging latencies.
pub(crate) async fn run_tasks<F, Fut>(
    tasks: usize,
    work: F,
) -> anyhow::Result<(Duration, Histogram<u64>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Histogram<u64>>> + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks).map(|i| tokio::spawn(work(i))).collect();
    let mut merged = histogram();
    for handle in handles {
        merged.add(handle.await??).ok();
    }
    Ok((start.elapsed(), merged))
}

/// Queues `jobs` jobs in batches of 100, unmeasured.
pub(crate) async fn prefill(args: &Args, client: &Client, phase: &str) -> anyhow::Result<usize> {
    let body = payload(args.payload);
    let batches = args.jobs.div_ceil(100);
    for b in 0..batches {
        let jobs = (0..100).map(|_| NewJob::new(body.clone())).collect();
        client
            .enqueue_batch(queue_name(phase, b, args.queues), jobs)
            .await?;
    }
    Ok(batches * 100)
}
