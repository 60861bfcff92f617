//! Logging in with a token, once, and out again.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::{HeaderMap, StatusCode, header};
use maud::{DOCTYPE, html};

use super::params::Params;
use super::session::{self, LOGIN_COOKIE, SESSION_COOKIE};
use super::{Shared, WebError, assets};
use crate::auth::Role;
use std::time::{Instant, SystemTime};

/// How long the login form's token is good for.
const LOGIN_FORM_AGE: std::time::Duration = std::time::Duration::from_secs(3600);
/// Failed logins the whole server takes per [`FAILURE_WINDOW`]; beyond,
/// every login waits for the window to pass, so tokens cannot be guessed
/// at speed.
const MAX_FAILURES: u32 = 20;
/// The window failed logins are counted in.
const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Failed logins in the current window, server-wide.
#[derive(Debug)]
pub(super) struct Failures {
    // A std mutex: held for one check or count, never across an await.
    window: std::sync::Mutex<(Instant, u32)>,
}

impl Failures {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            window: std::sync::Mutex::new((now, 0)),
        }
    }

    /// How long until logins may be tried again, if too many failed.
    fn wait(&self, now: Instant) -> Option<std::time::Duration> {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let ends = window.0 + FAILURE_WINDOW;
        if now >= ends {
            *window = (now, 0);
            return None;
        }
        (window.1 >= MAX_FAILURES).then(|| ends - now)
    }

    fn failed(&self) {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        window.1 = window.1.saturating_add(1);
    }
}

/// `GET /login[?next=<path>]`: the form, with a fresh CSRF token in a
/// cookie and in the form.
pub(super) async fn page(
    State(dashboard): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::query(query.as_deref());
    let next = safe_next(params.get("next"));
    if dashboard.settings.tokens.is_none() {
        return Redirect::to(next).into_response();
    }
    form(StatusCode::OK, next, None, &headers)
}

/// The login form, with `problem` above it when the last try failed.
fn form(status: StatusCode, next: &str, problem: Option<&str>, headers: &HeaderMap) -> Response {
    let token = session::random_token();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (super::layout::head("Log in", false))
            body {
                main.narrow {
                    section.card {
                        h1 { img src=(assets::href("icon.svg")) alt="" width="28" height="28"; "jobq" }
                        @if let Some(problem) = problem {
                            div.flash.error role="alert" { (problem) }
                        }
                        form method="post" action="/login" {
                            input type="hidden" name="csrf" value=(token);
                            input type="hidden" name="next" value=(next);
                            label.field {
                                "Token (viewer or admin)"
                                input type="password" name="token" autocomplete="current-password" required autofocus;
                            }
                            p { button.primary type="submit" { "Log in" } }
                        }
                        p.note { "The token is one of the server's auth tokens with the viewer or admin role. The session lasts while it is used, up to 12 hours idle." }
                    }
                }
            }
        }
    };
    let cookie = session::set_cookie(
        LOGIN_COOKIE,
        &token,
        LOGIN_FORM_AGE,
        super::over_tls(headers),
    );
    (
        status,
        [(header::SET_COOKIE, cookie)],
        Html(page.into_string()),
    )
        .into_response()
}

/// `POST /login`: checks the token; a viewer or admin one opens a session.
pub(super) async fn submit(
    State(dashboard): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let params = Params::parse(&body);
    let next = safe_next(params.get("next"));
    let Some(tokens) = &dashboard.settings.tokens else {
        return Ok(Redirect::to(next).into_response());
    };
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !session::same_token(expected, params.get("csrf")) {
        return Ok(form(
            StatusCode::FORBIDDEN,
            next,
            Some("The login form had expired or came from elsewhere. Try again."),
            &headers,
        ));
    }
    if let Some(wait) = dashboard.login_failures.wait(Instant::now()) {
        let problem = format!(
            "Too many failed logins in the last minute; try again in {}.",
            super::format::span(wait)
        );
        return Ok(form(
            StatusCode::TOO_MANY_REQUESTS,
            next,
            Some(&problem),
            &headers,
        ));
    }
    let presented = params.get("token").unwrap_or("").trim();
    let role = match tokens.role_of(presented.as_bytes()) {
        Some(role @ (Role::Admin | Role::Viewer)) => role,
        Some(other) => {
            dashboard.login_failures.failed();
            return Ok(form(
                StatusCode::FORBIDDEN,
                next,
                Some(&format!(
                    "A {} token cannot open the dashboard; use a viewer or an admin token.",
                    other.name()
                )),
                &headers,
            ));
        }
        None => {
            dashboard.login_failures.failed();
            tracing::warn!("dashboard login with a token that is not the server's");
            return Ok(form(
                StatusCode::UNAUTHORIZED,
                next,
                Some("That token is not one of the server's tokens."),
                &headers,
            ));
        }
    };
    let (_, value) = dashboard.sessions.open(role, SystemTime::now());
    tracing::info!(role = role.name(), "dashboard login");
    let tls = super::over_tls(&headers);
    let cookie = session::set_cookie(SESSION_COOKIE, &value, session::LIFETIME, tls);
    let spent = session::set_cookie(
        LOGIN_COOKIE,
        "",
        std::time::Duration::ZERO,
        super::over_tls(&headers),
    );
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response.headers_mut().append(header::SET_COOKIE, spent);
    Ok(response)
}

/// `POST /logout`: ends the session.
pub(super) async fn logout(
    State(dashboard): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let params = Params::parse(&body);
    let Some(found) = dashboard.sessions.find(&headers, SystemTime::now()) else {
        return Ok(Redirect::to("/login").into_response());
    };
    if !session::same_token(&found.csrf, params.get("csrf")) {
        return Err(WebError::Forbidden(
            "the form's CSRF token is missing or not this session's: reload the page and try again"
                .into(),
        ));
    }
    dashboard.sessions.close(&found);
    let gone = session::set_cookie(
        SESSION_COOKIE,
        "",
        std::time::Duration::ZERO,
        super::over_tls(&headers),
    );
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, gone);
    Ok(response)
}

/// Where to go after logging in: a path on this site, else the overview
/// (so a crafted link cannot send anyone elsewhere).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_past_the_limit_wait_for_the_window() {
        let start = Instant::now();
        let failures = Failures::new(start);
        for _ in 0..MAX_FAILURES {
            assert_eq!(failures.wait(start), None);
            failures.failed();
        }
        let later = start + std::time::Duration::from_secs(20);
        assert_eq!(
            failures.wait(later),
            Some(FAILURE_WINDOW - std::time::Duration::from_secs(20))
        );
        assert_eq!(failures.wait(start + FAILURE_WINDOW), None, "a new window");
        failures.failed();
        assert_eq!(failures.wait(start + FAILURE_WINDOW), None);
    }

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/queue?name=a")), "/queue?name=a");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "queue",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
