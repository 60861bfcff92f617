//! [`ScheduleBook`]: every schedule, ordered by name for paging and by due
//! time for firing.
//!
//! Costs, for `n` schedules: upsert, delete, pause, resume and looking one
//! up are O(log n); handing out what is due is O(log n) per schedule due,
//! plus the trigger's search for its next time. No call looks at a
//! schedule that is not due. Time comes in as an argument (wall-clock
//! milliseconds), so tests move it by hand.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::fire::{Fire, FireResult, Firing, ScheduleState};
use super::spec::{MAX_CATCH_UP, Misfire, ScheduleSpec};
use super::trigger::{Millis, Trigger};
use crate::queue::ScheduleName;

/// A fire handled at most this late counts as on time; later ones are
/// missed, and the misfire rule decides. Of fire times that come due
/// together, only the latest can be on time: a stepped clock or a restart
/// does not make a burst.
pub const ON_TIME_MILLIS: Millis = 5_000;
/// Fire times of a cron schedule looked at per gap to count and catch up
/// missed ones; past it, the count stops and the search jumps to now.
pub const MAX_MISSED_SCAN: usize = 10_000;

/// One schedule: its settings and its state.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its settings.
    pub spec: Arc<ScheduleSpec>,
    /// How it is firing.
    pub state: ScheduleState,
    /// Bumped on every change of settings.
    pub generation: u64,
}

/// Every schedule.
#[derive(Debug, Default)]
pub struct ScheduleBook {
    entries: BTreeMap<ScheduleName, Entry>,
    /// Unpaused schedules with a next fire time, by when it is due (the
    /// fire time plus its jitter).
    due: BTreeSet<(Millis, ScheduleName)>,
}

/// What an upsert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upserted {
    /// A new schedule.
    Created,
    /// An existing schedule got new settings.
    Updated,
    /// The settings were the same; nothing changed.
    Unchanged,
}

