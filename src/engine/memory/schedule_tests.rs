//! The engine's schedules: firing, overlap, triggers and a restart, with
//! Tokio's clock paused and the wall clock following it, so time only
//! moves when every task is idle.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::engine::journal::{JournalOptions, RecoveryMode, replay};
use crate::engine::{Engine, Schedules};
use crate::queue::{JobState, ScheduleName};
use crate::schedule::{
    FIRE_TIME_KEY, FireResult, JobTemplate, Misfire, Overlap, SCHEDULE_KEY, ScheduleSpec,
    TRIGGERED_KEY, Trigger, Upserted, WallClock,
};

/// Wall-clock time that moves with Tokio's (paused) clock, from a fixed
/// start, and can be stepped like an NTP correction.
#[derive(Debug)]
struct FollowingClock {
    start: Instant,
    base: i64,
    step: AtomicI64,
}

impl FollowingClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            // 2026-01-01T00:00:00Z.
            base: 1_767_225_600_000,
            step: AtomicI64::new(0),
        })
    }
}

impl WallClock for FollowingClock {
    fn now(&self) -> i64 {
        self.base + self.start.elapsed().as_millis() as i64 + self.step.load(Ordering::Relaxed)
    }
}

fn engine(clock: Arc<FollowingClock>) -> MemoryEngine {
    MemoryEngine::new(EngineConfig {
        clock,
        ..EngineConfig::default()
    })
}

fn queue() -> QueueName {
    QueueName::new("reports").expect("name")
}

fn name(s: &str) -> ScheduleName {
    ScheduleName::new(s).expect("name")
}

fn every_second(overlap: Overlap) -> ScheduleSpec {
    ScheduleSpec {
        template: JobTemplate {
            payload: Bytes::from_static(b"hourly report"),
            metadata: vec![("kind".into(), "report".into())],
            priority: 0,
            max_attempts: None,
        },
        overlap,
        ..ScheduleSpec::for_tests(Trigger::every(Duration::from_secs(1)).expect("interval"))
    }
}

