//! The wall clock schedules fire by, behind a trait so tests can set and
//! step it.

use std::time::SystemTime;

use super::trigger::Millis;

/// Wall-clock time, in milliseconds since the Unix epoch.
pub trait WallClock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Millis;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> Millis {
        match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since) => since.as_millis() as Millis,
            Err(before) => -(before.duration().as_millis() as Millis),
        }
    }
}