impl ScheduleBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no schedule is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One schedule.
    pub fn get(&self, name: &ScheduleName) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Schedules whose names sort after `after`, at most `limit`.
    pub fn page(
        &self,
        after: Option<&ScheduleName>,
        limit: usize,
    ) -> impl Iterator<Item = (&ScheduleName, &Entry)> {
        let range = match after {
            Some(after) => self.entries.range::<ScheduleName, _>((
                std::ops::Bound::Excluded(after),
                std::ops::Bound::Unbounded,
            )),
            None => self.entries.range::<ScheduleName, _>(..),
        };
        range.take(limit)
    }

    /// When the earliest due schedule is due.
    pub fn next_due(&self) -> Option<Millis> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Creates a schedule, or gives an existing one new settings. Same
    /// settings change nothing, so upserting at every start-up keeps a
    /// schedule's state (and its misfire rule's view of the downtime).
    /// New settings keep the counts and recent fires, and fire from `now`
    /// on.
    pub fn upsert(&mut self, name: ScheduleName, spec: ScheduleSpec, now: Millis) -> Upserted {
        let (mut state, generation, outcome) = match self.entries.get(&name) {
            Some(old) if *old.spec == spec => return Upserted::Unchanged,
            Some(old) => {
                let mut state = old.state.clone();
                if old.spec.trigger != spec.trigger || old.spec.start != spec.start {
                    state.anchor = spec.start.unwrap_or(now);
                }
                state.updated = now;
                state.in_flight.clear();
                (state, old.generation + 1, Upserted::Updated)
            }
            None => {
                let state = ScheduleState {
                    anchor: spec.start.unwrap_or(now),
                    created: now,
                    updated: now,
                    ..ScheduleState::default()
                };
                (state, 0, Upserted::Created)
            }
        };
        state.next_fire = first_after(&spec, state.anchor, now);
        self.unindex(&name);
        let entry = Entry {
            spec: Arc::new(spec),
            state,
            generation,
        };
        self.insert(name, entry);
        outcome
    }

    /// Puts back a schedule as a journal recorded it.
    pub fn restore(&mut self, name: ScheduleName, spec: ScheduleSpec, mut state: ScheduleState) {
        state.next_fire = state.resume_from();
        state.in_flight.clear();
        self.unindex(&name);
        let entry = Entry {
            spec: Arc::new(spec),
            state,
            generation: 0,
        };
        self.insert(name, entry);
    }

    /// Deletes a schedule; whether it was there.
    pub fn remove(&mut self, name: &ScheduleName) -> bool {
        self.unindex(name);
        self.entries.remove(name).is_some()
    }

    /// Pauses or resumes a schedule; whether it changed. A resumed
    /// schedule's fire times that passed while it was paused are missed,
    /// and its misfire rule decides.
    pub fn set_paused(&mut self, name: &ScheduleName, paused: bool, now: Millis) -> Option<bool> {
        if self.entries.get(name)?.state.paused == paused {
            return Some(false);
        }
        self.unindex(name);
        let entry = self.entries.get_mut(name)?;
        entry.state.paused = paused;
        entry.state.updated = now;
        if let Some(entry) = self.entries.get(name)
            && let Some(due) = due_at(name, entry)
        {
            self.due.insert((due, name.clone()));
        }
        Some(true)
    }

    /// Hands out the fire times due by `now` of at most `max` schedules,
    /// the earliest due first, applying each schedule's misfire rule, and
    /// moves each on to its next time. Every firing returned changed its
    /// schedule's state and must be recorded; its fire times must be
    /// reported back with [`fired`](Self::fired).
    pub fn take_due(&mut self, now: Millis, max: usize) -> Vec<Firing> {
        let mut firings = Vec::new();
        while firings.len() < max
            && let Some((at, _)) = self.due.first()
            && *at <= now
        {
            let Some((_, name)) = self.due.pop_first() else {
                break;
            };
            let Some(entry) = self.entries.get_mut(&name) else {
                continue;
            };
            let fire_times = take_one(&name, entry, now);
            entry.state.in_flight.extend(fire_times.iter().copied());
            firings.push(Firing {
                name: name.clone(),
                spec: entry.spec.clone(),
                generation: entry.generation,
                fire_times,
                manual: false,
            });
            if let Some(due) = due_at(&name, entry) {
                self.due.insert((due, name));
            }
        }
        firings
    }

    /// A fire of `name` for `now`, outside its trigger.
    pub fn trigger(&self, name: &ScheduleName, now: Millis) -> Option<Firing> {
        // Not in flight: a manual fire is not one of the trigger's times,
        // and a restart must not resume from it.
        let entry = self.entries.get(name)?;
        Some(Firing {
            name: name.clone(),
            spec: entry.spec.clone(),
            generation: entry.generation,
            fire_times: vec![now],
            manual: true,
        })
    }

    /// Records how one handed-out fire time went. Returns `false` (and
    /// records nothing) if the schedule was deleted or replaced meanwhile.
    pub fn fired(
        &mut self,
        name: &ScheduleName,
        generation: u64,
        fire_time: Millis,
        result: FireResult,
        now: Millis,
    ) -> bool {
        let Some(entry) = self.entries.get_mut(name) else {
            return false;
        };
        if entry.generation != generation {
            return false;
        }
        let state = &mut entry.state;
        state.in_flight.remove(&fire_time);
        match &result {
            FireResult::Enqueued(id) => {
                state.fired += 1;
                state.last_job = Some(*id);
            }
            FireResult::StillRunning(_) => state.skipped += 1,
            FireResult::Misfired { count } => state.skipped += count,
            FireResult::Failed(_) => state.failed += 1,
        }
        state.remember(Fire {
            fire_time,
            handled_at: now,
            result,
        });
        true
    }

    /// When `name`'s next fire is due (its fire time plus jitter); `None`
    /// when it is paused, has none left, or is not held.
    pub fn due_at(&self, name: &ScheduleName) -> Option<Millis> {
        due_at(name, self.entries.get(name)?)
    }

    /// The next `count` fire times of `name`, from its next one.
    pub fn upcoming(&self, name: &ScheduleName, count: usize) -> Vec<Millis> {
        let Some(entry) = self.entries.get(name) else {
            return Vec::new();
        };
        let mut times = Vec::with_capacity(count);
        let mut next = entry.state.next_fire;
        while let Some(at) = next
            && times.len() < count
        {
            times.push(at);
            next = following(&entry.spec, entry.state.anchor, at);
        }
        times
    }

    fn insert(&mut self, name: ScheduleName, entry: Entry) {
        if let Some(due) = due_at(&name, &entry) {
            self.due.insert((due, name.clone()));
        }
        self.entries.insert(name, entry);
    }

    fn unindex(&mut self, name: &ScheduleName) {
        if let Some(entry) = self.entries.get(name)
            && let Some(due) = due_at(name, entry)
        {
            self.due.remove(&(due, name.clone()));
        }
    }
}

