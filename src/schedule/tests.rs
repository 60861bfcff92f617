//! The schedule core, with time moved by hand.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;
use crate::queue::{JobId, ScheduleName};

fn at(zone: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Millis {
    zone.with_ymd_and_hms(y, mo, d, h, mi, s)
        .earliest()
        .expect("a valid local time")
        .timestamp_millis()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Millis {
    at(Tz::UTC, y, mo, d, h, mi, s)
}

fn local(zone: Tz, millis: Millis) -> String {
    trigger::utc(millis)
        .expect("in range")
        .with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

fn next_times(expression: &str, zone: Tz, from: Millis, count: usize) -> Vec<String> {
    let trigger = Trigger::cron(expression).expect("parses");
    let mut times = Vec::new();
    let mut after = from;
    for _ in 0..count {
        after = trigger.next_after(after, zone, 0).expect("a next time");
        times.push(local(zone, after));
    }
    times
}

fn spec(trigger: Trigger) -> ScheduleSpec {
    ScheduleSpec::for_tests(trigger)
}

fn name(text: &str) -> ScheduleName {
    ScheduleName::new(text).expect("name")
}

fn every(secs: u64) -> Trigger {
    Trigger::every(Duration::from_secs(secs)).expect("interval")
}

/// Reports every handed-out time as enqueued, and returns the times.
fn fire_all(book: &mut ScheduleBook, now: Millis) -> Vec<Millis> {
    let mut fired = Vec::new();
    for firing in book.take_due(now, usize::MAX) {
        for &time in &firing.fire_times {
            let job = JobId::from_u128(time as u128);
            assert!(book.fired(
                &firing.name,
                firing.generation,
                time,
                FireResult::Enqueued(job),
                now
            ));
            fired.push(time);
        }
    }
    fired
}

#[test]
fn spring_forward_fires_a_missing_time_once_at_the_first_valid_instant() {
    let ny: Tz = "America/New_York".parse().expect("zone");
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
    let from = at(ny, 2026, 3, 7, 12, 0, 0);
    assert_eq!(
        next_times("30 2 * * *", ny, from, 3),
        [
            "2026-03-08 03:00:00 EDT",
            "2026-03-09 02:30:00 EDT",
            "2026-03-10 02:30:00 EDT"
        ]
    );
    let berlin: Tz = "Europe/Berlin".parse().expect("zone");
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    let from = at(berlin, 2026, 3, 28, 12, 0, 0);
    assert_eq!(
        next_times("15 2 * * *", berlin, from, 2),
        ["2026-03-29 03:00:00 CEST", "2026-03-30 02:15:00 CEST"]
    );
}

#[test]
fn fall_back_fires_a_repeated_time_once() {
    let ny: Tz = "America/New_York".parse().expect("zone");
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    let from = at(ny, 2026, 10, 31, 12, 0, 0);
    assert_eq!(
        next_times("30 1 * * *", ny, from, 2),
        ["2026-11-01 01:30:00 EDT", "2026-11-02 01:30:00 EST"]
    );
    let berlin: Tz = "Europe/Berlin".parse().expect("zone");
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET.
    let from = at(berlin, 2026, 10, 24, 12, 0, 0);
    assert_eq!(
        next_times("30 2 * * *", berlin, from, 2),
        ["2026-10-25 02:30:00 CEST", "2026-10-26 02:30:00 CET"]
    );
}

#[test]
fn a_search_from_inside_a_repeated_hour_never_goes_back() {
    let ny: Tz = "America/New_York".parse().expect("zone");
    // 01:10 EST, the second pass through 01:xx: croner alone answers
    // 01:15 EDT, an hour earlier.
    let inside = Utc
        .with_ymd_and_hms(2026, 11, 1, 6, 10, 0)
        .single()
        .expect("utc")
        .timestamp_millis();
    assert_eq!(local(ny, inside), "2026-11-01 01:10:00 EST");
    let trigger = Trigger::cron("*/15 * * * *").expect("parses");
    let next = trigger.next_after(inside, ny, 0).expect("next");
    assert!(next > inside);
    assert_eq!(local(ny, next), "2026-11-01 02:00:00 EST");
}

#[test]
fn leap_days_and_the_last_day_of_february() {
    let from = utc(2025, 1, 1, 0, 0, 0);
    assert_eq!(
        next_times("0 0 29 2 *", Tz::UTC, from, 2),
        ["2028-02-29 00:00:00 UTC", "2032-02-29 00:00:00 UTC"]
    );
    assert_eq!(
        next_times("0 0 L 2 *", Tz::UTC, from, 4),
        [
            "2025-02-28 00:00:00 UTC",
            "2026-02-28 00:00:00 UTC",
            "2027-02-28 00:00:00 UTC",
            "2028-02-29 00:00:00 UTC"
        ]
    );
}

#[test]
fn quartz_extensions_w_and_hash() {
    let from = utc(2026, 1, 1, 0, 0, 0);
    // The weekday nearest the 15th: 2026-02-15 is a Sunday, so Monday 16.
    assert_eq!(
        next_times("0 9 15W * *", Tz::UTC, from, 2),
        ["2026-01-15 09:00:00 UTC", "2026-02-16 09:00:00 UTC"]
    );
    // The second Tuesday of each month.
    assert_eq!(
        next_times("0 9 * * 2#2", Tz::UTC, from, 2),
        ["2026-01-13 09:00:00 UTC", "2026-02-10 09:00:00 UTC"]
    );
    // The last Friday.
    assert_eq!(
        next_times("0 17 * * 5L", Tz::UTC, from, 1),
        ["2026-01-30 17:00:00 UTC"]
    );
}

#[test]
fn seconds_are_optional_and_nicknames_work() {
    let from = utc(2026, 1, 1, 0, 0, 0);
    assert_eq!(
        next_times("*/15 * * * * *", Tz::UTC, from, 3),
        [
            "2026-01-01 00:00:15 UTC",
            "2026-01-01 00:00:30 UTC",
            "2026-01-01 00:00:45 UTC"
        ]
    );
    assert_eq!(
        next_times("@hourly", Tz::UTC, from, 1),
        ["2026-01-01 01:00:00 UTC"]
    );
    assert_eq!(
        next_times("@daily", Tz::UTC, from, 1),
        ["2026-01-02 00:00:00 UTC"]
    );
    assert_eq!(
        next_times("@weekly", Tz::UTC, from, 1),
        ["2026-01-04 00:00:00 UTC"]
    );
}

#[test]
fn a_bad_field_is_named_with_its_position_and_range() {
    let error = Trigger::cron("0 0 32 * *").expect_err("day 32").to_string();
    assert!(
        error.starts_with("field 3 (day of month) \"32\": "),
        "{error}"
    );
    assert!(error.contains("values are 1-31"), "{error}");
    let error = Trigger::cron("61 * * * * *")
        .expect_err("second 61")
        .to_string();
    assert!(error.starts_with("field 1 (seconds) \"61\""), "{error}");
    let error = Trigger::cron("* * *")
        .expect_err("three fields")
        .to_string();
    assert!(error.starts_with("has 3 fields"), "{error}");
    let error = Trigger::cron("0 0 30 2 *")
        .expect_err("30 February")
        .to_string();
    assert!(error.starts_with("matches no time"), "{error}");
    let error = Trigger::cron("@fortnightly")
        .expect_err("nickname")
        .to_string();
    assert!(error.contains("@hourly"), "{error}");
    assert!(Trigger::every(Duration::from_millis(1500)).is_err());
    assert!(Trigger::every(Duration::ZERO).is_err());
}

#[test]
fn an_interval_counts_from_its_anchor() {
    let trigger = every(90);
    let anchor = utc(2026, 1, 1, 0, 0, 0);
    assert_eq!(
        trigger.next_after(anchor - 5, Tz::UTC, anchor),
        Some(anchor + 90_000)
    );
    assert_eq!(
        trigger.next_after(anchor, Tz::UTC, anchor),
        Some(anchor + 90_000)
    );
    assert_eq!(
        trigger.next_after(anchor + 90_000, Tz::UTC, anchor),
        Some(anchor + 180_000)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn next_fire_times_increase_strictly_and_match_the_expression(
        second in prop::sample::select(vec!["0", "*/7", "5,35", "*"]),
        minute in prop::sample::select(vec!["*", "0", "*/15", "30", "1-5"]),
        hour in prop::sample::select(vec!["*", "1", "2", "*/3", "0-3"]),
        dom in prop::sample::select(vec!["*", "1", "L", "15W", "29"]),
        dow in prop::sample::select(vec!["*", "0", "1-5", "5#2"]),
        zone in prop::sample::select(vec!["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]),
        start in 1_700_000_000_000i64..1_900_000_000_000i64,
    ) {
        let expression = format!("{second} {minute} {hour} {dom} * {dow}");
        let zone: Tz = zone.parse().expect("zone");
        let trigger = Trigger::cron(&expression).expect("parses");
        let Trigger::Cron(cron) = &trigger else { unreachable!() };
        let mut after = start;
        for _ in 0..40 {
            let Some(next) = trigger.next_after(after, zone, 0) else { break };
            prop_assert!(next > after, "{expression} in {zone}: {next} after {after}");
            prop_assert!(cron.matches(next, zone) || gap_snap(zone, next),
                "{expression} in {zone}: {} does not match", local(zone, next));
            after = next;
        }
    }
}

/// Whether `millis` is the first instant after a spring-forward gap, where
/// a time that does not exist fires.
fn gap_snap(zone: Tz, millis: Millis) -> bool {
    let before = trigger::utc(millis - 1000)
        .expect("in range")
        .with_timezone(&zone);
    let now = trigger::utc(millis).expect("in range").with_timezone(&zone);
    now.naive_local() - before.naive_local() > chrono::Duration::seconds(1)
}

#[test]
fn a_due_schedule_fires_once_per_time_and_moves_on() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    assert_eq!(
        book.upsert(name("tick"), spec(every(10)), t0),
        Upserted::Created
    );
    assert_eq!(book.next_due(), Some(t0 + 10_000));
    assert!(fire_all(&mut book, t0 + 9_999).is_empty());
    assert_eq!(fire_all(&mut book, t0 + 10_000), [t0 + 10_000]);
    assert!(fire_all(&mut book, t0 + 10_500).is_empty());
    assert_eq!(fire_all(&mut book, t0 + 20_001), [t0 + 20_000]);
    let entry = book.get(&name("tick")).expect("held");
    assert_eq!(entry.state.fired, 2);
    assert_eq!(entry.state.next_fire, Some(t0 + 30_000));
    assert_eq!(
        book.upcoming(&name("tick"), 3),
        [t0 + 30_000, t0 + 40_000, t0 + 50_000]
    );
}

fn downtime(misfire: Misfire) -> (Vec<Millis>, ScheduleState) {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    book.upsert(
        name("tick"),
        ScheduleSpec {
            misfire,
            ..spec(every(60))
        },
        t0,
    );
    // Down from t0 until ten minutes and 30 s later: ten fire times passed,
    // the latest 30 s ago.
    let fired = fire_all(&mut book, t0 + 630_000);
    (fired, book.get(&name("tick")).expect("held").state.clone())
}

#[test]
fn after_downtime_skip_fires_none_of_the_missed_times() {
    let (fired, state) = downtime(Misfire::Skip);
    assert!(fired.is_empty());
    assert_eq!(state.skipped, 10);
    assert_eq!(
        state.recent.back().map(|f| &f.result),
        Some(&FireResult::Misfired { count: 10 })
    );
    assert_eq!(state.next_fire, Some(utc(2026, 1, 1, 0, 11, 0)));
}

#[test]
fn after_downtime_fire_once_fires_the_latest_missed_time() {
    let (fired, state) = downtime(Misfire::FireOnce);
    assert_eq!(fired, [utc(2026, 1, 1, 0, 10, 0)]);
    assert_eq!((state.fired, state.skipped), (1, 9));
}

#[test]
fn after_downtime_fire_all_fires_every_missed_time_up_to_the_cap() {
    let (fired, state) = downtime(Misfire::FireAll);
    assert_eq!(fired.len(), 10);
    assert_eq!(fired[0], utc(2026, 1, 1, 0, 1, 0));
    assert_eq!((state.fired, state.skipped), (10, 0));

    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    book.upsert(
        name("tick"),
        ScheduleSpec {
            misfire: Misfire::FireAll,
            ..spec(every(1))
        },
        t0,
    );
    let fired = fire_all(&mut book, t0 + 1_000_000);
    assert_eq!(fired.len(), MAX_CATCH_UP);
    assert_eq!(fired.last(), Some(&(t0 + 1_000_000)));
    let state = &book.get(&name("tick")).expect("held").state;
    assert_eq!(state.skipped, 1000 - MAX_CATCH_UP as u64);
}

#[test]
fn a_clock_step_forward_fires_no_burst_and_counts_what_it_skipped() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    book.upsert(name("tick"), spec(every(1)), t0);
    assert_eq!(fire_all(&mut book, t0 + 1_000), [t0 + 1_000]);
    // The clock steps an hour ahead.
    let fired = fire_all(&mut book, t0 + 3_601_000);
    assert_eq!(fired, [t0 + 3_601_000]);
    let state = &book.get(&name("tick")).expect("held").state;
    assert_eq!(state.skipped, 3599);
    // A year ahead, the count still comes out and the search jumps.
    let fired = fire_all(&mut book, t0 + 366 * 86_400_000);
    assert_eq!(fired, [t0 + 366 * 86_400_000]);
    let state = &book.get(&name("tick")).expect("held").state;
    assert_eq!(state.skipped, 3599 + (366 * 86_400 - 3602));
}

#[test]
fn a_paused_schedule_does_not_fire_and_its_misfire_rule_covers_the_pause() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    book.upsert(
        name("tick"),
        ScheduleSpec {
            misfire: Misfire::FireOnce,
            ..spec(every(60))
        },
        t0,
    );
    assert_eq!(book.set_paused(&name("tick"), true, t0), Some(true));
    assert_eq!(book.next_due(), None);
    assert!(fire_all(&mut book, t0 + 300_000).is_empty());
    assert_eq!(
        book.set_paused(&name("tick"), false, t0 + 300_000),
        Some(true)
    );
    assert_eq!(fire_all(&mut book, t0 + 300_000), [t0 + 300_000]);
    let state = &book.get(&name("tick")).expect("held").state;
    assert_eq!((state.fired, state.skipped), (1, 4));
    assert_eq!(book.set_paused(&name("nope"), true, t0), None);
}

#[test]
fn jitter_moves_each_fire_within_its_bound_and_the_same_way_every_time() {
    let jittered = ScheduleSpec {
        jitter: Duration::from_secs(30),
        ..spec(every(60))
    };
    let mut offsets = std::collections::BTreeSet::new();
    for i in 0..200 {
        let schedule = name(&format!("s{i}"));
        let offset = jitter_offset(&schedule, 60_000, &jittered);
        assert!((0..30_000).contains(&offset), "{offset}");
        assert_eq!(offset, jitter_offset(&schedule, 60_000, &jittered));
        offsets.insert(offset / 1000);
    }
    // Spread over the window, not bunched.
    assert!(offsets.len() > 20, "{offsets:?}");

    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    book.upsert(name("s7"), jittered.clone(), t0);
    let offset = jitter_offset(&name("s7"), t0 + 60_000, &jittered);
    assert_eq!(book.next_due(), Some(t0 + 60_000 + offset));
    assert!(fire_all(&mut book, t0 + 60_000 + offset - 1).is_empty());
    assert_eq!(fire_all(&mut book, t0 + 60_000 + offset), [t0 + 60_000]);
}

#[test]
fn start_and_end_bound_the_fire_times() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    let bounded = ScheduleSpec {
        start: Some(t0 + 100_000),
        end: Some(t0 + 300_000),
        ..spec(every(100))
    };
    book.upsert(name("b"), bounded, t0);
    assert_eq!(book.upcoming(&name("b"), 5), [t0 + 200_000, t0 + 300_000]);
    assert_eq!(fire_all(&mut book, t0 + 200_000), [t0 + 200_000]);
    assert_eq!(fire_all(&mut book, t0 + 300_000), [t0 + 300_000]);
    assert_eq!(book.next_due(), None);
    assert_eq!(book.get(&name("b")).expect("held").state.next_fire, None);
}

#[test]
fn the_same_settings_again_change_nothing_and_new_ones_refire_from_now() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    book.upsert(name("tick"), spec(every(60)), t0);
    // Down over a fire time; the same settings upserted at start-up keep
    // the missed time for the misfire rule.
    assert_eq!(
        book.upsert(name("tick"), spec(every(60)), t0 + 62_000),
        Upserted::Unchanged
    );
    assert_eq!(fire_all(&mut book, t0 + 62_000), [t0 + 60_000]);
    assert_eq!(
        book.upsert(name("tick"), spec(every(30)), t0 + 70_000),
        Upserted::Updated
    );
    assert_eq!(book.upcoming(&name("tick"), 1), [t0 + 100_000]);
    let state = &book.get(&name("tick")).expect("held").state;
    assert_eq!(state.fired, 1);
}

#[test]
fn a_result_for_a_replaced_or_deleted_schedule_is_dropped() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    book.upsert(name("tick"), spec(every(60)), t0);
    let firing = book.take_due(t0 + 60_000, usize::MAX).pop().expect("due");
    book.upsert(name("tick"), spec(every(30)), t0 + 60_001);
    let job = FireResult::Enqueued(JobId::from_u128(1));
    assert!(!book.fired(
        &firing.name,
        firing.generation,
        t0 + 60_000,
        job.clone(),
        t0
    ));
    assert!(book.remove(&name("tick")));
    assert!(!book.fired(&firing.name, firing.generation + 1, t0 + 60_000, job, t0));
    assert!(book.is_empty());
}

