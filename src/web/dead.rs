//! A queue's dead letters: select some or all, redrive or delete them.

use std::time::SystemTime;

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::layout::{Page, Section, csrf};
use super::params::href;
use super::request::Viewing;
use super::{Shared, WebError, format};
use crate::queue::JobState;

/// Dead jobs on one page.
const PAGE: usize = 100;

/// `GET /dead?queue=<queue>[&after=<job>]`.
pub(super) async fn page(
    State(dashboard): State<Shared>,
    Viewing { visitor, params }: Viewing,
) -> Result<Response, WebError> {
    let queue = params.queue("queue")?;
    let here = href("/dead", &[("queue", queue.as_str())]);
    let after = params.job_id("after")?;
    let info = dashboard.engine.queue_figures_of(&queue).await?;
    let page = dashboard
        .engine
        .list_jobs(&queue, Some(JobState::Dead), after, PAGE)
        .await?;
    let now = SystemTime::now();
    let act = visitor.may_act();
    let total = format::count(info.counts.dead as u64);
    let body = html! {
        h1 { "Dead letters of " (queue) span.badge.dead id="dead-count" data-live { (total) } }
        form method="post" action="/act/dead" {
            (csrf(&visitor))
            input type="hidden" name="queue" value=(queue);
            section.card.flush {
                @if act && !page.jobs.is_empty() {
                    div.toolbar {
                        button.primary type="submit" name="action" value="redrive" { "Redrive selected" }
                        button.danger type="submit" name="action" value="delete" { "Delete selected" }
                        span.muted { "or every one of the " (total) ":" }
                        button type="submit" name="action" value="redrive-all" { "Redrive all" }
                        a.button.danger href=(href("/queue/purge", &[("name", queue.as_str()), ("target", "dead")])) { "Delete all…" }
                    }
                }
                @if page.jobs.is_empty() {
                    div.empty { "No dead letters. Jobs land here when they run out of attempts or a worker nacks them as dead." }
                } @else {
                    div.table-wrap {
                        table {
                            thead {
                                tr {
                                    @if act {
                                        th {
                                            // Shown by the script; without it, tick each box.
                                            input type="checkbox" data-select-all hidden aria-label="Select all on this page";
                                        }
                                    }
                                    th { "Job" }
                                    th.num { "Attempts" }
                                    th { "Enqueued" }
                                    th { "Last error" }
                                }
                            }
                            tbody {
                                @for status in &page.jobs {
                                    @let id = status.job.id.to_string();
                                    tr {
                                        @if act {
                                            td { input type="checkbox" name="id" value=(id) aria-label={ "Select " (id) }; }
                                        }
                                        td.mono { a href=(href("/job", &[("queue", queue.as_str()), ("id", &id)])) { (id) } }
                                        td.num { (status.attempts) " / " (status.job.max_attempts) }
                                        td { (format::when(status.job.enqueued_at, now)) }
                                        td.error title=[status.last_error.as_deref()] { (status.last_error.as_deref().unwrap_or("")) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if page.next.is_some() || after.is_some() {
                    nav.pager {
                        @if after.is_some() { a href=(here) { "← First page" } }
                        @if let Some(next) = page.next {
                            a href=(href("/dead", &[("queue", queue.as_str()), ("after", &next.to_string())])) { "Next page →" }
                        }
                    }
                }
            }
        }
    };
    Ok(Page {
        title: format!("Dead letters of {queue}"),
        section: Section::Queues,
        crumbs: vec![
            ("Queues".into(), "/".into()),
            (
                queue.to_string(),
                href("/queue", &[("name", queue.as_str())]),
            ),
        ],
        body,
        visitor: &visitor,
    }
    .render(&dashboard))
}
