//! Schedules: every schedule with its next and last fires, and one
//! schedule's page with its upcoming fires and recent outcomes; pause,
//! resume, trigger.

use std::time::SystemTime;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{Page, Section, csrf, state_badge};
use super::params::href;
use super::request::Viewing;
use super::{Shared, Visitor, WebError, format};
use crate::engine::ScheduleInfo;
use crate::queue::ScheduleName;
use crate::schedule::{Fire, FireResult, Trigger};

/// Schedules on one page.
const PAGE: usize = 100;

/// `GET /schedules[?after=<schedule>]`.
pub(super) async fn list(
    State(dashboard): State<Shared>,
    Viewing { visitor, params }: Viewing,
) -> Result<Response, WebError> {
    let after = params
        .get("after")
        .map(|_| params.schedule("after"))
        .transpose()?;
    let mut schedules = dashboard
        .engine
        .list_schedules(after.as_ref(), PAGE + 1)
        .await?;
    let more = schedules.len() > PAGE;
    schedules.truncate(PAGE);
    let now = SystemTime::now();
    let body = html! {
        h1 { "Schedules" }
        section.card.flush {
            @if schedules.is_empty() {
                div.empty { "No schedules. Create one with " code { "jobq schedules set" } ", the Schedules API, or --schedules-file." }
            } @else {
                div.table-wrap id="schedules" data-live {
                    table {
                        thead {
                            tr {
                                th { "Schedule" } th { "Queue" } th { "When" } th { "Next fire" }
                                th { "Last fire" } th.num.hide-narrow { "Fired" } th.num.hide-narrow { "Failed" } th { "" }
                            }
                        }
                        tbody {
                            @for info in &schedules {
                                tr {
                                    td.name { a href=(href("/schedule", &[("name", info.name.as_str())])) { (info.name) } }
                                    td { a href=(href("/queue", &[("name", info.spec.queue.as_str())])) { (info.spec.queue) } }
                                    td.mono { (trigger(info)) }
                                    td { @match info.upcoming.first() { Some(&at) => (format::when(format::millis(at), now)), None => span.zero { "—" } } }
                                    td { @match info.state.recent.back() { Some(fire) => (outcome(fire, now)), None => span.zero { "never" } } }
                                    td.num.hide-narrow { (format::count(info.state.fired)) }
                                    td.num.hide-narrow { (format::count(info.state.failed)) }
                                    td { @if info.state.paused { span.badge.paused { "paused" } } }
                                }
                            }
                        }
                    }
                }
            }
            @if let (true, Some(last)) = (more, schedules.last()) {
                nav.pager { a href=(href("/schedules", &[("after", last.name.as_str())])) { "Next page →" } }
            }
        }
    };
    Ok(Page {
        title: "Schedules".into(),
        section: Section::Schedules,
        crumbs: Vec::new(),
        body,
        visitor: &visitor,
    }
    .render(&dashboard))
}

/// `GET /schedule?name=<schedule>`.
pub(super) async fn page(
    State(dashboard): State<Shared>,
    Viewing { visitor, params }: Viewing,
) -> Result<Response, WebError> {
    let name = params.schedule("name")?;
    let info = dashboard.engine.schedule_info(&name).await?;
    let now = SystemTime::now();
    let body = html! {
        div.title-row {
            h1 {
                (name)
                @if info.state.paused { span.badge.paused { "paused" } } @else { span.badge.active { "active" } }
            }
            @if visitor.may_act() { (actions(&visitor, &name, info.state.paused)) }
        }
        div id="schedule" data-live {
            div.grid {
                section.card {
                    h2 { "Settings" }
                    dl.facts {
                        dt { "Queue" } dd { a href=(href("/queue", &[("name", info.spec.queue.as_str())])) { (info.spec.queue) } }
                        dt { "When" } dd.mono { (trigger(&info)) }
                        dt { "Jobs enqueued" } dd { (format::count(info.state.fired)) }
                        dt { "Fire times skipped" } dd { (format::count(info.state.skipped)) }
                        dt { "Fires failed" } dd { (format::count(info.state.failed)) }
                        dt { "Created" } dd { (format::when(format::millis(info.state.created), now)) }
                    }
                }
                section.card {
                    h2 { "Next fires" }
                    @if info.upcoming.is_empty() {
                        p.muted { (if info.state.paused { "None while paused." } else { "None left." }) }
                    } @else {
                        ol { @for &at in &info.upcoming { li { (format::when(format::millis(at), now)) " · " span.muted { (format::exact(format::millis(at))) } } } }
                    }
                }
            }
            section.card.flush {
                h2 { "Recent fires" }
                @if info.state.recent.is_empty() {
                    div.empty { "It has not fired yet." }
                } @else {
                    div.table-wrap {
                        table {
                            thead { tr { th { "Fire time" } th { "Outcome" } th { "Job now" } } }
                            tbody {
                                @for (fire, job_state) in info.state.recent.iter().zip(&info.outcomes).rev() {
                                    tr {
                                        td { (format::when(format::millis(fire.fire_time), now)) }
                                        td { (outcome(fire, now)) }
                                        td {
                                            @match (job_of(fire), job_state) {
                                                (Some(id), Some(state)) => {
                                                    a.mono href=(href("/job", &[("queue", info.spec.queue.as_str()), ("id", &id.to_string())])) { (id) }
                                                    " " (state_badge(*state))
                                                }
                                                (Some(id), None) => { span.mono.muted { (id) } " gone" }
                                                (None, _) => span.zero { "—" },
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(Page {
        title: name.to_string(),
        section: Section::Schedules,
        crumbs: vec![("Schedules".into(), "/schedules".into())],
        body,
        visitor: &visitor,
    }
    .render(&dashboard))
}

fn actions(visitor: &Visitor, name: &ScheduleName, paused: bool) -> Markup {
    let button = |action: &str, label: &str| {
        html! {
            form.inline method="post" action="/act/schedule" {
                (csrf(visitor))
                input type="hidden" name="name" value=(name);
                button type="submit" name="action" value=(action) { (label) }
            }
        }
    };
    html! {
        div.actions {
            (if paused { button("resume", "Resume") } else { button("pause", "Pause") })
            (button("trigger", "Fire now"))
        }
    }
}

/// The schedule's trigger as people write it.
fn trigger(info: &ScheduleInfo) -> String {
    match &info.spec.trigger {
        cron @ Trigger::Cron(_) => format!(
            "{} ({})",
            cron.expression().unwrap_or_default(),
            info.spec.zone
        ),
        Trigger::Every(every) => format!("every {}", format::setting(*every)),
    }
}

fn job_of(fire: &Fire) -> Option<crate::queue::JobId> {
    match &fire.result {
        FireResult::Enqueued(id) | FireResult::StillRunning(id) => Some(*id),
        FireResult::Misfired { .. } | FireResult::Failed(_) => None,
    }
}

fn outcome(fire: &Fire, now: SystemTime) -> Markup {
    let when = format::when(format::millis(fire.handled_at), now);
    match &fire.result {
        FireResult::Enqueued(_) => html! { span.badge.acked { "enqueued" } " " (when) },
        FireResult::StillRunning(_) => {
            html! { span.badge.leased { "skipped: still running" } " " (when) }
        }
        FireResult::Misfired { count } => {
            html! { span.badge.paused { "missed " (format::count(*count)) } " " (when) }
        }
        FireResult::Failed(error) => {
            html! { span.badge.dead title=(error) { "failed" } " " (when) }
        }
    }
}
