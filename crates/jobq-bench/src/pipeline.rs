//! Producers and stream workers at once: enqueue → worker receipt
//! latency at an offered rate; the workers may be on another replica. With
//! a delay, each job is enqueued to be due that long after it is sent, and
//! the latency is from its due time to its receipt: how late delayed jobs
//! become leasable.

use super::*;

pub(crate) async fn pipeline(
    args: &Args,
    client: &Client,
    workers_client: &Client,
    rate: u64,
    credits: u32,
    via: Via,
    delay: Duration,
) -> anyhow::Result<Report> {
    let phase = format!("pipeline-{rate}-{via:?}");
    let producers = args.concurrency;
    let per_producer = args.jobs / producers.max(1);
    let total = per_producer * producers;
    let epoch = Instant::now();
    let finish = Finish::new(total);
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<Duration>();
    // Workers: one stream per queue and concurrency slot, acking as they go.
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let queue = queue_name(&phase, w, args.queues);
        let (tx, mut inbound) = open_stream(workers_client, queue, credits).await?;
        let (finish, lat_tx) = (Arc::clone(&finish), lat_tx.clone());
        workers.push(tokio::spawn(async move {
            let mut id = 0;
            loop {
                let message = tokio::select! {
                    () = finish.stop.cancelled() => break,
                    message = inbound.message() => message,
                };
                let Ok(Some(message)) = message else {
                    break;
                };
                if let Some(ResponseKind::Lease(lease)) = message.kind {
                    let payload = lease.job.map(|j| j.payload).unwrap_or_default();
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&payload[..8]);
                    let sent = Duration::from_nanos(u64::from_le_bytes(sent));
                    let _ = lat_tx.send(epoch.elapsed().saturating_sub(sent));
                    finish.claim();
                    id += 1;
                    let ack = RequestKind::Ack(pb::StreamAck {
                        request_id: id,
                        lease_token: lease.lease_token,
                    });
                    if tx
                        .send(pb::StreamLeasesRequest { kind: Some(ack) })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }));
    }
    drop(lat_tx);
    // Producers: open loop at the offered rate, or closed loop at max.
    let size = args.payload.max(8);
    let cpu = cpu_time(args.server_pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let client = client.clone();
        let queues = args.queues;
        let phase = phase.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticker = (rate > 0).then(|| {
                let period = Duration::from_secs_f64(producers as f64 / rate as f64);
                let mut t = tokio::time::interval(period);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            let mut sends = tokio::task::JoinSet::new();
            for i in 0..per_producer {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let mut body = vec![b'x'; size];
                // When the job is due: now, or after its delay.
                let due = epoch.elapsed() + delay;
                body[..8].copy_from_slice(&(due.as_nanos() as u64).to_le_bytes());
                let mut builder = client.enqueue(queue_name(&phase, p + i, queues), body);
                if !delay.is_zero() {
                    builder = builder.delay(delay);
                }
                let send = async move {
                    match via {
                        Via::Unary => builder.send_unary().await,
                        Via::Stream => builder.send().await,
                    }
                };
                if rate > 0 {
                    // Open loop: do not wait for the answer before the next.
                    sends.spawn(send);
                } else {
                    send.await?;
                }
            }
            while let Some(sent) = sends.join_next().await {
                sent??;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    for worker in workers {
        worker.await?;
    }
    let elapsed = finish.finished_at().unwrap_or_else(Instant::now) - start;
    let mut latency = histogram();
    while let Some(d) = lat_rx.recv().await {
        record(&mut latency, d);
    }
    let via = match via {
        Via::Unary => "unary",
        Via::Stream => "stream",
    };
    let name = match (rate, delay.as_millis()) {
        (0, 0) => format!("pipeline at max, {via} enqueue→receipt"),
        (r, 0) => format!("pipeline at {r}/s, {via} enqueue→receipt"),
        (0, d) => format!("pipeline at max, {via}, {d} ms delay: due→receipt"),
        (r, d) => format!("pipeline at {r}/s, {via}, {d} ms delay: due→receipt"),
    };
    Ok(Report {
        name,
        count: finish.done.load(Ordering::Relaxed),
        elapsed,
        latency,
        server_cpu: cpu_since(args.server_pid, cpu),
    })
}
