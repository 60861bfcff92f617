//! The web dashboard: every queue, job, dead letter and schedule, seen and
//! operated from a browser, served by the server itself on its own port.
//!
//! It sits beside the gRPC services and, like them, sees only the engine
//! interface, so it works the same on every store. Pages are rendered on
//! the server (they read without JavaScript); a small script refreshes the
//! parts marked live by fetching the same page again, and adds select-all
//! to the dead-letter list. Every asset is embedded in the binary and the
//! Content-Security-Policy allows nothing from elsewhere and no inline
//! script or style.
//!
//! Access: with auth tokens, a login form takes a `viewer` or `admin`
//! token once and keeps a signed session cookie; only `admin` may act. Without
//! tokens, everyone who reaches the port is an admin, so the server
//! refuses to serve the dashboard beyond loopback unless told to, and
//! answers only requests addressed to a loopback host (a page elsewhere
//! cannot point a name of its own at 127.0.0.1 and read it). Every action
//! is a POST carrying the session's CSRF token.

mod actions;
mod assets;
mod chart;
mod dead;
mod error;
mod format;
mod job;
mod layout;
mod login;
mod overview;
mod params;
mod payload;
mod queue;
mod rates;
mod request;
mod schedules;
mod session;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, header};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Role, Tokens};
use crate::engine::SharedEngine;

pub use error::WebError;
use session::{FLASH_COOKIE, SESSION_COOKIE, Session, Sessions};

/// How the dashboard is served.
#[derive(Clone, Debug)]
pub struct WebSettings {
    /// The tokens that log in; `None`: no login, everyone is an admin.
    pub tokens: Option<Tokens>,
    /// Whether requests must name a loopback host (no tokens and not
    /// allowed to serve others).
    pub loopback_only: bool,
    /// Where a trace id links to, with `{trace_id}` in it.
    pub trace_url: Option<String>,
    /// The longest lease a queue may be set to.
    pub max_lease: Duration,
}

/// What every page and action reads: the engine, the sessions, the rates.
#[derive(Debug)]
struct Dashboard {
    engine: SharedEngine,
    sessions: Sessions,
    login_failures: login::Failures,
    rates: rates::Rates,
    settings: WebSettings,
    started: SystemTime,
}

type Shared = Arc<Dashboard>;

/// The visitor of one request: their session, and the cookies to set
/// with the answer (a new or renewed session, a message shown).
#[derive(Debug)]
struct Visitor {
    session: Session,
    cookies: Vec<HeaderValue>,
    /// Whether the browser came over TLS (cookies set are then Secure).
    tls: bool,
}

impl Visitor {
    fn may_act(&self) -> bool {
        self.session.role == Role::Admin
    }
}

impl Dashboard {
    /// Who is asking: their session, or (without tokens) a new one; with
    /// tokens and no session, the login page is where they go.
    fn visitor(&self, headers: &HeaderMap, next: &str) -> Result<Visitor, WebError> {
        let now = SystemTime::now();
        let tls = over_tls(headers);
        if let Some(session) = self.sessions.find(headers, now) {
            let mut cookies = Vec::new();
            if let Some(renewed) = self.sessions.renewal(&session, now) {
                cookies.push(session::set_cookie(
                    SESSION_COOKIE,
                    &renewed,
                    session::LIFETIME,
                    tls,
                ));
            }
            if session.flash.is_some() {
                cookies.push(session::set_cookie(FLASH_COOKIE, "", Duration::ZERO, tls));
            }
            return Ok(Visitor {
                session,
                cookies,
                tls,
            });
        }
        if self.settings.tokens.is_some() {
            return Err(WebError::LoginNeeded {
                next: next.to_string(),
            });
        }
        let (session, value) = self.sessions.open(Role::Admin, now);
        let cookies = vec![session::set_cookie(
            SESSION_COOKIE,
            &value,
            session::LIFETIME,
            tls,
        )];
        Ok(Visitor {
            session,
            cookies,
            tls,
        })
    }