#[test]
fn a_restart_resumes_from_the_earliest_fire_not_reported() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    let all = ScheduleSpec {
        misfire: Misfire::FireAll,
        ..spec(every(60))
    };
    book.upsert(name("tick"), all.clone(), t0);
    let firing = book.take_due(t0 + 180_000, usize::MAX).pop().expect("due");
    assert_eq!(firing.fire_times, [t0 + 60_000, t0 + 120_000, t0 + 180_000]);
    let job = FireResult::Enqueued(JobId::from_u128(1));
    book.fired(
        &firing.name,
        firing.generation,
        t0 + 60_000,
        job,
        t0 + 180_000,
    );
    // The server dies here: what it would have recorded, restored.
    let state = book.get(&name("tick")).expect("held").state.clone();
    assert_eq!(state.resume_from(), Some(t0 + 120_000));
    let mut again = ScheduleBook::new();
    again.restore(name("tick"), all, state);
    assert_eq!(
        fire_all(&mut again, t0 + 181_000),
        [t0 + 120_000, t0 + 180_000]
    );
}

#[test]
fn a_manual_trigger_fires_now_and_leaves_the_next_time_alone() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    book.upsert(name("tick"), spec(every(60)), t0);
    let firing = book.trigger(&name("tick"), t0 + 5_000).expect("held");
    assert!(firing.manual);
    assert_eq!(firing.fire_times, [t0 + 5_000]);
    let state = &book.get(&name("tick")).expect("held").state;
    assert_eq!(state.resume_from(), Some(t0 + 60_000));
}

