//! Who is looking at the dashboard: a session cookie signed by the server,
//! holding the visitor's role and when the session ends; the CSRF token its
//! forms carry, derived from it; and a one-shot message in a cookie of its
//! own.
//!
//! Sessions are kept in the cookie, not in the server, so every replica
//! given the same tokens accepts a session any of them opened (the signing
//! key is derived from the tokens: changing them ends every session), and
//! a client opening sessions without end costs the server nothing. Logging
//! out removes the cookie and revokes the session on the replica that
//! served it; a copy of the cookie taken before then would work elsewhere
//! until it expires.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use lru::LruCache;
use rand::RngCore;
use ring::hmac;
use subtle::ConstantTimeEq;

use crate::auth::Role;

/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "jobq_session";
/// The cookie the login form's CSRF token is also sent in (the form has no
/// session yet to derive one from).
pub(super) const LOGIN_COOKIE: &str = "jobq_login";
/// The cookie a one-shot message travels in, from an action to the page
/// it goes back to.
pub(super) const FLASH_COOKIE: &str = "jobq_flash";
/// A session lasts this long after its last renewal.
pub(super) const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A page renews its session once this much of it has passed, so a
/// session in use does not end.
const RENEW_AFTER: Duration = Duration::from_secs(3600);
/// Sessions logged out on this server, remembered until they would have
/// ended anyway, at most.
const MAX_REVOKED: usize = 10_000;

/// One visitor's session.
#[derive(Clone, Debug)]
pub(super) struct Session {
    /// Its id: random, in the cookie.
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// The token every form it posts must carry.
    pub csrf: String,
    /// A message for this page (what the last action did).
    pub flash: Option<Flash>,
    /// When it ends, in seconds since 1970.
    ends: u64,
}

/// A message shown once, on the page after an action (a refused action
/// is a page of its own, not a message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Flash {
    /// What to say.
    pub text: String,
}

/// The key sessions are signed with, and the sessions logged out here.
#[derive(Debug)]
pub(super) struct Sessions {
    key: hmac::Key,
    // A std mutex: held for one map operation, never across an await.
    revoked: Mutex<LruCache<String, u64>>,
}

impl Sessions {
    /// Sessions signed with a key derived from `material` (the tokens), or
    /// with a random key of this process when there is none.
    pub(super) fn new(material: Option<&[u8]>) -> Self {
        let key = match material {
            Some(material) => {
                let mut keyed = b"jobq dashboard sessions v1\n".to_vec();
                keyed.extend_from_slice(material);
                hmac::Key::new(hmac::HMAC_SHA256, &keyed)
            }
            None => hmac::Key::new(hmac::HMAC_SHA256, random_token().as_bytes()),
        };
        let capacity = NonZeroUsize::new(MAX_REVOKED).unwrap_or(NonZeroUsize::MIN);
        Self {
            key,
            revoked: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn sign(&self, text: &str) -> String {
        hex(hmac::sign(&self.key, text.as_bytes()).as_ref())
    }

    fn verify(&self, text: &str, mac: &str) -> bool {
        same_token(&self.sign(text), Some(mac))
    }

    /// Opens a session with `role`, returning it and its cookie's value.
    pub(super) fn open(&self, role: Role, now: SystemTime) -> (Session, String) {
        let id = random_token();
        self.session(id, role, seconds(now) + LIFETIME.as_secs())
    }

    /// The session with these fields, and its cookie's value.
    fn session(&self, id: String, role: Role, ends: u64) -> (Session, String) {
        let body = format!("{}.{ends}.{id}", role.name());
        let value = format!("{body}.{}", self.sign(&body));
        let session = Session {
            csrf: self.sign(&format!("csrf.{id}")),
            id,
            role,
            flash: None,
            ends,
        };
        (session, value)
    }

    /// The session the request's cookie holds, if its signature is this
    /// server's, it has not ended and was not logged out here; with the
    /// request's one-shot message.
    pub(super) fn find(&self, headers: &HeaderMap, now: SystemTime) -> Option<Session> {
        let value = cookie(headers, SESSION_COOKIE)?;
        let (body, mac) = value.rsplit_once('.')?;
        if !self.verify(body, mac) {
            return None;
        }
        let mut fields = body.splitn(3, '.');
        let role = Role::parse(fields.next()?)?;
        let ends: u64 = fields.next()?.parse().ok()?;
        let id = fields.next()?.to_string();
        if ends <= seconds(now) || self.revoked().contains(&id) {
            return None;
        }
        let (mut session, _) = self.session(id, role, ends);
        session.flash = cookie(headers, FLASH_COOKIE).and_then(|v| self.read_flash(&session.id, v));
        Some(session)
    }

    /// A renewed cookie for `session`, once enough of it has passed.
    pub(super) fn renewal(&self, session: &Session, now: SystemTime) -> Option<String> {
        let renew_at = session
            .ends
            .saturating_sub(LIFETIME.as_secs() - RENEW_AFTER.as_secs());
        if seconds(now) < renew_at {
            return None;
        }
        let ends = seconds(now) + LIFETIME.as_secs();
        Some(self.session(session.id.clone(), session.role, ends).1)
    }

    /// Logs a session out on this server.
    pub(super) fn close(&self, session: &Session) {
        self.revoked().put(session.id.clone(), session.ends);
    }

    fn revoked(&self) -> std::sync::MutexGuard<'_, LruCache<String, u64>> {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A flash cookie's value for `session`: signed, so no one else can put
    /// words on its pages.
    pub(super) fn flash_value(&self, session: &Session, flash: &Flash) -> String {
        let text: String = form_urlencoded::byte_serialize(flash.text.as_bytes()).collect();
        let mac = self.sign(&format!("flash.{}.{text}", session.id));
        format!("{text}.{mac}")
    }

    fn read_flash(&self, id: &str, value: &str) -> Option<Flash> {
        let (text, mac) = value.rsplit_once('.')?;
        if !self.verify(&format!("flash.{id}.{text}"), mac) {
            return None;
        }
        let text = form_urlencoded::parse(format!("t={text}").as_bytes())
            .next()
            .map(|(_, t)| t.into_owned())?;
        Some(Flash { text })
    }
}

fn seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 random bytes from the thread's CSPRNG, as hex.
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
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
    // Made of hex, names, digits and percent-encoding: always a valid
    // header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookies(pairs: &[(&str, &str)]) -> HeaderMap {
        let text = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_str(&text).expect("ascii"),
        );
        headers
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_session_is_its_signed_cookie_until_it_ends() {
        let sessions = Sessions::new(Some(b"admin aaaaaaaaaaaaaaaa\n"));
        let (session, value) = sessions.open(Role::Viewer, at(1_000));
        let headers = with_cookies(&[("theme", "dark"), (SESSION_COOKIE, &value)]);
        let found = sessions.find(&headers, at(1_060)).expect("open");
        assert_eq!(
            (found.role, &found.csrf, &found.id),
            (Role::Viewer, &session.csrf, &session.id)
        );
        let ends = 1_000 + LIFETIME.as_secs();
        assert!(sessions.find(&headers, at(ends - 1)).is_some());
        assert!(sessions.find(&headers, at(ends)).is_none(), "ended");
    }