/// When an unpaused schedule's next fire time is due.
fn due_at(name: &ScheduleName, entry: &Entry) -> Option<Millis> {
    if entry.state.paused {
        return None;
    }
    let fire = entry.state.next_fire?;
    Some(fire + jitter_offset(name, fire, &entry.spec))
}

/// How much later than its fire time a fire is due: fixed for a schedule
/// and fire time (so a restart computes the same), spread evenly over the
/// schedule's jitter.
pub fn jitter_offset(name: &ScheduleName, fire: Millis, spec: &ScheduleSpec) -> Millis {
    let span = spec.jitter.as_millis();
    if span == 0 {
        return 0;
    }
    let mut hasher = rustc_hash::FxHasher::default();
    name.hash(&mut hasher);
    fire.hash(&mut hasher);
    (u128::from(hasher.finish()) % span) as Millis
}

/// The first fire time after `after`, within the schedule's start and end.
fn first_after(spec: &ScheduleSpec, anchor: Millis, after: Millis) -> Option<Millis> {
    let after = match spec.start {
        Some(start) if start > after => start - 1,
        _ => after,
    };
    following(spec, anchor, after)
}

/// The fire time after `after`, unless past the end.
fn following(spec: &ScheduleSpec, anchor: Millis, after: Millis) -> Option<Millis> {
    let next = spec.trigger.next_after(after, spec.zone, anchor)?;
    match spec.end {
        Some(end) if next > end => None,
        _ => Some(next),
    }
}

/// The due fire times of one schedule at `now`, after its misfire rule;
/// moves its next fire time past `now` and counts what was skipped.
fn take_one(name: &ScheduleName, entry: &mut Entry, now: Millis) -> Vec<Millis> {
    let spec = entry.spec.clone();
    let anchor = entry.state.anchor;
    let due = |fire: Millis| fire + jitter_offset(name, fire, &spec);
    // The latest due times, enough for any rule, and how many came due.
    let mut late: VecDeque<Millis> = VecDeque::new();
    let mut count: u64 = 0;
    let mut next = entry.state.next_fire;
    let mut scanned = 0;
    let mut last_seen = None;
    while let Some(fire) = next
        && due(fire) <= now
    {
        count += 1;
        last_seen = Some(fire);
        scanned += 1;
        if late.len() > MAX_CATCH_UP {
            late.pop_front();
        }
        late.push_back(fire);
        next = following(&spec, anchor, fire);
        if scanned == MAX_MISSED_SCAN
            && let Some(at) = next
            && due(at) <= now
        {
            // A long gap: count an interval's times exactly and jump a
            // cron expression's search to the present.
            let jump_from = now - spec.jitter.as_millis() as Millis;
            if let Trigger::Every(step) = spec.trigger {
                // The times from `at` on, before `jump_from`.
                let step = step.as_millis().max(1) as Millis;
                count += ((jump_from - at).max(0) as u64).div_ceil(step as u64);
            }
            late.clear();
            next = first_after(&spec, anchor, jump_from.max(at) - 1);
            scanned = 0;
        }
    }
    entry.state.next_fire = next;
    let Some(&latest) = late.back() else {
        // Only after a jump: every time counted was missed.
        if let Some(last) = last_seen {
            missed(name, entry, count, last, now);
        }
        return Vec::new();
    };
    let on_time = now - due(latest) <= ON_TIME_MILLIS;
    let fire: Vec<Millis> = match spec.misfire {
        Misfire::Skip if on_time => vec![latest],
        Misfire::Skip => Vec::new(),
        Misfire::FireOnce => vec![latest],
        Misfire::FireAll => {
            let older = late.len().saturating_sub(MAX_CATCH_UP);
            late.iter().skip(older).copied().collect()
        }
    };
    let skipped = count - fire.len() as u64;
    if skipped > 0 {
        let last_missed = late
            .iter()
            .rev()
            .find(|t| !fire.contains(t))
            .copied()
            .unwrap_or(latest);
        missed(name, entry, skipped, last_missed, now);
    }
    fire
}

/// Counts `count` fire times the misfire rule skipped, the latest
/// `last`, and says so.
fn missed(name: &ScheduleName, entry: &mut Entry, count: u64, last: Millis, now: Millis) {
    entry.state.skipped += count;
    entry.state.remember(Fire {
        fire_time: last,
        handled_at: now,
        result: FireResult::Misfired { count },
    });
    tracing::info!(
        schedule = %name,
        missed = count,
        rule = entry.spec.misfire.name(),
        "schedule missed fire times"
    );
}
