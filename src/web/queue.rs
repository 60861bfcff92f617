//! A queue's page: its counts and settings, pause and purge, and its jobs
//! by state with paging and search by job id or metadata.

use std::time::SystemTime;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{Page, Section, csrf, stat, state_badge};
use super::params::href;
use super::request::Viewing;
use super::{Dashboard, Shared, Visitor, WebError, chart, format};
use crate::engine::{EngineError, PurgeTarget, QueueInfo};
use crate::queue::{JobId, JobState, JobStatus, QueueName};

/// Jobs on one page of a queue's list.
const PAGE: usize = 50;
/// Jobs a metadata search looks at per request before it offers to go on.
const SEARCH_SCAN: usize = 5_000;

/// The states a queue's list can be narrowed to, as the URL names them.
const STATES: [(&str, JobState); 4] = [
    ("ready", JobState::Ready),
    ("scheduled", JobState::Scheduled),
    ("leased", JobState::Leased),
    ("dead", JobState::Dead),
];

/// What the jobs list shows: a page of a state, or a search's matches.
struct Listing {
    jobs: Vec<JobStatus>,
    /// Where the next page (or the search's next stretch) starts.
    next: Option<JobId>,
    /// For a search: how many jobs it looked at.
    searched: Option<usize>,
}

/// `GET /queue?name=<queue>[&state=][&after=][&q=]`.
pub(super) async fn page(
    State(dashboard): State<Shared>,
    Viewing { visitor, params }: Viewing,
) -> Result<Response, WebError> {
    let name = params.queue("name")?;
    let state = match params.get("state") {
        None => None,
        Some(text) => Some(parse_state(text)?),
    };
    let after = params.job_id("after")?;
    let search = params.get("q").map(str::trim).filter(|q| !q.is_empty());
    let info = dashboard.engine.queue_figures_of(&name).await?;
    let listing = match search {
        Some(q) => search_jobs(&dashboard, &name, state, after, q).await?,
        None => {
            let page = dashboard
                .engine
                .list_jobs(&name, state, after, PAGE)
                .await?;
            Listing {
                jobs: page.jobs,
                next: page.next,
                searched: None,
            }
        }
    };
    let body = html! {
        div.title-row {
            h1 {
                (name)
                @if info.paused { span.badge.paused { "paused" } } @else { span.badge.active { "active" } }
            }
            div.actions {
                @if visitor.may_act() {
                    form.inline method="post" action=(if info.paused { "/act/resume" } else { "/act/pause" }) {
                        (csrf(&visitor))
                        input type="hidden" name="queue" value=(name);
                        button type="submit" { (if info.paused { "Resume leasing" } else { "Pause leasing" }) }
                    }
                }
                a.button href=(href("/dead", &[("queue", name.as_str())])) { "Dead letters" }
            }
        }
        (figures(&dashboard, &info))
        (jobs_section(&name, state, search, after, &listing))
        div.grid {
            (settings(&visitor, &info))
            @if visitor.may_act() { (purging(&info)) }
        }
    };
    Ok(Page {
        title: name.to_string(),
        section: Section::Queues,
        crumbs: vec![("Queues".into(), "/".into())],
        body,
        visitor: &visitor,
    }
    .render(&dashboard))
}

/// A state as the URL names it.
fn parse_state(text: &str) -> Result<JobState, WebError> {
    STATES
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, state)| *state)
        .ok_or_else(|| {
            WebError::BadRequest(format!(
                "`state` is {text:?}; it must be one of ready, scheduled, leased or dead (or left out for all)"
            ))
        })
}

/// A job id finds that job; other text finds jobs with a metadata value
/// holding it (`key=value`: that exact entry), looking at up to
/// [`SEARCH_SCAN`] jobs per request.
async fn search_jobs(
    dashboard: &Dashboard,
    queue: &QueueName,
    state: Option<JobState>,
    mut after: Option<JobId>,
    q: &str,
) -> Result<Listing, WebError> {
    if let Ok(id) = q.parse::<JobId>() {
        let jobs = match dashboard.engine.find_job(Some(queue), &id).await {
            Ok((_, status)) => vec![status],
            Err(EngineError::JobNotFound(_)) => Vec::new(),
            Err(other) => return Err(other.into()),
        };
        return Ok(Listing {
            jobs,
            next: None,
            searched: Some(1),
        });
    }
    let entry = q.split_once('=');
    let matches = |status: &JobStatus| {
        status.job.metadata.iter().any(|(key, value)| match entry {
            Some((k, v)) => key == k && value == v,
            None => value.contains(q),
        })
    };
    let (mut jobs, mut searched) = (Vec::new(), 0);
    loop {
        let page = dashboard.engine.list_jobs(queue, state, after, 500).await?;
        searched += page.jobs.len();
        jobs.extend(page.jobs.into_iter().filter(|s| matches(s)));
        after = page.next;
        if jobs.len() >= PAGE || searched >= SEARCH_SCAN || after.is_none() {
            break;
        }
    }
    Ok(Listing {
        jobs,
        next: after,
        searched: Some(searched),
    })
}

