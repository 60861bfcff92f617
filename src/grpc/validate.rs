//! Request validation for both services, JobQueue and Admin.
//!
//! Every check of a client's input lives here, and every failure names the
//! field that was wrong and what would be right, quoting at most a short
//! prefix of what the client sent.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use super::pb;
use crate::engine::{PurgeTarget, QueueUpdate};
use crate::queue::{JobId, JobState, LeaseToken, NewJob, QueueName};

pub(crate) use jobq_proto::limits::{
    MAX_ACK_TOKENS, MAX_ATTEMPTS_LIMIT, MAX_BATCH_JOBS, MAX_DELAY, MAX_LEASE_JOBS,
    MAX_METADATA_ENTRIES, MAX_METADATA_KEY_BYTES, MAX_TEXT_BYTES, MIN_LEASE,
};

/// Most items on one page.
const MAX_PAGE: u32 = 1000;
/// Items on a page when the request names no size.
const DEFAULT_PAGE: u32 = 100;
/// Most job ids one redrive names.
const MAX_REDRIVE_IDS: usize = 1000;

/// A request field that is missing or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidField {
    /// The field's path in the request, e.g. `jobs[3].payload`.
    pub field: String,
    /// What is wrong and what would be right.
    pub problem: String,
}

pub(super) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> InvalidField {
    InvalidField {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The server's limits on requests.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest payload, in bytes.
    pub max_payload_bytes: usize,
    /// Longest lease or extension.
    pub max_lease_duration: Duration,
    /// Longest long-poll wait.
    pub max_lease_wait: Duration,
    /// Longest wait for room on enqueue.
    pub max_enqueue_wait: Duration,
    /// Largest request message, in bytes.
    pub max_request_bytes: usize,
}

/// Checks a queue name.
pub(super) fn queue_name(name: &str) -> Result<QueueName, InvalidField> {
    owned_queue_name(name.to_string())
}

/// Checks a queue name the request gives up, keeping its string: the
/// enqueue paths, where a copy per job shows.
pub(super) fn owned_queue_name(name: String) -> Result<QueueName, InvalidField> {
    QueueName::new(name).map_err(|e| invalid("queue", e.to_string()))
}

/// Checks a lease token's form (not whether it is live).
pub(super) fn lease_token(field: &str, token: &str) -> Result<LeaseToken, InvalidField> {
    if token.is_empty() {
        return Err(invalid(field, "is required"));
    }
    token.parse().map_err(|e| invalid(field, format!("{e}")))
}

/// Checks the tokens of an ack: 1 to 1000, all distinct.
pub(super) fn ack_tokens(tokens: &[String]) -> Result<Vec<LeaseToken>, InvalidField> {
    if tokens.is_empty() || tokens.len() > MAX_ACK_TOKENS {
        return Err(invalid(
            "lease_tokens",
            format!("has {} tokens; send 1 to {MAX_ACK_TOKENS}", tokens.len()),
        ));
    }
    let mut seen = HashSet::with_capacity(tokens.len());
    tokens
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let field = format!("lease_tokens[{i}]");
            let token = lease_token(&field, text)?;
            if !seen.insert(token) {
                return Err(invalid(field, "repeats an earlier token"));
            }
            Ok(token)
        })
        .collect()
}

/// Converts a protobuf duration, refusing negative or malformed ones.
pub(super) fn duration(field: &str, d: prost_types::Duration) -> Result<Duration, InvalidField> {
    Duration::try_from(d).map_err(|_| {
        invalid(
            field,
            format!(
                "{}s {}ns is not a valid non-negative duration",
                d.seconds, d.nanos
            ),
        )
    })
}

