//! Bearer-token authentication with roles.
//!
//! Each token has one role: `producer` may enqueue, `worker` may lease,
//! ack, nack, extend and stream leases, `viewer` may read what the Admin
//! and Schedules services tell (and the web dashboard, without its
//! buttons), `admin` may do everything, including the Admin service.
//! Health and reflection stay open, for probes and tools. A request without a valid token gets UNAUTHENTICATED;
//! a valid token of the wrong role gets PERMISSION_DENIED. Tokens are
//! compared in constant time and never logged.

use std::fmt;
use std::future::{Ready, ready};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use subtle::ConstantTimeEq;
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

/// The variable that may hold tokens as `role:token,role:token`.
pub const TOKENS_ENV: &str = "JOBQ_AUTH_TOKENS";

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Enqueue jobs.
    Producer,
    /// Lease jobs and settle their leases.
    Worker,
    /// Read queues, jobs and schedules, and change nothing.
    Viewer,
    /// Everything, including the Admin service.
    Admin,
}

impl Role {
    /// The role a tokens file names so.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "producer" => Some(Self::Producer),
            "worker" => Some(Self::Worker),
            "viewer" => Some(Self::Viewer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// How tokens files and messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Worker => "worker",
            Self::Viewer => "viewer",
            Self::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may: admin may do
    /// everything, viewer only reads, the others only their own calls.
    pub fn may(self, needed: Role) -> bool {
        self == needed || self == Role::Admin
    }
}

/// The role a method needs, by its gRPC path; `None` for open methods.
fn required_role(path: &str) -> Option<Role> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    match service {
        "grpc.health.v1.Health"
        | "grpc.reflection.v1.ServerReflection"
        | "grpc.reflection.v1alpha.ServerReflection" => None,
        "jobq.v1.JobQueue" => match method {
            "Enqueue" | "BatchEnqueue" | "StreamEnqueue" => Some(Role::Producer),
            "Lease" | "Ack" | "Nack" | "ExtendLease" | "StreamLeases" => Some(Role::Worker),
            // A method added later is closed until given a role here.
            _ => Some(Role::Admin),
        },
        "jobq.v1.Admin" | "jobq.v1.Schedules" => match method {
            "ListQueues" | "GetQueue" | "ListJobs" | "GetJob" | "ListSchedules" | "GetSchedule" => {
                Some(Role::Viewer)
            }
            _ => Some(Role::Admin),
        },
        _ => Some(Role::Admin),
    }
}

/// Why the tokens could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InvalidTokens {
    /// The file could not be read.
    #[error("cannot read the tokens file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// An entry is not `role token` (or `role:token`) with a known role.
    #[error("{source_name}, entry {entry}: {problem}")]
    Entry {
        /// The file or variable.
        source_name: String,
        /// Its 1-based line or entry number.
        entry: usize,
        /// What is wrong (the token itself is never shown).
        problem: String,
    },
}

/// The tokens the server accepts.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<(Vec<u8>, Role)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .finish()
    }
}