fn figures(dashboard: &Dashboard, info: &QueueInfo) -> Markup {
    let series = dashboard.rates.series(&info.name).unwrap_or_default();
    let (enq, ack) = series.current();
    let now = SystemTime::now();
    html! {
        div id="figures" data-live {
            div.stats {
                (stat("Ready", "ready", format::count(info.counts.ready as u64)))
                (stat("Scheduled", "scheduled", format::count(info.counts.scheduled as u64)))
                (stat("Leased", "leased", format::count(info.counts.leased as u64)))
                (stat("Dead", "dead", format::count(info.counts.dead as u64)))
                (stat("Workers", "", format::count(info.workers as u64)))
                div.stat {
                    div.label { "Oldest ready" }
                    div.value {
                        @match info.oldest_ready {
                            Some(at) => (format::when(at, now)),
                            None => span.zero { "—" },
                        }
                    }
                }
            }
            section.card {
                div.title-row {
                    h2 { "Recent rates" }
                    span.legend { span.enq { "━" } " enqueued " (format::rate(enq)) " · " span.ack { "━" } " acked " (format::rate(ack)) }
                }
                (chart::rates(&series, "wide"))
                p.note {
                    "Since created: " (format::count(info.stats.enqueued)) " enqueued, "
                    (format::count(info.stats.acked)) " acked, " (format::count(info.stats.nacked)) " nacked, "
                    (format::count(info.stats.expired)) " leases expired, "
                    (format::count(info.stats.dead_lettered)) " dead-lettered."
                }
            }
        }
    }
}

fn jobs_section(
    name: &QueueName,
    state: Option<JobState>,
    search: Option<&str>,
    after: Option<JobId>,
    listing: &Listing,
) -> Markup {
    let state_name = state.map(|s| super::layout::state_names(s).0);
    let tab = |label: &str, value: Option<&str>| {
        let mut pairs = vec![("name", name.as_str())];
        if let Some(v) = value {
            pairs.push(("state", v));
        }
        let class = if value == state_name { "here" } else { "" };
        html! { a class=(class) href=(href("/queue", &pairs)) { (label) } }
    };
    let mut base = vec![("name", name.as_str())];
    if let Some(s) = state_name {
        base.push(("state", s));
    }
    let next_link = listing.next.map(|next| {
        let next = next.to_string();
        let mut pairs = base.clone();
        if let Some(q) = search {
            pairs.push(("q", q));
        }
        pairs.push(("after", next.as_str()));
        href("/queue", &pairs)
    });
    // Live unless searching: a search's result should not shift under the
    // reader, nor scan again every second.
    let live_id = if search.is_some() {
        "jobs-found"
    } else {
        "jobs"
    };
    html! {
        section.card.flush {
            h2 { "Jobs" }
            div.toolbar {
                nav.tabs {
                    (tab("All", None))
                    @for (label, _) in STATES { (tab(label, Some(label))) }
                }
                form.search method="get" action="/queue" {
                    input type="hidden" name="name" value=(name);
                    @if let Some(s) = state_name { input type="hidden" name="state" value=(s); }
                    input type="search" name="q" value=[search] placeholder="Job id, metadata value or key=value" aria-label="Search jobs";
                    button type="submit" { "Search" }
                }
            }
            @if search.is_none() {
                div id=(live_id) data-live { (job_table(name, &listing.jobs)) }
            } @else {
                div id=(live_id) { (job_table(name, &listing.jobs)) }
            }
            @if let Some(searched) = listing.searched {
                p.note.toolbar { "Looked at " (format::count(searched as u64)) " jobs; " (format::count(listing.jobs.len() as u64)) " match." }
            }
            @if next_link.is_some() || after.is_some() {
                nav.pager {
                    @if after.is_some() { a href=(href("/queue", &base)) { "← First page" } }
                    @if let Some(link) = &next_link {
                        a href=(link) { (if search.is_some() { "Keep searching →" } else { "Next page →" }) }
                    }
                }
            }
        }
    }
}