#[test]
fn only_due_schedules_are_looked_at() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    for i in 0..1000 {
        book.upsert(name(&format!("s{i:04}")), spec(every(3600)), t0 + i * 1000);
    }
    book.upsert(name("soon"), spec(every(1)), t0);
    let firings = book.take_due(t0 + 1_000, usize::MAX);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].name, name("soon"));
}

#[test]
fn many_due_at_once_are_handed_out_a_bounded_batch_at_a_time_earliest_first() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    for i in 0..10 {
        book.upsert(name(&format!("s{i}")), spec(every(10 + i as u64)), t0);
    }
    let first = book.take_due(t0 + 60_000, 4);
    assert_eq!(first.len(), 4);
    let names: Vec<&str> = first.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["s0", "s1", "s2", "s3"]);
    // The other six; the first four moved on past now.
    assert_eq!(book.take_due(t0 + 60_000, usize::MAX).len(), 6);
}

#[test]
fn a_long_gap_with_jitter_still_counts_every_missed_time() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    let jittered = ScheduleSpec {
        jitter: Duration::from_secs(30),
        ..spec(every(1))
    };
    book.upsert(name("tick"), jittered, t0);
    // 20 000 s later: past the scan limit, so the search jumps to a
    // jitter before now, where the next time may not be due yet.
    let now = t0 + 20_000_000;
    fire_all(&mut book, now);
    let state = &book.get(&name("tick")).expect("held").state;
    let fired_or_skipped = state.fired + state.skipped;
    // Every second up to about now - jitter, each once.
    assert!(
        (19_960..=20_000).contains(&fired_or_skipped),
        "{fired_or_skipped}: {state:?}"
    );
    assert!(state.next_fire.is_some_and(|next| next > now - 30_000));
}

#[test]
fn past_the_scan_limit_the_missed_times_are_counted_exactly() {
    let mut book = ScheduleBook::new();
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    let hour = 3_600_000;
    let hourly = ScheduleSpec {
        jitter: Duration::from_secs(1800),
        ..spec(every(3600))
    };
    book.upsert(name("h"), hourly.clone(), t0);
    // A second after the 11 000th fire time, which is not due yet: its
    // jitter puts it later.
    let last = t0 + 11_000 * hour;
    assert!(jitter_offset(&name("h"), last, &hourly) > 1000);
    fire_all(&mut book, last + 1000);
    let state = &book.get(&name("h")).expect("held").state;
    // The 10 000 looked at one by one, then the 999 counted to half an
    // hour before now; the 11 000th is still to come.
    assert_eq!((state.fired, state.skipped), (0, 10_999));
    assert_eq!(state.next_fire, Some(last));
    assert!(matches!(
        state.recent.back().map(|f| &f.result),
        Some(FireResult::Misfired { count: 10_999 })
    ));
}
