//! The frame around every page: head, top bar, breadcrumbs, the one-shot
//! message, footer; and the small pieces many pages use.

use std::time::SystemTime;

use axum::response::{Html, IntoResponse, Response};
use http::header;
use maud::{DOCTYPE, Markup, html};

use super::session::Flash;
use super::{Dashboard, Visitor, assets, format};
use crate::queue::JobState;

/// Which section of the top bar a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Section {
    Queues,
    Schedules,
}

/// A page's title, place and body.
pub(super) struct Page<'a> {
    pub title: String,
    pub section: Section,
    /// Links above the title, from the overview down.
    pub crumbs: Vec<(String, String)>,
    pub body: Markup,
    pub visitor: &'a Visitor,
}

impl Page<'_> {
    /// The whole page, with the cookies the visitor is to get.
    pub(super) fn render(self, dashboard: &Dashboard) -> Response {
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                (head(&self.title, true))
                body {
                    (top_bar(self.section, self.visitor, dashboard))
                    main {
                        @if !self.crumbs.is_empty() {
                            nav.crumbs aria-label="breadcrumbs" {
                                @for (i, (label, link)) in self.crumbs.iter().enumerate() {
                                    @if i > 0 { " / " }
                                    a href=(link) { (label) }
                                }
                            }
                        }
                        @if let Some(flash) = &self.visitor.session.flash {
                            (flash_box(flash))
                        }
                        (self.body)
                    }
                    (footer(dashboard))
                }
            }
        };
        let mut response = Html(markup.into_string()).into_response();
        for cookie in &self.visitor.cookies {
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie.clone());
        }
        response
    }
}

/// Every page's `<head>`: its title, the icon and stylesheet, and the
/// script when the page has live parts or buttons.
pub(super) fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light dark";
            title { (title) " · jobq" }
            link rel="icon" href=(assets::href("icon.svg")) type="image/svg+xml";
            link rel="stylesheet" href=(assets::href("dashboard.css"));
            @if script {
                script src=(assets::href("dashboard.js")) defer {}
            }
        }
    }
}

fn top_bar(section: Section, visitor: &Visitor, dashboard: &Dashboard) -> Markup {
    let here = |s: Section| if s == section { "here" } else { "" };
    html! {
        header.top {
            a.brand href="/" {
                img src=(assets::href("icon.svg")) alt="";
                "jobq"
            }
            nav {
                a class=(here(Section::Queues)) href="/" { "Queues" }
                a class=(here(Section::Schedules)) href="/schedules" { "Schedules" }
            }
            div.who {
                @if dashboard.settings.tokens.is_some() {
                    span { "Signed in as " strong { (visitor.session.role.name()) } }
                    form.inline method="post" action="/logout" {
                        (csrf(visitor))
                        button type="submit" { "Log out" }
                    }
                } @else {
                    span title="No auth tokens are configured: anyone who reaches this port is an admin." {
                        "No login (loopback)"
                    }
                }
            }
        }
    }
}

fn footer(dashboard: &Dashboard) -> Markup {
    let uptime = SystemTime::now()
        .duration_since(dashboard.started)
        .unwrap_or_default();
    html! {
        footer {
            "jobq " (env!("CARGO_PKG_VERSION"))
            " · " (dashboard.engine.store_kind()) " store"
            " · up " (format::span(uptime))
        }
    }
}

fn flash_box(flash: &Flash) -> Markup {
    html! {
        div.flash role="status" { (flash.text) }
    }
}

/// The hidden field every form that acts carries.
pub(super) fn csrf(visitor: &Visitor) -> Markup {
    html! { input type="hidden" name="csrf" value=(visitor.session.csrf); }
}

/// A job state as a coloured badge.
pub(super) fn state_badge(state: JobState) -> Markup {
    let (class, label) = state_names(state);
    html! { span class={ "badge " (class) } { (label) } }
}

/// A state's CSS class and label.
pub(super) fn state_names(state: JobState) -> (&'static str, &'static str) {
    match state {
        JobState::Ready => ("ready", "ready"),
        JobState::Scheduled => ("scheduled", "scheduled"),
        JobState::Leased => ("leased", "leased"),
        JobState::Dead => ("dead", "dead"),
        JobState::Acked => ("acked", "acked"),
        JobState::Cancelled => ("cancelled", "cancelled"),
    }
}

/// A count, muted when zero.
pub(super) fn count_cell(n: usize, extra_class: &str) -> Markup {
    let zero = if n == 0 { " zero" } else { "" };
    html! { td class={ "num " (extra_class) (zero) } { (format::count(n as u64)) } }
}

/// One figure in a row of stat boxes.
pub(super) fn stat(label: &str, class: &str, value: impl maud::Render) -> Markup {
    html! {
        div class={ "stat " (class) } {
            div.label { (label) }
            div.value { (value) }
        }
    }
}