/// A table of jobs, each linked to its page.
fn job_table(queue: &QueueName, jobs: &[JobStatus]) -> Markup {
    let now = SystemTime::now();
    if jobs.is_empty() {
        return html! { div.empty { "No jobs here." } };
    }
    html! {
        div.table-wrap {
            table {
                thead {
                    tr {
                        th { "Job" }
                        th { "State" }
                        th.num { "Priority" }
                        th.num { "Attempts" }
                        th.num.hide-narrow { "Size" }
                        th { "Enqueued" }
                        th.hide-narrow { "Last error" }
                    }
                }
                tbody {
                    @for status in jobs {
                        @let id = status.job.id.to_string();
                        tr {
                            td.mono { a href=(href("/job", &[("queue", queue.as_str()), ("id", &id)])) { (id) } }
                            td { (state_badge(status.state)) }
                            td.num { (status.job.priority) }
                            td.num { (status.attempts) " / " (status.job.max_attempts) }
                            td.num.hide-narrow { (format::bytes(status.payload_bytes)) }
                            td { (format::when(status.job.enqueued_at, now)) }
                            td.error.hide-narrow title=[status.last_error.as_deref()] { (status.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

fn settings(visitor: &Visitor, info: &QueueInfo) -> Markup {
    let config = &info.config;
    let field = |label: &str, name: &str, value: String, hint: &str| {
        html! {
            label.field {
                (label)
                input type="text" name=(name) value=(value) title=(hint) readonly[!visitor.may_act()];
            }
        }
    };
    html! {
        section.card {
            h2 { "Settings" }
            form method="post" action="/act/settings" {
                (csrf(visitor))
                input type="hidden" name="queue" value=(info.name);
                div.fields {
                    (field("Capacity (jobs)", "capacity", config.capacity.to_string(), "jobs held at most, from 1 to 100,000,000"))
                    (field("Lease", "lease_duration", format::setting(config.lease_duration), "default lease, e.g. 30s or 5m"))
                    (field("Max attempts", "max_attempts", config.max_attempts.to_string(), "deliveries before dead-lettering, 1 to 1000"))
                    (field("Backoff base", "backoff_base", format::setting(config.retry.base), "wait after the first failure, e.g. 1s"))
                    (field("Backoff cap", "backoff_cap", format::setting(config.retry.cap), "longest wait between attempts, e.g. 15m"))
                }
                @if visitor.may_act() {
                    button.primary type="submit" { "Save settings" }
                } @else {
                    p.note { "Only an admin may change settings." }
                }
            }
        }
    }
}

fn purging(info: &QueueInfo) -> Markup {
    let link = |target: &str| {
        href(
            "/queue/purge",
            &[("name", info.name.as_str()), ("target", target)],
        )
    };
    html! {
        section.card {
            h2 { "Purge" }
            p.note { "Removes jobs for good. You are asked to confirm, with the count, first." }
            div.actions {
                a.button.danger href=(link("ready")) { "Purge " (format::count(info.counts.ready as u64)) " ready…" }
                a.button.danger href=(link("dead")) { "Purge " (format::count(info.counts.dead as u64)) " dead…" }
            }
        }
    }
}

/// `GET /queue/purge?name=<queue>&target=ready|dead`: asks to confirm,
/// naming the count.
pub(super) async fn purge_page(
    State(dashboard): State<Shared>,
    Viewing { visitor, params }: Viewing,
) -> Result<Response, WebError> {
    let name = params.queue("name")?;
    let target = purge_target(params.get("target"))?;
    let back = href("/queue", &[("name", name.as_str())]);
    if !visitor.may_act() {
        return Err(WebError::Forbidden(format!(
            "a {} may look but not purge; log in with an admin token",
            visitor.session.role.name()
        )));
    }
    let info = dashboard.engine.queue_info(&name).await?;
    let (count, what) = match target {
        PurgeTarget::Ready => (info.counts.ready, "ready"),
        PurgeTarget::Dead => (info.counts.dead, "dead"),
    };
    let body = html! {
        section.card.confirm {
            h1 { "Purge " (what) " jobs of " (name) "?" }
            p { "This deletes the " strong { (format::count(count as u64)) " " (what) } " jobs of " strong { (name) } " for good. Jobs that become " (what) " meanwhile go too." }
            div.actions {
                form.inline method="post" action="/act/purge" {
                    (csrf(&visitor))
                    input type="hidden" name="queue" value=(name);
                    input type="hidden" name="target" value=(what);
                    button.danger.solid type="submit" { "Delete " (format::count(count as u64)) " " (what) " jobs" }
                }
                a.button href=(back) { "Cancel" }
            }
        }
    };
    Ok(Page {
        title: format!("Purge {name}"),
        section: Section::Queues,
        crumbs: vec![
            ("Queues".into(), "/".into()),
            (name.to_string(), back.clone()),
        ],
        body,
        visitor: &visitor,
    }
    .render(&dashboard))
}

/// `ready` or `dead`.
pub(super) fn purge_target(text: Option<&str>) -> Result<PurgeTarget, WebError> {
    match text {
        Some("ready") => Ok(PurgeTarget::Ready),
        Some("dead") => Ok(PurgeTarget::Dead),
        other => Err(WebError::BadRequest(format!(
            "`target` is {other:?}; it must be ready or dead"
        ))),
    }
}