impl Tokens {
    /// Tokens from `file` (one `role token` per line, `#` comments) and
    /// from the `JOBQ_AUTH_TOKENS` variable's value `env`. `None` when
    /// neither is given: authentication is off.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Option<Self>, InvalidTokens> {
        let mut entries = Vec::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| InvalidTokens::Read {
                path: path.display().to_string(),
                source,
            })?;
            let lines = text
                .lines()
                .map(|l| l.split_once('#').map_or(l, |(l, _)| l));
            entries.extend(parse_entries(
                &path.display().to_string(),
                lines,
                char::is_whitespace,
            )?);
        }
        if let Some(value) = env.filter(|v| !v.trim().is_empty()) {
            entries.extend(parse_entries(TOKENS_ENV, value.split(','), |c| c == ':')?);
        }
        Ok((!entries.is_empty() || file.is_some()).then_some(Self { entries }))
    }

    /// Every token with its role, in a fixed order: the same bytes for
    /// every server given the same tokens, so they can key what those
    /// servers must all accept (the dashboard's session cookies), and a
    /// change of tokens ends what the old ones keyed.
    pub fn key_material(&self) -> Vec<u8> {
        let mut entries: Vec<_> = self.entries.iter().collect();
        entries.sort();
        let mut material = Vec::new();
        for (token, role) in entries {
            material.extend_from_slice(role.name().as_bytes());
            material.push(b' ');
            material.extend_from_slice(token);
            material.push(b'\n');
        }
        material
    }

    /// The role of `presented`, comparing it with every token in constant
    /// time.
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let mut found = None;
        for (token, role) in &self.entries {
            if bool::from(token.as_slice().ct_eq(presented)) {
                found = Some(*role);
            }
        }
        found
    }

    /// Whether a request to `path` with these headers may go on.
    fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<(), Status> {
        let Some(needed) = required_role(path) else {
            return Ok(());
        };
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata",
            ));
        };
        let token = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        let role = self
            .role_of(token)
            .ok_or_else(|| Status::unauthenticated("the bearer token is not valid"))?;
        if role.may(needed) {
            Ok(())
        } else {
            let may = match needed {
                Role::Admin => "an admin token".to_string(),
                Role::Viewer => "a viewer or an admin token".to_string(),
                other => format!("a {} or an admin token", other.name()),
            };
            Err(Status::permission_denied(format!(
                "a {} token may not call {path}; it needs {may}",
                role.name(),
            )))
        }
    }
}

/// Splits `role<sep>token` entries, skipping blank ones.
fn parse_entries<'a>(
    source_name: &str,
    entries: impl Iterator<Item = &'a str>,
    separator: fn(char) -> bool,
) -> Result<Vec<(Vec<u8>, Role)>, InvalidTokens> {
    let mut parsed = Vec::new();
    for (i, entry) in entries.enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let problem = |problem: &str| InvalidTokens::Entry {
            source_name: source_name.to_string(),
            entry: i + 1,
            problem: problem.to_string(),
        };
        let (role, token) = entry
            .split_once(separator)
            .ok_or_else(|| problem("expected a role and a token"))?;
        let role = Role::parse(role.trim())
            .ok_or_else(|| problem("the role must be producer, worker, viewer or admin"))?;
        let token = token.trim();
        if token.len() < 16 {
            return Err(problem("the token is shorter than 16 characters"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(problem("the token must be printable ASCII without spaces"));
        }
        parsed.push((token.as_bytes().to_vec(), role));
    }
    Ok(parsed)
}

/// Checks every request's token before it reaches a service; with no
/// tokens, lets everything through.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    tokens: Option<Arc<Tokens>>,
}