impl Limits {
    /// Checks a job and converts it for the core.
    pub(super) fn new_job(&self, field: &str, job: pb::NewJob) -> Result<NewJob, InvalidField> {
        if job.payload.len() > self.max_payload_bytes {
            return Err(invalid(
                format!("{field}.payload"),
                format!(
                    "is {} bytes; the limit is {}",
                    job.payload.len(),
                    self.max_payload_bytes
                ),
            ));
        }
        let metadata = metadata(field, job.metadata)?;
        let delay = match job.schedule {
            None => None,
            Some(pb::new_job::Schedule::Delay(d)) => {
                let field = format!("{field}.delay");
                let delay = duration(&field, d)?;
                if delay > MAX_DELAY {
                    return Err(invalid(field, "is more than 365 days"));
                }
                Some(delay)
            }
            Some(pb::new_job::Schedule::NotBefore(ts)) => {
                let field = format!("{field}.not_before");
                let at = SystemTime::try_from(ts)
                    .map_err(|_| invalid(&field, "is not a valid timestamp"))?;
                let ahead = at
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                if ahead > MAX_DELAY {
                    return Err(invalid(field, "is more than 365 days ahead"));
                }
                Some(ahead)
            }
        };
        let max_attempts = match job.max_attempts {
            0 => None,
            n if n <= MAX_ATTEMPTS_LIMIT => Some(n),
            n => {
                return Err(invalid(
                    format!("{field}.max_attempts"),
                    format!("is {n}; use 0 for the queue default or 1 to {MAX_ATTEMPTS_LIMIT}"),
                ));
            }
        };
        if job.idempotency_key.len() > MAX_METADATA_KEY_BYTES {
            return Err(invalid(
                format!("{field}.idempotency_key"),
                format!(
                    "is {} bytes; the limit is {MAX_METADATA_KEY_BYTES}",
                    job.idempotency_key.len()
                ),
            ));
        }
        Ok(NewJob {
            // A payload decoded from a request shares the request's whole
            // buffer; its own copy keeps a stored job from pinning the rest
            // of a batch (and keeps the memory budget true).
            payload: bytes::Bytes::copy_from_slice(&job.payload),
            metadata,
            priority: job.priority,
            delay,
            max_attempts,
            idempotency_key: (!job.idempotency_key.is_empty()).then_some(job.idempotency_key),
        })
    }

    /// Checks a batch of jobs.
    pub(super) fn new_jobs(&self, jobs: Vec<pb::NewJob>) -> Result<Vec<NewJob>, InvalidField> {
        if jobs.is_empty() || jobs.len() > MAX_BATCH_JOBS {
            return Err(invalid(
                "jobs",
                format!("has {} jobs; send 1 to {MAX_BATCH_JOBS}", jobs.len()),
            ));
        }
        jobs.into_iter()
            .enumerate()
            .map(|(i, job)| self.new_job(&format!("jobs[{i}]"), job))
            .collect()
    }

    /// Checks a lease length; `None` when unset.
    pub(super) fn lease_duration(
        &self,
        field: &str,
        d: Option<prost_types::Duration>,
    ) -> Result<Option<Duration>, InvalidField> {
        let Some(d) = d else {
            return Ok(None);
        };
        let d = duration(field, d)?;
        if d < MIN_LEASE || d > self.max_lease_duration {
            return Err(invalid(
                field,
                format!(
                    "is {d:?}; it must be from {MIN_LEASE:?} to {:?}",
                    self.max_lease_duration
                ),
            ));
        }
        Ok(Some(d))
    }

    /// Checks a long-poll wait; unset is zero.
    pub(super) fn lease_wait(
        &self,
        d: Option<prost_types::Duration>,
    ) -> Result<Duration, InvalidField> {
        let Some(d) = d else {
            return Ok(Duration::ZERO);
        };
        let d = duration("wait_time", d)?;
        if d > self.max_lease_wait {
            return Err(invalid(
                "wait_time",
                format!("is {d:?}; the limit is {:?}", self.max_lease_wait),
            ));
        }
        Ok(d)
    }

    /// How long an enqueue waits for room: `None` unless asked, else the
    /// server's limit or the call's deadline, whichever is sooner. Part of
    /// the deadline is kept back (a twentieth, at least 100 ms, at most
    /// half) so that the refusal, with its reason, reaches the client
    /// before the client gives up on its own.
    pub(super) fn enqueue_wait(
        &self,
        wait_for_room: bool,
        deadline: Option<Duration>,
    ) -> Option<Duration> {
        wait_for_room.then(|| {
            deadline.map_or(self.max_enqueue_wait, |d| {
                let kept = (d / 20).max(Duration::from_millis(100)).min(d / 2);
                (d - kept).min(self.max_enqueue_wait)
            })
        })
    }
}

/// Checks a lease's `max_jobs`: 0 means 1.
pub(super) fn max_jobs(n: u32) -> Result<usize, InvalidField> {
    match n {
        0 => Ok(1),
        n if n <= MAX_LEASE_JOBS => Ok(n as usize),
        n => Err(invalid(
            "max_jobs",
            format!("is {n}; it must be from 1 to {MAX_LEASE_JOBS}"),
        )),
    }
}