    #[test]
    fn another_key_or_a_changed_cookie_is_no_session() {
        let sessions = Sessions::new(Some(b"admin aaaaaaaaaaaaaaaa\n"));
        let (_, value) = sessions.open(Role::Viewer, at(1_000));
        // Same tokens, another replica: accepted.
        let replica = Sessions::new(Some(b"admin aaaaaaaaaaaaaaaa\n"));
        assert!(
            replica
                .find(&with_cookies(&[(SESSION_COOKIE, &value)]), at(1_001))
                .is_some()
        );
        // Other tokens: refused.
        let rotated = Sessions::new(Some(b"admin bbbbbbbbbbbbbbbb\n"));
        assert!(
            rotated
                .find(&with_cookies(&[(SESSION_COOKIE, &value)]), at(1_001))
                .is_none()
        );
        // A viewer making itself an admin: refused.
        let forged = value.replacen("viewer", "admin", 1);
        assert!(
            sessions
                .find(&with_cookies(&[(SESSION_COOKIE, &forged)]), at(1_001))
                .is_none()
        );
        for junk in ["", "admin", "admin.1.2", "admin.99999999999.x.y"] {
            assert!(
                sessions
                    .find(&with_cookies(&[(SESSION_COOKIE, junk)]), at(1_001))
                    .is_none()
            );
        }
    }

    #[test]
    fn a_session_in_use_is_renewed_and_a_closed_one_is_gone() {
        let sessions = Sessions::new(None);
        let (session, value) = sessions.open(Role::Admin, at(1_000));
        assert_eq!(sessions.renewal(&session, at(1_010)), None);
        let renewed = sessions
            .renewal(&session, at(1_000 + RENEW_AFTER.as_secs()))
            .expect("renewed");
        let headers = with_cookies(&[(SESSION_COOKIE, &renewed)]);
        let later = at(1_000 + LIFETIME.as_secs() + 10);
        let found = sessions
            .find(&headers, later)
            .expect("lasts past the first lifetime");
        assert_eq!(found.csrf, session.csrf, "the same session");
        sessions.close(&found);
        assert!(sessions.find(&headers, later).is_none());
        assert!(
            sessions
                .find(&with_cookies(&[(SESSION_COOKIE, &value)]), at(1_001))
                .is_none()
        );
    }

    #[test]
    fn a_flash_is_read_only_by_the_session_it_was_signed_for() {
        let sessions = Sessions::new(None);
        let (session, value) = sessions.open(Role::Admin, at(1_000));
        let flash = Flash {
            text: "Redrove 3 jobs; <b>1</b> had left. ünïcode".into(),
        };
        let signed = sessions.flash_value(&session, &flash);
        let headers = with_cookies(&[(SESSION_COOKIE, &value), (FLASH_COOKIE, &signed)]);
        assert_eq!(
            sessions.find(&headers, at(1_001)).and_then(|s| s.flash),
            Some(flash)
        );
        let (_, other) = sessions.open(Role::Admin, at(1_000));
        let replayed = with_cookies(&[(SESSION_COOKIE, &other), (FLASH_COOKIE, &signed)]);
        assert_eq!(
            sessions.find(&replayed, at(1_001)).and_then(|s| s.flash),
            None
        );
        let tampered = signed.replacen("Redrove", "Deleted", 1);
        let headers = with_cookies(&[(SESSION_COOKIE, &value), (FLASH_COOKIE, &tampered)]);
        assert_eq!(
            sessions.find(&headers, at(1_001)).and_then(|s| s.flash),
            None
        );
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
