//! Enqueue measurements: single jobs over unary RPCs or the client's
//! producer stream, and batches.

use super::*;

pub(crate) async fn enqueue(
    args: &Args,
    client: &Client,
    batch: usize,
    via: Via,
) -> anyhow::Result<Report> {
    let batch = batch.max(1);
    let rpcs = args.jobs / batch;
    let per_task = rpcs / args.concurrency.max(1);
    let body = payload(args.payload);
    let queues = args.queues;
    let cpu = cpu_time(args.server_pid);
    let (elapsed, latency) = run_tasks(args.concurrency, |t| {
        let (client, body) = (client.clone(), body.clone());
        async move {
            let mut h = histogram();
            for i in 0..per_task {
                let queue = queue_name(&format!("enqueue{batch}"), t + i, queues);
                let start = Instant::now();
                match (batch, via) {
                    (1, Via::Unary) => {
                        client.enqueue(queue, body.clone()).send_unary().await?;
                    }
                    (1, Via::Stream) => {
                        client.enqueue(queue, body.clone()).send().await?;
                    }
                    _ => {
                        let jobs = (0..batch).map(|_| NewJob::new(body.clone())).collect();
                        client.enqueue_batch(queue, jobs).await?;
                    }
                }
                record(&mut h, start.elapsed());
            }
            Ok(h)
        }
    })
    .await?;
    let name = match (batch, via) {
        (1, Via::Unary) => "enqueue, 1 job per unary RPC".to_string(),
        (1, Via::Stream) => "enqueue, 1 job per call, client stream".to_string(),
        (b, _) => format!("enqueue, {b} jobs per RPC (per RPC)"),
    };
    Ok(Report {
        name,
        count: per_task * args.concurrency * batch,
        elapsed,
        latency,
        server_cpu: cpu_since(args.server_pid, cpu),
    })
}