/// A nack's fields, checked: the unary `Nack` passes `prefix` `""`, the
/// lease stream `"nack."`, so each error names the field as the caller
/// sent it.
pub(super) fn nack_request(
    prefix: &str,
    retry_delay: Option<prost_types::Duration>,
    dead_letter: bool,
    reason: String,
) -> Result<crate::queue::NackRequest, InvalidField> {
    let field = |name: &str| format!("{prefix}{name}");
    let retry_delay = match retry_delay {
        None => None,
        Some(_) if dead_letter => {
            return Err(invalid(
                field("retry_delay"),
                "must be unset when dead_letter is true",
            ));
        }
        Some(d) => {
            let d = duration(&field("retry_delay"), d)?;
            if d > MAX_DELAY {
                return Err(invalid(field("retry_delay"), "is more than 365 days"));
            }
            Some(d)
        }
    };
    if reason.len() > MAX_TEXT_BYTES {
        return Err(invalid(
            field("reason"),
            format!("is {} bytes; the limit is {MAX_TEXT_BYTES}", reason.len()),
        ));
    }
    Ok(crate::queue::NackRequest {
        retry_delay,
        dead_letter,
        reason,
    })
}

fn metadata(
    field: &str,
    metadata: std::collections::HashMap<String, String>,
) -> Result<Vec<(String, String)>, InvalidField> {
    // Named only when it is wrong: most jobs pass.
    let field = || format!("{field}.metadata");
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(invalid(
            field(),
            format!(
                "has {} entries; the limit is {MAX_METADATA_ENTRIES}",
                metadata.len()
            ),
        ));
    }
    let mut entries: Vec<_> = metadata.into_iter().collect();
    entries.sort_unstable();
    for (key, value) in &entries {
        if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
            return Err(invalid(
                field(),
                format!(
                    "key {:?} is {} bytes; keys must be 1 to {MAX_METADATA_KEY_BYTES} bytes",
                    shown(key),
                    key.len()
                ),
            ));
        }
        if value.len() > MAX_TEXT_BYTES {
            return Err(invalid(
                field(),
                format!(
                    "value of {:?} is {} bytes; the limit is {MAX_TEXT_BYTES}",
                    shown(key),
                    value.len()
                ),
            ));
        }
    }
    Ok(entries)
}

