//! When a schedule fires: a cron expression read in a time zone, or a
//! fixed interval from an anchor.
//!
//! Cron expressions are parsed and searched by `croner`, which has the
//! Quartz extensions (`L`, `W`, `#`), optional seconds and years, and the
//! `@hourly`-style nicknames. What it does at daylight-saving changes is
//! what jobq promises: a wall-clock time that does not exist (spring
//! forward) fires once at the first valid instant after the gap, and one
//! that happens twice (fall back) fires once, at its first occurrence.
//! [`Trigger::next_after`] also never returns a time at or before the
//! one it was given, which croner alone does inside a repeated hour.
//!
//! Fire times are whole milliseconds since the Unix epoch, in UTC.

use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// The shortest interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest interval: a year and a day.
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 24 * 3600);

/// When a schedule fires.
#[derive(Clone, Debug)]
pub enum Trigger {
    /// A cron expression, in the schedule's time zone.
    Cron(CronTrigger),
    /// Every so long, from the schedule's anchor.
    Every(Duration),
}

/// A cron expression that parses. Only its text is kept: the parse comes
/// from [`PARSED`] when needed.
#[derive(Clone, Debug)]
pub struct CronTrigger {
    expression: String,
}

/// Parsed expressions, shared by every schedule that uses one. A parse
/// takes about 5 KiB (croner keeps a byte for each year it can match), so
/// a hundred thousand schedules holding their own would take half a
/// gigabyte; most share a few expressions. Bounded, least recently used
/// out; a miss parses again, which takes about 13 µs. A std lock, held for
/// one lookup or insert.
static PARSED: LazyLock<Mutex<lru::LruCache<String, Arc<Cron>>>> = LazyLock::new(|| {
    Mutex::new(lru::LruCache::new(
        NonZeroUsize::new(PARSED_KEPT).unwrap_or(NonZeroUsize::MIN),
    ))
});
/// Parsed expressions kept: at most about 20 MiB.
const PARSED_KEPT: usize = 4096;

fn parsed_cache() -> std::sync::MutexGuard<'static, lru::LruCache<String, Arc<Cron>>> {
    PARSED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The parse of an expression that parsed before.
fn parsed(expression: &str) -> Option<Arc<Cron>> {
    if let Some(cron) = parsed_cache().get(expression) {
        return Some(Arc::clone(cron));
    }
    let cron = Arc::new(parser().parse(expression).ok()?);
    parsed_cache().put(expression.to_string(), Arc::clone(&cron));
    Some(cron)
}

impl PartialEq for Trigger {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Cron(a), Self::Cron(b)) => a.expression == b.expression,
            (Self::Every(a), Self::Every(b)) => a == b,
            _ => false,
        }
    }
}

/// Why a cron expression or interval was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTrigger {
    /// The expression has too few or too many fields.
    #[error(
        "has {0} fields; a cron expression has 5 (minute hour day-of-month month day-of-week), 6 (seconds first) or 7 (a year last), or is a nickname such as @hourly"
    )]
    FieldCount(usize),
    /// One field does not parse.
    #[error("field {position} ({name}) {text:?}: {why}")]
    Field {
        /// Where the field is, from 1.
        position: usize,
        /// What the field means.
        name: &'static str,
        /// The field as given.
        text: String,
        /// What the parser said.
        why: String,
    },
    /// The fields parse but no time ever matches them.
    #[error("matches no time (for example 30 February): {0}")]
    NeverMatches(String),
    /// The expression does not parse, and no single field is to blame.
    #[error("{0}")]
    Other(String),
    /// An interval out of range.
    #[error("is {0:?}; an interval is whole seconds from 1s to 366 days")]
    Interval(Duration),
}

impl Trigger {
    /// Parses a cron expression.
    pub fn cron(expression: &str) -> Result<Self, InvalidTrigger> {
        let expression = expression.trim();
        let cron = parser()
            .parse(expression)
            .map_err(|error| blame(expression, error))?;
        // A pattern that never matches (30 February) is only found by
        // searching; searching now gives the error before it is stored.
        let now = Utc::now();
        if let Err(error) = cron.find_next_occurrence(&now, false) {
            return Err(InvalidTrigger::NeverMatches(error.to_string()));
        }
        parsed_cache().put(expression.to_string(), Arc::new(cron));
        Ok(Self::Cron(CronTrigger {
            expression: expression.to_string(),
        }))
    }

    /// Checks an interval: whole seconds from [`MIN_INTERVAL`] to
    /// [`MAX_INTERVAL`].
    pub fn every(interval: Duration) -> Result<Self, InvalidTrigger> {
        if interval < MIN_INTERVAL || interval > MAX_INTERVAL || interval.subsec_nanos() != 0 {
            return Err(InvalidTrigger::Interval(interval));
        }
        Ok(Self::Every(interval))
    }