fn fire_times(engine: &MemoryEngine) -> Vec<String> {
    let Ok(page) = engine.list_jobs(&queue(), None, None, 100) else {
        return Vec::new();
    };
    page.jobs
        .iter()
        .map(|status| {
            let meta = &status.job.metadata;
            assert_eq!(meta.get(SCHEDULE_KEY), Some("tick"));
            meta.get(FIRE_TIME_KEY)
                .map(str::to_string)
                .expect("fire time")
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_schedule_fires_one_job_per_fire_time() {
    let clock = FollowingClock::new();
    let engine = engine(clock);
    let (info, upserted) = engine
        .set_schedule(name("tick"), every_second(Overlap::Allow))
        .expect("set");
    assert_eq!(upserted, Upserted::Created);
    assert_eq!(info.upcoming.len(), 5);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(
        fire_times(&engine),
        [
            "2026-01-01T00:00:01.000Z",
            "2026-01-01T00:00:02.000Z",
            "2026-01-01T00:00:03.000Z"
        ]
    );
    let info = engine.schedule_info(&name("tick")).expect("info");
    assert_eq!(info.state.fired, 3);
    assert_eq!(info.outcomes, [Some(JobState::Ready); 3]);
    engine.shutdown();
}

#[tokio::test(start_paused = true)]
async fn skip_if_running_waits_for_the_previous_job() {
    let clock = FollowingClock::new();
    let engine = engine(clock);
    engine
        .set_schedule(name("tick"), every_second(Overlap::SkipIfRunning))
        .expect("set");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let leased = engine
        .lease(queue(), 1, Some(Duration::from_secs(60)), Duration::ZERO)
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1);
    // Held by a worker over two fire times: both skipped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let info = engine.schedule_info(&name("tick")).expect("info");
    assert_eq!((info.state.fired, info.state.skipped), (1, 2));
    assert!(matches!(
        info.state.recent.back().map(|f| &f.result),
        Some(FireResult::StillRunning(_))
    ));
    assert_eq!(info.outcomes[0], Some(JobState::Leased));
    engine.ack(&queue(), &[leased[0].token]).expect("ack");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let info = engine.schedule_info(&name("tick")).expect("info");
    assert_eq!(info.state.fired, 2);
    assert_eq!(info.outcomes[0], Some(JobState::Acked));
    engine.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_clock_step_is_a_misfire_not_a_burst() {
    let clock = FollowingClock::new();
    let engine = engine(clock.clone());
    engine
        .set_schedule(name("tick"), every_second(Overlap::Allow))
        .expect("set");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    clock.step.store(3_600_000, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let info = engine.schedule_info(&name("tick")).expect("info");
    // One fire before the step and one after it; the hour between is
    // counted as skipped by the default rule.
    assert_eq!(info.state.fired, 2, "{:?}", info.state.recent);
    assert!(info.state.skipped >= 3_599, "{}", info.state.skipped);
    engine.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_paused_schedule_fires_nothing_and_a_trigger_fires_at_once() {
    let clock = FollowingClock::new();
    let engine = engine(clock);
    engine
        .set_schedule(name("tick"), every_second(Overlap::Allow))
        .expect("set");
    engine
        .set_schedule_paused(&name("tick"), true)
        .expect("pause");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(fire_times(&engine).is_empty());
    let job = engine
        .trigger_schedule(&name("tick"))
        .await
        .expect("trigger");
    let status = engine.job_status(&queue(), &job.id).expect("stored");
    assert_eq!(status.job.metadata.get(TRIGGERED_KEY), Some("true"));
    // Resumed: of the three fire times that passed while paused, the
    // latest is still on time and fires; the two before it are missed and
    // the default rule skips them.
    engine
        .set_schedule_paused(&name("tick"), false)
        .expect("resume");
    tokio::task::yield_now().await;
    let info = engine.schedule_info(&name("tick")).expect("info");
    assert_eq!(info.state.skipped, 2);
    assert_eq!(info.state.fired, 2, "the trigger and the latest fire time");
    assert!(matches!(
        engine.delete_schedule(&name("nope")),
        Err(EngineError::ScheduleNotFound(_))
    ));
    engine.delete_schedule(&name("tick")).expect("delete");
    assert!(engine.schedule_info(&name("tick")).is_err());
    engine.shutdown();
}

#[tokio::test(start_paused = true)]
async fn schedules_past_the_limit_are_refused() {
    let engine = MemoryEngine::new(EngineConfig {
        max_schedules: 2,
        clock: FollowingClock::new(),
        ..EngineConfig::default()
    });
    for n in ["a", "b"] {
        engine
            .set_schedule(name(n), every_second(Overlap::Allow))
            .expect("set");
    }
    let refused = engine
        .set_schedule(name("c"), every_second(Overlap::Allow))
        .expect_err("over the limit");
    assert!(refused.to_string().contains("--max-schedules"), "{refused}");
    // Updating one already held is not a new one.
    engine
        .set_schedule(name("a"), every_second(Overlap::SkipIfRunning))
        .expect("update");
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_schedules_and_never_fires_a_time_twice() {
    let dir = std::env::temp_dir().join(format!("jobq-schedules-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    let open = |dir: &std::path::Path| {
        let mut recovery = Recovery::default();
        let replayed = replay(dir, RecoveryMode::Strict, |seq, record| {
            recovery.apply(seq, record)
        })
        .expect("replay");
        let journal =
            Journal::open(dir, replayed.next_seq, JournalOptions::default()).expect("open");
        MemoryEngine::durable(
            EngineConfig::default(),
            Arc::new(NoObserver),
            journal,
            recovery,
        )
    };
    let spec = ScheduleSpec {
        misfire: Misfire::FireAll,
        ..every_second(Overlap::Allow)
    };
    let (first, _) = open(&dir);
    Schedules::set_schedule(&first, name("tick"), spec.clone())
        .await
        .expect("set");
    wait_for_fires(&first, 2).await;
    first.shutdown();
    Engine::stopped(&first).await;
    let before = first.schedule_info(&name("tick")).expect("info");
    drop(first);

    let (second, counts) = open(&dir);
    assert_eq!(counts.schedules, 1);
    let after = second.schedule_info(&name("tick")).expect("restored");
    assert_eq!(after.state.fired, before.state.fired);
    // The same settings at start-up change nothing.
    let (_, upserted) = second.set_schedule(name("tick"), spec).expect("set");
    assert_eq!(upserted, Upserted::Unchanged);
    wait_for_fires(&second, before.state.fired + 2).await;
    second.shutdown();
    Engine::stopped(&second).await;
    let mut times = fire_times(&second);
    let all = times.len();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), all, "a fire time was enqueued twice");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn wait_for_fires(engine: &MemoryEngine, count: u64) {
    for _ in 0..600 {
        if engine
            .schedule_info(&name("tick"))
            .expect("info")
            .state
            .fired
            >= count
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the schedule did not fire {count} times in 30 s");
}

#[tokio::test]
async fn a_schedule_outlives_compaction_and_a_restart() {
    use super::tests::{churn_until_compacted, durable_engine, reopen, stop};
    let (engine, journal, dir) = durable_engine("schedule-compaction");
    let hourly = ScheduleSpec {
        trigger: Trigger::cron("@hourly").expect("cron"),
        ..every_second(Overlap::Allow)
    };
    engine
        .set_schedule(name("tick"), hourly.clone())
        .expect("set");
    // Enough acked traffic that compaction deletes the segment that
    // recorded the schedule.
    let churn = QueueName::new("churn").expect("name");
    churn_until_compacted(&engine, &journal, &churn).await;
    stop(engine, journal).await;

    let (engine, journal) = reopen(&dir);
    let info = engine
        .schedule_info(&name("tick"))
        .expect("the schedule was kept");
    assert_eq!(*info.spec, hourly);
    stop(engine, journal).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn schedules_count_against_the_memory_budget() {
    let engine = MemoryEngine::new(EngineConfig {
        memory_budget: 8 << 10,
        clock: FollowingClock::new(),
        ..EngineConfig::default()
    });
    let big = |trigger: &str| ScheduleSpec {
        template: JobTemplate {
            payload: Bytes::from(vec![b'x'; 4 << 10]),
            metadata: Vec::new(),
            priority: 0,
            max_attempts: None,
        },
        trigger: Trigger::cron(trigger).expect("cron"),
        ..every_second(Overlap::Allow)
    };
    engine.set_schedule(name("a"), big("@daily")).expect("fits");
    let held = engine.memory_used();
    assert!(held > 4 << 10, "{held}");
    assert!(matches!(
        engine.set_schedule(name("b"), big("@daily")),
        Err(EngineError::MemoryExhausted { .. })
    ));
    // An update is charged for what it adds only.
    engine
        .set_schedule(name("a"), big("@hourly"))
        .expect("same size");
    assert_eq!(engine.memory_used(), held + 1);
    engine.delete_schedule(&name("a")).expect("delete");
    assert_eq!(engine.memory_used(), 0);
    engine
        .set_schedule(name("b"), big("@daily"))
        .expect("room again");
    engine.shutdown();
}