/// At most the first 64 characters of a client's string, for an error
/// message that must not echo a huge input back.
pub(super) fn shown(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// The deadline a client set with the `grpc-timeout` header, if any.
pub(super) fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
    let value = metadata.as_ref().get(&GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A page size: 0 means the default.
pub(super) fn page_size(size: u32) -> Result<usize, InvalidField> {
    match size {
        0 => Ok(DEFAULT_PAGE as usize),
        n if n <= MAX_PAGE => Ok(n as usize),
        n => Err(invalid(
            "page_size",
            format!("is {n}; it must be from 1 to {MAX_PAGE}"),
        )),
    }
}

/// A page token that this server did not hand out.
pub(super) fn bad_page_token(token: &str) -> InvalidField {
    invalid(
        "page_token",
        format!("{:?} is not a token this list returned", shown(token)),
    )
}

/// A ListQueues page token: the last queue name of the page before.
pub(super) fn queue_page_token(token: &str) -> Result<Option<QueueName>, InvalidField> {
    match token {
        "" => Ok(None),
        token => QueueName::new(token)
            .map(Some)
            .map_err(|_| bad_page_token(token)),
    }
}

/// A ListJobs page token: the last job id of the page before.
pub(super) fn job_page_token(token: &str) -> Result<Option<JobId>, InvalidField> {
    match token {
        "" => Ok(None),
        token => token
            .parse::<JobId>()
            .map(Some)
            .map_err(|_| bad_page_token(token)),
    }
}

/// A job id.
pub(super) fn job_id(field: &str, id: &str) -> Result<JobId, InvalidField> {
    id.parse::<JobId>().map_err(|_| {
        invalid(
            field,
            format!("{:?} is not a job id (a 26-character ULID)", shown(id)),
        )
    })
}

/// A job named by id, and by queue when the request gives one.
pub(super) fn job_ref(queue: &str, id: &str) -> Result<(Option<QueueName>, JobId), InvalidField> {
    let queue = match queue {
        "" => None,
        name => Some(queue_name(name)?),
    };
    Ok((queue, job_id("job_id", id)?))
}

/// The jobs a redrive names: `None` for all of them.
pub(super) fn redrive_ids(all: bool, ids: &[String]) -> Result<Option<Vec<JobId>>, InvalidField> {
    match (all, ids.len()) {
        (true, 0) => Ok(None),
        (true, _) => Err(invalid("job_ids", "must be empty when all is true")),
        (false, 1..=MAX_REDRIVE_IDS) => ids
            .iter()
            .enumerate()
            .map(|(i, id)| job_id(&format!("job_ids[{i}]"), id))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        (false, n) => Err(invalid(
            "job_ids",
            format!("has {n} ids; send 1 to {MAX_REDRIVE_IDS}, or set all"),
        )),
    }
}

/// Which jobs a purge removes.
pub(super) fn purge_target(target: pb::PurgeTarget) -> Result<PurgeTarget, InvalidField> {
    match target {
        pb::PurgeTarget::Ready => Ok(PurgeTarget::Ready),
        pb::PurgeTarget::Dead => Ok(PurgeTarget::Dead),
        pb::PurgeTarget::Unspecified => Err(invalid(
            "target",
            "is required: PURGE_TARGET_READY or PURGE_TARGET_DEAD",
        )),
    }
}

/// A ListJobs state filter: unspecified means any state.
pub(super) fn job_state_filter(state: i32) -> Result<Option<JobState>, InvalidField> {
    let state = pb::JobState::try_from(state)
        .map_err(|_| invalid("state", format!("{state} is not a JobState")))?;
    Ok(match state {
        pb::JobState::Unspecified => None,
        pb::JobState::Ready => Some(JobState::Ready),
        pb::JobState::Scheduled => Some(JobState::Scheduled),
        pb::JobState::Leased => Some(JobState::Leased),
        pb::JobState::Dead => Some(JobState::Dead),
        pb::JobState::Acked => Some(JobState::Acked),
        pb::JobState::Cancelled => Some(JobState::Cancelled),
    })
}

impl Limits {
    /// Checks each setting a queue update names. (A base above the cap
    /// once merged with the current settings is the engine's to refuse.)
    pub(super) fn queue_update(
        &self,
        request: &pb::UpdateQueueRequest,
    ) -> Result<QueueUpdate, InvalidField> {
        let parse =
            |field, d: Option<prost_types::Duration>| d.map(|d| duration(field, d)).transpose();
        let update = QueueUpdate {
            capacity: request.capacity.map(|c| c as usize),
            lease_duration: parse("lease_duration", request.lease_duration)?,
            max_attempts: request.max_attempts,
            backoff_base: parse("backoff_base", request.backoff_base)?,
            backoff_cap: parse("backoff_cap", request.backoff_cap)?,
            paused: request.paused,
        };
        update
            .check(self.max_lease_duration)
            .map_err(|e| invalid(e.field, e.problem))?;
        Ok(update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_payload_bytes: 10,
            max_lease_duration: Duration::from_secs(60),
            max_lease_wait: Duration::from_secs(20),
            max_enqueue_wait: Duration::from_secs(30),
            max_request_bytes: 1 << 20,
        }
    }

    #[test]
    fn oversized_payload_names_the_field_and_limit() {
        let job = pb::NewJob {
            payload: vec![0u8; 11].into(),
            ..pb::NewJob::default()
        };
        let err = limits().new_jobs(vec![pb::NewJob::default(), job]);
        assert_eq!(
            err.expect_err("too big").to_string(),
            "jobs[1].payload: is 11 bytes; the limit is 10"
        );
    }

    #[test]
    fn lease_duration_must_be_positive_and_bounded() {
        let l = limits();
        let secs = |s| {
            Some(prost_types::Duration {
                seconds: s,
                nanos: 0,
            })
        };
        assert_eq!(l.lease_duration("d", None), Ok(None));
        assert!(l.lease_duration("d", secs(0)).is_err());
        assert!(l.lease_duration("d", secs(-1)).is_err());
        assert!(l.lease_duration("d", secs(61)).is_err());
        assert_eq!(
            l.lease_duration("d", secs(60)),
            Ok(Some(Duration::from_secs(60)))
        );
    }

    #[test]
    fn ack_tokens_must_be_distinct_and_well_formed() {
        let token = "0".repeat(48);
        assert!(ack_tokens(&[]).is_err());
        assert!(ack_tokens(&[token.clone(), token.clone()]).is_err());
        assert!(ack_tokens(&["nope".into()]).is_err());
        assert_eq!(ack_tokens(&[token]).map(|t| t.len()), Ok(1));
    }

    #[test]
    fn enqueue_wait_takes_the_sooner_of_deadline_and_limit() {
        let l = limits();
        assert_eq!(l.enqueue_wait(false, Some(Duration::from_secs(5))), None);
        assert_eq!(l.enqueue_wait(true, None), Some(Duration::from_secs(30)));
        assert_eq!(
            l.enqueue_wait(true, Some(Duration::from_secs(20))),
            Some(Duration::from_secs(19))
        );
        let ms = Duration::from_millis;
        assert_eq!(l.enqueue_wait(true, Some(ms(1000))), Some(ms(900)));
        assert_eq!(l.enqueue_wait(true, Some(ms(120))), Some(ms(60)));
    }

    #[test]
    fn grpc_timeout_header_parses_every_unit() {
        let mut m = tonic::metadata::MetadataMap::new();
        for (text, want) in [
            ("2H", Duration::from_secs(7200)),
            ("3M", Duration::from_secs(180)),
            ("4S", Duration::from_secs(4)),
            ("500m", Duration::from_millis(500)),
            ("7u", Duration::from_micros(7)),
            ("9n", Duration::from_nanos(9)),
        ] {
            m.insert("grpc-timeout", text.parse().expect("ascii"));
            assert_eq!(grpc_timeout(&m), Some(want), "{text}");
        }
        m.insert("grpc-timeout", "x".parse().expect("ascii"));
        assert_eq!(grpc_timeout(&m), None);
    }

    #[test]
    fn dead_letter_with_a_delay_is_contradictory() {
        let delay = Some(prost_types::Duration::default());
        assert_eq!(
            nack_request("", delay, true, String::new())
                .expect_err("both")
                .field,
            "retry_delay"
        );
        assert_eq!(
            nack_request("nack.", delay, true, String::new())
                .expect_err("both on the stream")
                .field,
            "nack.retry_delay"
        );
    }
}

/// Property tests over the validators: arbitrary jobs are accepted exactly
/// when a plain model of the rules says so, with short error messages
/// naming the field, and arbitrary bytes decoded as any request never
/// panic the decoder or a validator. Failing cases are kept in
/// `proptest-regressions/` and replayed first on every run.
#[cfg(test)]
mod fuzz {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    const DAY: i64 = 24 * 3600;
    const PAYLOAD_LIMIT: usize = 64;

    fn limits() -> Limits {
        Limits {
            max_payload_bytes: PAYLOAD_LIMIT,
            max_lease_duration: Duration::from_secs(60),
            max_lease_wait: Duration::from_secs(20),
            max_enqueue_wait: Duration::from_secs(30),
            max_request_bytes: 1 << 20,
        }
    }

    fn text(lengths: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
        (lengths, prop_oneof![Just('a'), Just('é'), Just('\u{0}')])
            .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect())
    }

    fn metadata() -> impl Strategy<Value = HashMap<String, String>> {
        (
            0..=(MAX_METADATA_ENTRIES + 2),
            prop_oneof![
                Just(None),
                text(0..=0).prop_map(Some),
                text(250..=260).prop_map(Some)
            ],
            prop_oneof![text(0..=8), text(4090..=4100)],
        )
            .prop_map(|(n, odd_key, value)| {
                let mut m: HashMap<String, String> =
                    (0..n).map(|i| (format!("k{i}"), "v".to_string())).collect();
                if let Some(key) = odd_key {
                    m.insert(key, value);
                }
                m
            })
    }

    fn schedule() -> impl Strategy<Value = Option<pb::new_job::Schedule>> {
        let seconds = prop_oneof![
            -2..=2_i64,
            Just(365 * DAY),
            Just(365 * DAY - 1),
            (360 * DAY)..=(370 * DAY),
            any::<i64>()
        ];
        let nanos = prop_oneof![
            Just(-1),
            Just(0),
            Just(999_999_999),
            Just(1_000_000_000),
            any::<i32>()
        ];
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        prop_oneof![
            Just(None),
            (seconds, nanos).prop_map(|(seconds, nanos)| Some(pb::new_job::Schedule::Delay(
                prost_types::Duration { seconds, nanos }
            ))),
            // Whole days plus an hour off now: never on the 365-day edge,
            // so the moving clock cannot change the answer.
            (-400..=400_i64, 0..1_000_000_000_i32).prop_map(move |(days, nanos)| Some(
                pb::new_job::Schedule::NotBefore(prost_types::Timestamp {
                    seconds: now + days * DAY + 3600,
                    nanos,
                })
            )),
        ]
    }

    fn new_job() -> impl Strategy<Value = pb::NewJob> {
        (
            0..=(PAYLOAD_LIMIT + 2),
            metadata(),
            schedule(),
            prop_oneof![
                Just(0_u32),
                Just(MAX_ATTEMPTS_LIMIT),
                Just(MAX_ATTEMPTS_LIMIT + 1),
                0..=1001_u32,
                any::<u32>()
            ],
            text(0..=4).boxed().prop_union(text(250..=260).boxed()),
            any::<i32>(),
        )
            .prop_map(
                |(payload, metadata, schedule, max_attempts, key, priority)| pb::NewJob {
                    payload: vec![1_u8; payload].into(),
                    metadata,
                    priority,
                    schedule,
                    max_attempts,
                    idempotency_key: key,
                },
            )
    }

    /// The rules, stated plainly.
    fn valid(job: &pb::NewJob) -> bool {
        let max_delay = i128::from(365 * DAY) * 1_000_000_000;
        let schedule_ok = match &job.schedule {
            None => true,
            Some(pb::new_job::Schedule::Delay(d)) => {
                let total = i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos);
                (0..=max_delay).contains(&total)
            }
            Some(pb::new_job::Schedule::NotBefore(t)) => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                (0..1_000_000_000).contains(&t.nanos) && t.seconds - now <= 365 * DAY
            }
        };
        job.payload.len() <= PAYLOAD_LIMIT
            && job.metadata.len() <= MAX_METADATA_ENTRIES
            && job.metadata.iter().all(|(k, v)| {
                !k.is_empty() && k.len() <= MAX_METADATA_KEY_BYTES && v.len() <= MAX_TEXT_BYTES
            })
            && schedule_ok
            && job.max_attempts <= MAX_ATTEMPTS_LIMIT
            && job.idempotency_key.len() <= MAX_METADATA_KEY_BYTES
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn a_job_is_accepted_exactly_when_the_rules_allow_it(job in new_job()) {
            let expected = valid(&job);
            match limits().new_job("job", job.clone()) {
                Ok(_) => prop_assert!(expected, "accepted {job:?}"),
                Err(e) => {
                    prop_assert!(!expected, "refused: {e}");
                    let message = e.to_string();
                    prop_assert!(message.starts_with("job."), "{message}");
                    prop_assert!(message.len() < 400, "a {}-byte message", message.len());
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_a_decoder_or_validator(
            bytes in proptest::collection::vec(any::<u8>(), 0..600)
        ) {
            let limits = limits();
            if let Ok(r) = pb::EnqueueRequest::decode(bytes.as_slice()) {
                let _ = queue_name(&r.queue);
                if let Some(job) = r.job {
                    let _ = limits.new_job("job", job);
                }
            }
            if let Ok(r) = pb::BatchEnqueueRequest::decode(bytes.as_slice()) {
                let _ = limits.new_jobs(r.jobs);
            }
            if let Ok(r) = pb::StreamEnqueueRequest::decode(bytes.as_slice()) {
                let _ = queue_name(&r.queue);
                if let Some(job) = r.job {
                    let _ = limits.new_job("job", job);
                }
            }
            if let Ok(r) = pb::AckRequest::decode(bytes.as_slice()) {
                let _ = ack_tokens(&r.lease_tokens);
            }
            if let Ok(r) = pb::NackRequest::decode(bytes.as_slice()) {
                let _ = lease_token("lease_token", &r.lease_token);
                let _ = nack_request("", r.retry_delay, r.dead_letter, r.reason);
            }
            if let Ok(r) = pb::LeaseRequest::decode(bytes.as_slice()) {
                let _ = max_jobs(r.max_jobs);
                let _ = limits.lease_duration("lease_duration", r.lease_duration);
                let _ = limits.lease_wait(r.wait_time);
            }
            if let Ok(r) = pb::StreamLeasesRequest::decode(bytes.as_slice())
                && let Some(pb::stream_leases_request::Kind::Extend(e)) = r.kind
            {
                let _ = limits.lease_duration("extend.lease_duration", e.lease_duration);
            }
        }
    }
}