    /// The cron expression as given, if this is one.
    pub fn expression(&self) -> Option<&str> {
        match self {
            Self::Cron(c) => Some(&c.expression),
            Self::Every(_) => None,
        }
    }

    /// The first fire time strictly after `after`. `anchor` is where an
    /// interval counts from (its first fire is one interval after it);
    /// a cron expression reads its fields in `zone`. `None` when no time
    /// matches before the end of what the calendar search reaches.
    pub fn next_after(&self, after: Millis, zone: Tz, anchor: Millis) -> Option<Millis> {
        match self {
            Self::Every(interval) => {
                let step = i64::try_from(interval.as_millis()).ok()?;
                if after < anchor {
                    return anchor.checked_add(step);
                }
                let steps = (after - anchor) / step + 1;
                anchor.checked_add(steps.checked_mul(step)?)
            }
            Self::Cron(c) => c.next_after(after, zone),
        }
    }
}

impl CronTrigger {
    fn next_after(&self, after: Millis, zone: Tz) -> Option<Millis> {
        let cron = parsed(&self.expression)?;
        // Cron times are whole seconds: search from the second `after`
        // falls in.
        let mut cursor = utc(after.div_euclid(1000) * 1000)?.with_timezone(&zone);
        // Inside a repeated (fall-back) hour croner answers with a local
        // time's first occurrence even when the cursor is in the second:
        // that answer is behind `after`, and the time already fired then.
        // Searching on from it walks forward through the hour's matches
        // (croner steps at least a second of local time per search), so
        // the loop ends within the 3600 seconds such an hour holds.
        for _ in 0..=3600 {
            let next = cron.find_next_occurrence(&cursor, false).ok()?;
            if next.timestamp_millis() > after {
                return Some(next.timestamp_millis());
            }
            cursor = next;
        }
        None
    }

    /// Whether `at` matches the expression, read in `zone`.
    pub fn matches(&self, at: Millis, zone: Tz) -> bool {
        let Some(cron) = parsed(&self.expression) else {
            return false;
        };
        utc(at).is_some_and(|t| {
            cron.is_time_matching(&t.with_timezone(&zone))
                .unwrap_or(false)
        })
    }
}

/// `millis` as a UTC time, if in chrono's range.
pub fn utc(millis: Millis) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
}

/// A fire time as RFC 3339, in UTC with milliseconds.
pub fn rfc3339(millis: Millis) -> String {
    utc(millis).map_or_else(
        || millis.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// The parser jobq reads expressions with: seconds and years optional,
/// POSIX weekdays (0 or 7 is Sunday), day-of-month and day-of-week ORed as
/// in Vixie cron.
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Optional)
        .build()
}

/// A cron expression's fields: name and the values each takes.
const FIELDS: [(&str, &str); 7] = [
    ("seconds", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31, L, or a day with W such as 15W"),
    ("month", "1-12 or JAN-DEC"),
    (
        "day of week",
        "0-7 or SUN-SAT (0 and 7 are Sunday), with L or # such as 5L, 2#1",
    ),
    ("year", "1-5000"),
];

/// The fields of an expression with `count` fields: 5, 6 or 7.
fn fields(count: usize) -> Option<&'static [(&'static str, &'static str)]> {
    match count {
        5 => Some(&FIELDS[1..6]),
        6 => Some(&FIELDS[..6]),
        7 => Some(&FIELDS[..]),
        _ => None,
    }
}

/// Turns croner's error into one that says which field is wrong: each
/// field is parsed alone, the others replaced by `*`, and the first that
/// fails is named.
fn blame(expression: &str, error: croner::errors::CronError) -> InvalidTrigger {
    if expression.starts_with('@') {
        return InvalidTrigger::Other(format!(
            "{error}; the nicknames are @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly"
        ));
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let Some(known) = self::fields(fields.len()) else {
        return InvalidTrigger::FieldCount(fields.len());
    };
    for (index, field) in fields.iter().enumerate() {
        let probe: Vec<&str> = (0..fields.len())
            .map(|i| if i == index { *field } else { "*" })
            .collect();
        if let Err(alone) = parser().parse(&probe.join(" ")) {
            let (name, values) = known[index];
            return InvalidTrigger::Field {
                position: index + 1,
                name,
                text: (*field).to_string(),
                why: format!(
                    "{}; values are {values}, with lists (,), ranges (-) and steps (/)",
                    plain(&alone)
                ),
            };
        }
    }
    InvalidTrigger::Other(plain(&error))
}

/// croner's message without its prefix, its first letter in lower case,
/// to follow a colon.
fn plain(error: &croner::errors::CronError) -> String {
    let text = error.to_string();
    let text = ["Component error: ", "Invalid pattern: "]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
        .unwrap_or(&text)
        .trim_end_matches('.');
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}
