//! Schedules at scale: the queue path's latency on a server holding many
//! idle schedules against one holding none (two servers in this process,
//! measured in alternate rounds), and `due` schedules that all fire in the
//! same second: how long until every job is enqueued, and the enqueue
//! latency of other producers meanwhile.

use chrono::{Datelike, Timelike};
use pb::schedules_client::SchedulesClient;

use super::*;

/// Sets `count` schedules named `prefix-N` with cron `cron` into `queue`,
/// over `concurrency` tasks; returns how long it took.
async fn set_many(
    channel: &Channel,
    prefix: &str,
    count: usize,
    cron: &str,
    queue: &str,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let mut client = SchedulesClient::new(channel.clone());
            let (next, prefix, cron, queue) = (
                Arc::clone(&next),
                prefix.to_string(),
                cron.to_string(),
                queue.to_string(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok::<_, anyhow::Error>(());
                    }
                    client
                        .set_schedule(pb::SetScheduleRequest {
                            name: format!("{prefix}-{i}"),
                            settings: Some(pb::ScheduleSettings {
                                queue: queue.clone(),
                                job: Some(pb::JobTemplate {
                                    payload: Bytes::from_static(b"report"),
                                    ..Default::default()
                                }),
                                trigger: Some(pb::schedule_settings::Trigger::Cron(cron.clone())),
                                ..Default::default()
                            }),
                        })
                        .await
                        .context("SetSchedule")?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed())
}

/// Unary enqueues of single jobs of `body` over `concurrency` tasks until
/// `stop`.
async fn enqueue_until(
    concurrency: usize,
    body: Bytes,
    client: Client,
    phase: &'static str,
    stop: CancellationToken,
) -> anyhow::Result<Report> {
    let count = Arc::new(AtomicUsize::new(0));
    let (elapsed, latency) = run_tasks(concurrency, |t| {
        let (client, body, stop, count) = (
            client.clone(),
            body.clone(),
            stop.clone(),
            Arc::clone(&count),
        );
        let queue = queue_name(phase, t, 1);
        async move {
            let mut h = histogram();
            while !stop.is_cancelled() {
                let start = Instant::now();
                client
                    .enqueue(queue.clone(), body.clone())
                    .send_unary()
                    .await?;
                record(&mut h, start.elapsed());
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(h)
        }
    })
    .await?;
    Ok(Report {
        name: String::new(),
        count: count.load(Ordering::Relaxed),
        elapsed,
        latency,
        server_cpu: None,
    })
}

/// Unary enqueues for a fixed span, as a baseline.
async fn enqueue_for(
    args: &Args,
    client: &Client,
    phase: &'static str,
    span: Duration,
) -> anyhow::Result<Report> {
    let stop = CancellationToken::new();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(span).await;
            stop.cancel();
        })
    };
    let body = payload(args.payload);
    let report = enqueue_until(args.concurrency, body, client.clone(), phase, stop).await?;
    timer.await?;
    Ok(report)
}

/// Jobs ready in `queue` (0 if it does not exist yet).
async fn ready(admin: &mut pb::admin_client::AdminClient<Channel>, queue: &str) -> u64 {
    admin
        .get_queue(pb::GetQueueRequest {
            queue: queue.into(),
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().queue)
        .and_then(|q| q.counts)
        .map_or(0, |c| c.ready)
}

/// Rounds of one second on each server, alternated so that the machine's
/// noise falls on both alike.
const ROUNDS: usize = 6;

/// Merges `more` into `sum`.
fn add(sum: &mut Report, more: Report) {
    sum.count += more.count;
    sum.elapsed += more.elapsed;
    sum.latency.add(more.latency).ok();
}

pub(crate) async fn schedules(
    args: &Args,
    client: &Client,
    server: &str,
    due: usize,
    idle: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.embedded,
        "schedules compares two servers in this process: run it with --embedded"
    );
    let channel = Channel::from_shared(server.to_string())?.connect().await?;
    // A second server, holding no schedules, to compare the queue path with.
    let bare = embedded_jobq().await?;
    let bare = Client::connect_within(bare, Duration::from_secs(10)).await?;

    // Idle: once a year, on 1 January.
    let before = depth::resident_bytes(args);
    let took = set_many(&channel, "idle", idle, "0 0 0 1 1 *", "bench-idle", 8).await?;
    let after = depth::resident_bytes(args);
    println!(
        "set {idle} schedules in {took:.1?} ({:.0} SetSchedule/s); resident memory grew {:.0} MiB ({:.0} bytes a schedule)",
        idle as f64 / took.as_secs_f64(),
        after.zip(before).map_or(0, |(a, b)| a.saturating_sub(b)) as f64 / (1 << 20) as f64,
        after.zip(before).map_or(0, |(a, b)| a.saturating_sub(b)) as f64 / idle.max(1) as f64,
    );
    let round = Duration::from_secs(1);
    let empty = || Report {
        name: String::new(),
        count: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
        server_cpu: None,
    };
    let (mut none, mut many) = (empty(), empty());
    for _ in 0..ROUNDS {
        add(
            &mut none,
            enqueue_for(args, &bare, "sched-none", round).await?,
        );
        add(
            &mut many,
            enqueue_for(args, client, "sched-many", round).await?,
        );
    }
    none.name = "enqueue, server with 0 schedules".into();
    none.print(None);
    many.name = format!("enqueue, server with {idle} schedules");
    many.print(Some(&none));

    // All due in one second, far enough ahead to set them all first.
    let set_rate = idle.max(1) as f64 / took.as_secs_f64();
    let lead = Duration::from_secs_f64(due as f64 / set_rate * 1.5 + 2.0).as_secs() + 1;
    let fire = chrono::Utc::now() + chrono::Duration::seconds(lead as i64);
    let fire = fire.with_nanosecond(0).unwrap_or(fire);
    let cron = format!(
        "{} {} {} {} {} *",
        fire.second(),
        fire.minute(),
        fire.hour(),
        fire.day(),
        fire.month()
    );
    set_many(&channel, "due", due, &cron, "bench-fired", 8).await?;
    let wall_to_fire = (fire - chrono::Utc::now())
        .to_std()
        .context("the schedules took longer to set than their lead; give fewer --due")?;
    let fire_at = Instant::now() + wall_to_fire;

    // Producers run from the fire time until all are in.
    tokio::time::sleep_until(fire_at.into()).await;
    let stop = CancellationToken::new();
    let producers = tokio::spawn(enqueue_until(
        args.concurrency,
        payload(args.payload),
        client.clone(),
        "sched-storm",
        stop.clone(),
    ));
    let mut admin = pb::admin_client::AdminClient::new(channel.clone());
    let done_at = loop {
        if ready(&mut admin, "bench-fired").await >= due as u64 {
            break Instant::now();
        }
        anyhow::ensure!(
            Instant::now() < fire_at + Duration::from_secs(120),
            "the {due} schedules had not all fired two minutes after their time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.cancel();
    let mut storm = producers.await??;
    println!(
        "{due} schedules due at one second: all enqueued {:.0?} after the fire time",
        done_at.saturating_duration_since(fire_at)
    );
    storm.name = format!("enqueue, while {due} schedules fire");
    storm.print(Some(&none));
    Ok(())
}
