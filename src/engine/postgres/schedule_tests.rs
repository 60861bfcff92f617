//! Schedules shared by two replicas on one database, with a wall clock the
//! test moves by hand: each fire time makes one job whichever replica
//! fires it, and a pause, a trigger or a delete through one is what the
//! other sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::PgEngine;
use super::testing::TestSchema;
use super::tests::connect_with;
use crate::engine::{EngineConfig, EngineError, Operate, Schedules};
use crate::queue::{QueueName, ScheduleName};
use crate::schedule::{
    FIRE_TIME_KEY, Overlap, ScheduleSpec, TRIGGERED_KEY, Trigger, Upserted, WallClock,
};

/// Wall-clock time that moves only when the test says.
#[derive(Debug)]
struct HandClock(AtomicI64);

impl HandClock {
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl WallClock for HandClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn every_second() -> ScheduleSpec {
    ScheduleSpec::for_tests(Trigger::every(Duration::from_secs(1)).expect("interval"))
}

/// The fire-time metadata of every job in the queue, in id order.
async fn fire_times(engine: &PgEngine) -> Vec<String> {
    let queue = QueueName::new("reports").expect("name");
    let page = match engine.list_jobs(&queue, None, None, 100).await {
        Ok(page) => page,
        Err(EngineError::QueueNotFound(_)) => return Vec::new(),
        Err(other) => panic!("list: {other}"),
    };
    page.jobs
        .iter()
        .filter_map(|s| s.job.metadata.get(FIRE_TIME_KEY).map(str::to_string))
        .collect()
}

/// Waits until the schedule has fired `n` times, for at most 20 s.
async fn fired(engine: &PgEngine, name: &ScheduleName, n: u64) {
    let patience = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let info = engine.schedule_info(name).await.expect("info");
        if info.state.fired >= n {
            assert_eq!(info.state.fired, n, "fired more often than its fire times");
            return;
        }
        assert!(
            tokio::time::Instant::now() < patience,
            "never fired {n} times"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fire_each_fire_time_once_and_see_each_others_changes() {
    let Some(schema) = TestSchema::create("pg_schedules").await else {
        return;
    };
    let clock = Arc::new(HandClock(AtomicI64::new(1_800_000_000_000)));
    let config = EngineConfig {
        clock: clock.clone(),
        ..EngineConfig::default()
    };
    let (a, b) = (
        connect_with(&schema, config.clone()).await,
        connect_with(&schema, config).await,
    );
    let tick = ScheduleName::new("tick").expect("name");

    let (_, created) = a
        .set_schedule(tick.clone(), every_second())
        .await
        .expect("set");
    assert_eq!(created, Upserted::Created);
    let (info, again) = b
        .set_schedule(tick.clone(), every_second())
        .await
        .expect("set");
    assert_eq!(again, Upserted::Unchanged, "b sees the schedule a made");
    assert_eq!(info.upcoming.len(), 5);

    // Both replicas race for every fire time: their firing tasks, and
    // each asked directly as well.
    for n in 1..=5 {
        clock.advance(Duration::from_secs(1));
        let (x, y) = tokio::join!(a.fire_due(), b.fire_due());
        x.expect("fire through a");
        y.expect("fire through b");
        fired(&a, &tick, n).await;
    }
    let times = fire_times(&a).await;
    assert_eq!(times.len(), 5, "one job per fire time: {times:?}");
    let distinct: std::collections::HashSet<&String> = times.iter().collect();
    assert_eq!(distinct.len(), 5, "{times:?}");

    // Paused through b: a fires nothing, and on resume the fire times
    // that passed are skipped (the misfire rule), not made up.
    b.set_schedule_paused(&tick, true).await.expect("pause");
    clock.advance(Duration::from_secs(10));
    a.fire_due().await.expect("fire");
    assert_eq!(a.schedule_info(&tick).await.expect("info").state.fired, 5);
    let resumed = a.set_schedule_paused(&tick, false).await.expect("resume");
    assert!(!resumed.state.paused);
    b.fire_due().await.expect("fire");
    fired(&b, &tick, 6).await;
    let info = b.schedule_info(&tick).await.expect("info");
    assert_eq!(
        info.state.skipped, 9,
        "the ten times passed while paused, but the latest"
    );
    assert_eq!(fire_times(&b).await.len(), 6);

    // A trigger through b makes a job at once, marked as such.
    let triggered = b.trigger_schedule(&tick).await.expect("trigger");
    let queue = QueueName::new("reports").expect("name");
    let (_, status) = a.find_job(Some(&queue), &triggered.id).await.expect("job");
    assert_eq!(status.job.metadata.get(TRIGGERED_KEY), Some("true"));
    let listed = a.list_schedules(None, 10).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state.fired, 7);
    assert_eq!(a.schedule_figures().await.expect("figures")[0].fired, 7);

    a.delete_schedule(&tick).await.expect("delete");
    assert!(matches!(
        b.schedule_info(&tick).await,
        Err(EngineError::ScheduleNotFound(_))
    ));
    clock.advance(Duration::from_secs(5));
    b.fire_due().await.expect("fire");
    assert_eq!(
        fire_times(&a).await.len(),
        7,
        "a deleted schedule fires no more"
    );
}

#[tokio::test]
async fn past_max_schedules_a_new_one_is_refused_naming_the_limit() {
    let Some(schema) = TestSchema::create("pg_schedule_limit").await else {
        return;
    };
    let config = EngineConfig {
        max_schedules: 1,
        ..EngineConfig::default()
    };
    let engine = connect_with(&schema, config).await;
    let name = |s: &str| ScheduleName::new(s).expect("name");
    engine
        .set_schedule(name("one"), every_second())
        .await
        .expect("first");
    let refused = engine.set_schedule(name("two"), every_second()).await;
    assert!(
        matches!(refused, Err(EngineError::TooManySchedules { limit: 1, .. })),
        "{refused:?}"
    );
    // Changing the one there is still allowed.
    let mut daily = every_second();
    daily.trigger = Trigger::cron("0 3 * * *").expect("cron");
    let (_, updated) = engine
        .set_schedule(name("one"), daily)
        .await
        .expect("update");
    assert_eq!(updated, Upserted::Updated);
}

#[tokio::test]
async fn skip_if_running_waits_for_the_previous_fires_job() {
    let Some(schema) = TestSchema::create("pg_schedule_overlap").await else {
        return;
    };
    let clock = Arc::new(HandClock(AtomicI64::new(1_800_000_000_000)));
    let config = EngineConfig {
        clock: clock.clone(),
        ..EngineConfig::default()
    };
    let engine = connect_with(&schema, config).await;
    let name = ScheduleName::new("sync").expect("name");
    let spec = ScheduleSpec {
        overlap: Overlap::SkipIfRunning,
        ..every_second()
    };
    engine.set_schedule(name.clone(), spec).await.expect("set");
    clock.advance(Duration::from_secs(1));
    engine.fire_due().await.expect("fire");
    fired(&engine, &name, 1).await;
    // Its job still waits: the next fire time is skipped.
    clock.advance(Duration::from_secs(1));
    engine.fire_due().await.expect("fire");
    let patience = tokio::time::Instant::now() + Duration::from_secs(20);
    while engine
        .schedule_info(&name)
        .await
        .expect("info")
        .state
        .skipped
        == 0
    {
        assert!(tokio::time::Instant::now() < patience, "never skipped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        engine.schedule_info(&name).await.expect("info").state.fired,
        1
    );
    // Done, it lets the next one fire.
    let queue = QueueName::new("reports").expect("name");
    let leased = crate::engine::Consume::lease(&engine, queue.clone(), 1, None, Duration::ZERO)
        .await
        .expect("lease");
    crate::engine::Consume::ack(&engine, &queue, &[leased[0].token])
        .await
        .expect("ack");
    clock.advance(Duration::from_secs(1));
    engine.fire_due().await.expect("fire");
    fired(&engine, &name, 2).await;
}
