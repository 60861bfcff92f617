//! Who is looking at the dashboard: sessions behind an HttpOnly cookie,
//! each with its role, its CSRF token and a one-shot message.
//!
//! Sessions live in this process only (a restart logs everyone out) in an
//! LRU map of bounded size, so a client opening sessions without end
//! pushes out the least recently used ones instead of growing memory.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};
use lru::LruCache;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::auth::Role;

/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "jobq_session";
/// The cookie the login form's CSRF token is also sent in (the form has no
/// session yet to keep it in).
pub(super) const LOGIN_COOKIE: &str = "jobq_login";
/// Sessions kept at most.
const MAX_SESSIONS: usize = 10_000;
/// A session unused this long is gone.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

/// One visitor's session.
#[derive(Clone, Debug)]
pub(super) struct Session {
    /// Its id, as the cookie holds it.
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// The token every form it posts must carry.
    pub csrf: String,
    /// A message for the next page it opens (what an action did).
    pub flash: Option<Flash>,
    last_seen: Instant,
}

/// A message shown once, on the page after an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Flash {
    /// Whether it tells of a failure.
    pub error: bool,
    /// What to say.
    pub text: String,
}

/// Every open session.
#[derive(Debug)]
pub(super) struct Sessions {
    // A std mutex: held for one map operation, never across an await.
    map: Mutex<LruCache<String, Session>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::with_capacity(MAX_SESSIONS)
    }
}

impl Sessions {
    /// Sessions kept at most `capacity`.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            map: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, LruCache<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session with `role`.
    pub(super) fn open(&self, role: Role, now: Instant) -> Session {
        let session = Session {
            id: random_token(),
            role,
            csrf: random_token(),
            flash: None,
            last_seen: now,
        };
        self.map().put(session.id.clone(), session.clone());
        session
    }

    /// The session the request's cookie names, if it is open and has not
    /// idled out; its flash message is taken (shown once).
    pub(super) fn find(&self, headers: &HeaderMap, now: Instant) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut map = self.map();
        let session = map.get_mut(id)?;
        if now.duration_since(session.last_seen) > IDLE_TIMEOUT {
            map.pop(id);
            return None;
        }
        session.last_seen = now;
        let found = session.clone();
        session.flash = None;
        Some(found)
    }

    /// Leaves a message for the session's next page.
    pub(super) fn flash(&self, id: &str, flash: Flash) {
        if let Some(session) = self.map().peek_mut(id) {
            session.flash = Some(flash);
        }
    }

    /// Closes a session.
    pub(super) fn close(&self, id: &str) {
        self.map().pop(id);
    }
}

/// 32 random bytes from the thread's CSPRNG, as hex.
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a form's token is the expected one, compared in constant time.
pub(super) fn same_token(expected: &str, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| bool::from(expected.as_bytes().ct_eq(p.as_bytes())))
}

/// A cookie's value from the request's `Cookie` headers.
pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the whole site,
/// Secure when the page is served over TLS. An empty `value` with a zero
/// `max_age` removes the cookie.
pub(super) fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    );
    // Made of hex, names and digits: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_str(value).expect("ascii"),
        );
        headers
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_idles_out() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let session = sessions.open(Role::Viewer, start);
        let headers = with_cookie(&format!("theme=dark; {SESSION_COOKIE}={}", session.id));
        let found = sessions
            .find(&headers, start + Duration::from_secs(60))
            .expect("open");
        assert_eq!(found.role, Role::Viewer);
        assert_eq!(found.csrf, session.csrf);
        // Each use moves the idle deadline.
        let later = start + IDLE_TIMEOUT;
        assert!(sessions.find(&headers, later).is_some());
        assert!(
            sessions
                .find(&headers, later + IDLE_TIMEOUT + Duration::from_secs(1))
                .is_none()
        );
        assert!(
            sessions.find(&headers, later).is_none(),
            "an idled-out session is gone"
        );
        assert!(
            sessions
                .find(&with_cookie("jobq_session=nope"), start)
                .is_none()
        );
    }

    #[test]
    fn a_flash_is_shown_once_and_a_closed_session_is_gone() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let session = sessions.open(Role::Admin, now);
        let headers = with_cookie(&format!("{SESSION_COOKIE}={}", session.id));
        let flash = Flash {
            error: false,
            text: "redrove 3 jobs".into(),
        };
        sessions.flash(&session.id, flash.clone());
        assert_eq!(
            sessions.find(&headers, now).and_then(|s| s.flash),
            Some(flash)
        );
        assert_eq!(sessions.find(&headers, now).and_then(|s| s.flash), None);
        sessions.close(&session.id);
        assert!(sessions.find(&headers, now).is_none());
    }

    #[test]
    fn the_oldest_sessions_make_room_for_new_ones() {
        let sessions = Sessions::with_capacity(2);
        let now = Instant::now();
        let first = sessions.open(Role::Admin, now);
        sessions.open(Role::Admin, now);
        sessions.open(Role::Admin, now);
        let headers = with_cookie(&format!("{SESSION_COOKIE}={}", first.id));
        assert!(sessions.find(&headers, now).is_none());
    }

    #[test]
    fn tokens_are_random_and_compared_whole() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(same_token(&a, Some(&a)));
        assert!(!same_token(&a, Some(&b)));
        assert!(!same_token(&a, Some(&a[..63])));
        assert!(!same_token(&a, None));
    }
}
