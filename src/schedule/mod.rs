//! Recurring jobs, as a pure core: schedules, when they fire, and what a
//! fire that came late does.
//!
//! Nothing here knows about gRPC, tasks or the journal. Time is wall-clock
//! milliseconds passed in on every call, so tests move it by hand; each
//! engine (`engine::memory::schedules`, `engine::postgres::schedules`)
//! runs one timer for the earliest due schedule and enqueues what
//! [`ScheduleBook::take_due`] hands out.
//!
//! - [`trigger`]: cron expressions in a time zone, and fixed intervals;
//! - [`spec`]: what a schedule is, and its misfire and overlap rules;
//! - [`book`]: every schedule, by name and by due time;
//! - [`fire`]: what is handed out, and what is kept of each fire;
//! - [`clock`]: the wall clock, which tests replace.

pub mod book;
pub mod clock;
pub mod fire;
pub mod spec;
pub mod trigger;

pub use book::{Entry, ON_TIME_MILLIS, ScheduleBook, Upserted, jitter_offset};
pub use clock::{SystemClock, WallClock};
pub use fire::{Fire, FireResult, Firing, RECENT_FIRES, ScheduleState, UPCOMING_SHOWN};
pub use spec::{
    FIRE_TIME_KEY, InvalidSpec, JobTemplate, MAX_CATCH_UP, MAX_JITTER, Misfire, Overlap,
    SCHEDULE_KEY, SCHEDULE_OVERHEAD_BYTES, ScheduleSpec, TRIGGERED_KEY, fire_key,
};
pub use trigger::{InvalidTrigger, Millis, Trigger, rfc3339};

#[cfg(test)]
mod tests;