    /// The visitor of a form's POST, if they may act and the form carries
    /// their session's CSRF token.
    fn actor(&self, headers: &HeaderMap, form: &params::Params) -> Result<Visitor, WebError> {
        let Some(session) = self.sessions.find(headers, SystemTime::now()) else {
            return Err(WebError::Forbidden(
                "this form's session has ended (it was logged out, or 12 hours passed unused): reload the page and try again".into(),
            ));
        };
        if !session::same_token(&session.csrf, form.get("csrf")) {
            return Err(WebError::Forbidden(
                "the form's CSRF token is missing or not this session's: reload the page and try again".into(),
            ));
        }
        if session.role != Role::Admin {
            return Err(WebError::Forbidden(format!(
                "a {} may look but not change anything; log in with an admin token to act",
                session.role.name()
            )));
        }
        Ok(Visitor {
            session,
            cookies: Vec::new(),
            tls: over_tls(headers),
        })
    }
}

/// Whether the browser reached the dashboard over TLS, as the proxy that
/// terminated it says.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// Serves the dashboard on `listener` until `stop`, sampling every
/// queue's totals for its rate charts meanwhile.
pub async fn serve(
    listener: TcpListener,
    engine: SharedEngine,
    settings: WebSettings,
    stop: CancellationToken,
) {
    let dashboard = Arc::new(Dashboard {
        engine,
        sessions: Sessions::new(
            settings
                .tokens
                .as_ref()
                .map(Tokens::key_material)
                .as_deref(),
        ),
        login_failures: login::Failures::new(std::time::Instant::now()),
        rates: rates::Rates::default(),
        settings,
        started: SystemTime::now(),
    });
    let app = router(Arc::clone(&dashboard));
    let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
    tokio::select! {
        result = served => {
            if let Err(error) = result {
                tracing::error!(%error, "web dashboard failed");
            }
        }
        () = sample_rates(&dashboard) => {}
    }
}

/// Samples every queue's totals at a fixed interval, for the rate charts.
async fn sample_rates(dashboard: &Dashboard) {
    let mut ticks = tokio::time::interval(rates::INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // A store that cannot answer now leaves a gap in the chart.
        if let Ok(figures) = dashboard.engine.queue_figures().await {
            dashboard.rates.record(std::time::Instant::now(), &figures);
        }
    }
}

fn router(dashboard: Shared) -> Router {
    Router::new()
        .route("/", get(overview::page))
        .route("/queue", get(queue::page))
        .route("/queue/purge", get(queue::purge_page))
        .route("/job", get(job::page))
        .route("/job/payload", get(job::payload))
        .route("/dead", get(dead::page))
        .route("/schedules", get(schedules::list))
        .route("/schedule", get(schedules::page))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/assets/{name}", get(assets::serve))
        .route("/act/pause", post(actions::pause))
        .route("/act/resume", post(actions::resume))
        .route("/act/settings", post(actions::settings))
        .route("/act/purge", post(actions::purge))
        .route("/act/cancel", post(actions::cancel))
        .route("/act/redrive", post(actions::redrive))
        .route("/act/dead", post(actions::dead_letters))
        .route("/act/schedule", post(actions::schedule))
        .fallback(|| async { WebError::NotFound("no page here; the overview is at /".into()) })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&dashboard),
            guard,
        ))
        .with_state(dashboard)
}

/// What every response carries: a Content-Security-Policy allowing only
/// the dashboard's own scripts, styles and requests, and no framing or
/// sniffing. Before that, without tokens, a request must name a loopback
/// host.
async fn guard(State(dashboard): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = if dashboard.settings.loopback_only && !loopback_host(request.headers()) {
        axum::response::IntoResponse::into_response(WebError::Misdirected(
            "without auth tokens the dashboard answers only requests to localhost or a loopback address; open it as http://127.0.0.1:<port>/, or configure tokens".into(),
        ))
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Whether the request's `Host` is `localhost` or a loopback address.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    // Strip the port: `[::1]:8080`, `127.0.0.1:8080`, `localhost`.
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(value).expect("ascii"));
        headers
    }

    #[test]
    fn only_loopback_hosts_count_as_loopback() {
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "127.3.4.5",
            "[::1]:8080",
            "LOCALHOST",
        ] {
            assert!(loopback_host(&host(ok)), "{ok}");
        }
        for no in [
            "evil.example:8080",
            "10.0.0.1:8080",
            "localhost.evil.example",
            "[::2]:80",
        ] {
            assert!(!loopback_host(&host(no)), "{no}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }
}
