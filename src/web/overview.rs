//! The overview: every queue with its counts, rates and workers, and the
//! server's own figures.

use std::time::SystemTime;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{Page, Section, count_cell, stat};
use super::params::href;
use super::request::Viewing;
use super::{Dashboard, Shared, WebError, chart, format};
use crate::engine::{EngineStats, QueueInfo};
use crate::queue::QueueName;

/// Queues on one page of the overview.
const PAGE: usize = 100;

/// `GET /`: the overview, from `?after=<queue>` on.
pub(super) async fn page(
    State(dashboard): State<Shared>,
    Viewing { visitor, params }: Viewing,
) -> Result<Response, WebError> {
    let after = params
        .get("after")
        .map(QueueName::new)
        .transpose()
        .map_err(|e| WebError::BadRequest(format!("`after` {e}")))?;
    let mut queues = dashboard
        .engine
        .list_queue_figures(after.as_ref(), PAGE + 1)
        .await?;
    let more = queues.len() > PAGE;
    queues.truncate(PAGE);
    let stats = dashboard.engine.stats().await?;
    let body = html! {
        h1 { "Queues" }
        (server_figures(&dashboard, &stats, &queues, more || after.is_some()))
        section.card.flush {
            div id="queues" data-live {
                (queue_table(&dashboard, &queues))
            }
            @if more || after.is_some() {
                nav.pager {
                    @if after.is_some() { a href="/" { "← First page" } }
                    @if let (true, Some(last)) = (more, queues.last()) {
                        a href=(href("/", &[("after", last.name.as_str())])) { "Next page →" }
                    }
                }
            }
        }
    };
    Ok(Page {
        title: "Queues".into(),
        section: Section::Queues,
        crumbs: Vec::new(),
        body,
        visitor: &visitor,
    }
    .render(&dashboard))
}

/// The server's figures; `paged`: the queues shown are one page of more.
fn server_figures(
    dashboard: &Dashboard,
    stats: &EngineStats,
    queues: &[QueueInfo],
    paged: bool,
) -> Markup {
    let workers: usize = queues.iter().map(|q| q.workers).sum();
    let budget = stats.memory_budget.max(1);
    let used_share = (stats.memory_used as f64 / budget as f64).clamp(0.0, 1.0);
    let uptime = SystemTime::now()
        .duration_since(dashboard.started)
        .unwrap_or_default();
    html! {
        div.stats id="server" data-live {
            (stat("Jobs held", "", format::count(stats.jobs_held as u64)))
            (stat(if paged { "Worker streams, this page" } else { "Worker streams" }, "", format::count(workers as u64)))
            div.stat {
                div.label { "Memory budget" }
                div.value { (format::bytes(stats.memory_used)) }
                div.muted { "of " (format::bytes(stats.memory_budget)) " (" (format!("{:.1}", used_share * 100.0)) " %)" }
                div.meter {
                    svg viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true" {
                        rect x="0" y="0" height="8" width=(format!("{:.2}", used_share * 100.0)) {}
                    }
                }
            }
            (stat("Store", "", dashboard.engine.store_kind()))
            (stat("Up", "", format::span(uptime)))
            (stat("Version", "", env!("CARGO_PKG_VERSION")))
        }
    }
}

/// Why a queue has no rates.
fn not_charted() -> String {
    format!(
        "rates appear within {} of a queue's creation, for the first {} queues by name",
        format::span(super::rates::INTERVAL * 2),
        format::count(super::rates::MAX_CHARTED as u64)
    )
}

fn queue_table(dashboard: &Dashboard, queues: &[QueueInfo]) -> Markup {
    let now = SystemTime::now();
    if queues.is_empty() {
        return html! {
            div.empty {
                p { "No queues yet. A queue appears here when its first job is enqueued, for example:" }
                pre.payload { "grpcurl -plaintext -d '{\"queue\":\"emails\",\"job\":{\"payload\":\"aGk=\"}}' 127.0.0.1:50051 jobq.v1.JobQueue/Enqueue" }
            }
        };
    }
    html! {
        div.table-wrap {
            table {
                thead {
                    tr {
                        th { "Queue" }
                        th.num { "Ready" }
                        th.num.hide-narrow { "Scheduled" }
                        th.num.hide-narrow { "Leased" }
                        th.num { "Dead" }
                        th.num.hide-narrow { "Enqueued/s" }
                        th.num.hide-narrow { "Acked/s" }
                        th.hide-narrow { span.legend { span.enq { "━" } " enqueued " span.ack { "━" } " acked" } }
                        th.num.hide-narrow { "Oldest ready" }
                        th.num { "Workers" }
                        th { "" }
                    }
                }
                tbody {
                    @for queue in queues {
                        @let series = dashboard.rates.series(&queue.name);
                        tr {
                            td.name { a href=(href("/queue", &[("name", queue.name.as_str())])) { (queue.name) } }
                            (count_cell(queue.counts.ready, ""))
                            (count_cell(queue.counts.scheduled, "hide-narrow"))
                            (count_cell(queue.counts.leased, "hide-narrow"))
                            @if queue.counts.dead > 0 {
                                td.num.dead-count { a href=(href("/dead", &[("queue", queue.name.as_str())])) { (format::count(queue.counts.dead as u64)) } }
                            } @else {
                                (count_cell(0, "dead-count"))
                            }
                            @match &series {
                                Some(series) => {
                                    @let (enq, ack) = series.current();
                                    td.num.hide-narrow { (format::rate(enq)) }
                                    td.num.hide-narrow { (format::rate(ack)) }
                                    td.hide-narrow { (chart::rates(series, "")) }
                                }
                                None => {
                                    td.num.hide-narrow.zero { "—" }
                                    td.num.hide-narrow.zero { "—" }
                                    td.hide-narrow.muted title=(not_charted()) { "not sampled yet" }
                                }
                            }
                            td.num.hide-narrow {
                                @match queue.oldest_ready {
                                    Some(at) => (format::when(at, now)),
                                    None => span.zero { "—" },
                                }
                            }
                            (count_cell(queue.workers, ""))
                            td { @if queue.paused { span.badge.paused { "paused" } } }
                        }
                    }
                }
            }
        }
    }
}