impl AuthLayer {
    /// A layer accepting `tokens`, or everyone for `None`.
    pub fn new(tokens: Option<Tokens>) -> Self {
        Self {
            tokens: tokens.map(Arc::new),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// A service behind [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Authenticated<S> {
    inner: S,
    tokens: Option<Arc<Tokens>>,
}

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    /// The service's own future, or the refusal: no allocation either way.
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(tokens) = &self.tokens else {
            return Either::Left(self.inner.call(request));
        };
        match tokens.check(request.uri().path(), request.headers()) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(status) => {
                tracing::debug!(path = request.uri().path(), code = ?status.code(), "request refused by authentication");
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::load(
            None,
            Some("producer:pppppppppppppppp, worker:wwwwwwwwwwwwwwww,admin:aaaaaaaaaaaaaaaa"),
        )
        .expect("valid")
        .expect("some")
    }

    fn headers(token: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        h
    }

    #[test]
    fn roles_reach_their_methods_and_no_others() {
        let t = tokens();
        let enqueue = "/jobq.v1.JobQueue/Enqueue";
        let lease = "/jobq.v1.JobQueue/StreamLeases";
        let admin = "/jobq.v1.Admin/PurgeQueue";
        let p = headers("pppppppppppppppp");
        let w = headers("wwwwwwwwwwwwwwww");
        let a = headers("aaaaaaaaaaaaaaaa");
        assert!(t.check(enqueue, &p).is_ok());
        assert!(t.check(lease, &w).is_ok());
        for path in [enqueue, lease, admin, "/jobq.v1.JobQueue/Later"] {
            assert!(t.check(path, &a).is_ok(), "{path}");
        }
        let denied = t.check(lease, &p).expect_err("producer leasing");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("worker"), "{}", denied.message());
        assert_eq!(
            denied.message(),
            "a producer token may not call /jobq.v1.JobQueue/StreamLeases; it needs a worker or an admin token"
        );
        let denied = t.check(admin, &w).expect_err("worker admin");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            denied.message(),
            "a worker token may not call /jobq.v1.Admin/PurgeQueue; it needs an admin token"
        );
        assert_eq!(
            t.check(enqueue, &w).expect_err("worker enqueue").code(),
            tonic::Code::PermissionDenied
        );
        // Schedules enqueue into any queue: an operator's business.
        let schedule = "/jobq.v1.Schedules/SetSchedule";
        assert!(t.check(schedule, &a).is_ok());
        for token in [&p, &w] {
            let denied = t.check(schedule, token).expect_err("not admin");
            assert_eq!(denied.code(), tonic::Code::PermissionDenied);
            assert!(denied.message().ends_with("it needs an admin token"));
        }
    }

    #[test]
    fn a_viewer_reads_and_changes_nothing() {
        let t = Tokens::load(
            None,
            Some("viewer:vvvvvvvvvvvvvvvv,worker:wwwwwwwwwwwwwwww"),
        )
        .expect("valid")
        .expect("some");
        let v = headers("vvvvvvvvvvvvvvvv");
        for read in [
            "/jobq.v1.Admin/ListQueues",
            "/jobq.v1.Admin/GetJob",
            "/jobq.v1.Schedules/GetSchedule",
        ] {
            assert!(t.check(read, &v).is_ok(), "{read}");
        }
        for change in [
            "/jobq.v1.Admin/PurgeQueue",
            "/jobq.v1.Admin/RedriveJobs",
            "/jobq.v1.Schedules/TriggerSchedule",
            "/jobq.v1.JobQueue/Enqueue",
            "/jobq.v1.JobQueue/Lease",
        ] {
            let denied = t.check(change, &v).expect_err(change);
            assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{change}");
        }
        let denied = t
            .check("/jobq.v1.Admin/GetJob", &headers("wwwwwwwwwwwwwwww"))
            .expect_err("worker reading jobs");
        assert_eq!(
            denied.message(),
            "a worker token may not call /jobq.v1.Admin/GetJob; it needs a viewer or an admin token"
        );
    }

    #[test]
    fn missing_or_wrong_tokens_are_unauthenticated_and_probes_are_open() {
        let t = tokens();
        let path = "/jobq.v1.JobQueue/Enqueue";
        for h in [
            http::HeaderMap::new(),
            headers("nope-nope-nope-nope"),
            headers("pppppppppppppppp-longer"),
        ] {
            let err = t.check(path, &h).expect_err("refused");
            assert_eq!(err.code(), tonic::Code::Unauthenticated);
            assert!(!err.message().contains("pppp"), "{}", err.message());
        }
        for open in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(t.check(open, &http::HeaderMap::new()).is_ok());
        }
    }

    #[test]
    fn bad_entries_are_refused_without_showing_the_token() {
        for (value, needle) in [
            ("root:ssssssssssssssss", "role"),
            ("producer:short", "shorter"),
            ("producer", "a role and a token"),
        ] {
            let err = Tokens::load(None, Some(value))
                .expect_err(value)
                .to_string();
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("ssssssss"), "{err}");
        }
        let debug = format!("{:?}", tokens());
        assert!(!debug.contains("pppp"), "{debug}");
    }
}
