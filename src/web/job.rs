//! A job's page: payload, metadata, attempts and failures, lease, trace;
//! cancel and redrive; and the payload's download.

use std::time::SystemTime;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderValue, header};
use maud::{Markup, html};

use super::layout::{Page, Section, csrf, state_badge};
use super::params::{href, job_id};
use super::request::Viewing;
use super::{Dashboard, Shared, Visitor, WebError, format, payload};
use crate::engine::EngineError;
use crate::queue::{JobId, JobState, JobStatus, QueueName};
use crate::telemetry::TRACEPARENT;

/// `GET /job?queue=<queue>&id=<job>` (without `queue`, the job is looked
/// for in every queue, and the page moves to its link).
pub(super) async fn page(
    State(dashboard): State<Shared>,
    Viewing { visitor, params }: Viewing,
) -> Result<Response, WebError> {
    let id = job_id("id", params.get("id").unwrap_or(""))?;
    let queue = params
        .get("queue")
        .map(|_| params.queue("queue"))
        .transpose()?;
    let (queue_name, status) = find(&dashboard, queue.as_ref(), &id).await?;
    if queue.is_none() {
        let to = href(
            "/job",
            &[("queue", queue_name.as_str()), ("id", &id.to_string())],
        );
        return Ok(Redirect::to(&to).into_response());
    }
    let queue_link = href("/queue", &[("name", queue_name.as_str())]);
    let body = html! {
        div.title-row {
            h1 { span.mono { (id) } (state_badge(status.state)) }
            @if visitor.may_act() { (actions(&visitor, &queue_name, &status)) }
        }
        div id="job" data-live {
            div.grid {
                (facts(&dashboard, &queue_name, &status))
                (metadata(&status))
            }
            (failures(&status))
        }
        (payload_section(&queue_name, &status))
    };
    Ok(Page {
        title: format!("Job {id}"),
        section: Section::Queues,
        crumbs: vec![
            ("Queues".into(), "/".into()),
            (queue_name.to_string(), queue_link),
        ],
        body,
        visitor: &visitor,
    }
    .render(&dashboard))
}

async fn find(
    dashboard: &Dashboard,
    queue: Option<&QueueName>,
    id: &JobId,
) -> Result<(QueueName, JobStatus), WebError> {
    dashboard
        .engine
        .find_job(queue, id)
        .await
        .map_err(|e| match e {
            EngineError::JobNotFound(_) => WebError::NotFound(match queue {
                Some(q) => format!(
                    "queue {q} holds no job {id}, and finished none within its retention window"
                ),
                None => format!(
                    "no queue holds job {id}, and none finished it within its retention window"
                ),
            }),
            other => other.into(),
        })
}

fn actions(visitor: &Visitor, queue: &QueueName, status: &JobStatus) -> Markup {
    let id = status.job.id.to_string();
    let cancellable = matches!(
        status.state,
        JobState::Ready | JobState::Scheduled | JobState::Dead
    );
    html! {
        div.actions {
            @if status.state == JobState::Dead {
                form.inline method="post" action="/act/redrive" {
                    (csrf(visitor))
                    input type="hidden" name="queue" value=(queue);
                    input type="hidden" name="id" value=(id);
                    button.primary type="submit" { "Redrive" }
                }
            }
            @if cancellable {
                form.inline method="post" action="/act/cancel" data-confirm="Cancel this job? It is removed from the queue." {
                    (csrf(visitor))
                    input type="hidden" name="queue" value=(queue);
                    input type="hidden" name="id" value=(id);
                    button.danger type="submit" { (if status.state == JobState::Dead { "Delete" } else { "Cancel" }) }
                }
            }
        }
    }
}

fn facts(dashboard: &Dashboard, queue: &QueueName, status: &JobStatus) -> Markup {
    let now = SystemTime::now();
    let instant_now = tokio::time::Instant::now();
    let wall = |at| format::wall(at, instant_now, now);
    let trace = trace_id(status);
    html! {
        section.card {
            h2 { "Job" }
            dl.facts {
                dt { "Queue" } dd { a href=(href("/queue", &[("name", queue.as_str())])) { (queue) } }
                dt { "State" } dd { (state_badge(status.state)) }
                dt { "Enqueued" } dd { (format::when(status.job.enqueued_at, now)) }
                dt { "Priority" } dd { (status.job.priority) }
                dt { "Attempts" } dd { (status.attempts) " of " (status.job.max_attempts) }
                dt { "Payload" } dd { (format::bytes(status.payload_bytes)) }
                @if let Some(lease) = &status.lease {
                    dt { "Leased" } dd { (format::when(wall(lease.since), now)) " by " (lease.holder.as_deref().unwrap_or("a unary Lease call")) }
                    dt { "Lease ends" } dd { (format::when(wall(lease.deadline), now)) }
                }
                @if let Some(at) = status.finished_at {
                    dt { "Finished" } dd { (format::when(wall(at), now)) }
                }
                @if let Some(error) = &status.last_error {
                    dt { "Last error" } dd.mono { (error) }
                }
                @if let Some(trace) = trace {
                    dt { "Trace" }
                    dd.mono {
                        @match &dashboard.settings.trace_url {
                            Some(template) => a href=(template.replace("{trace_id}", trace)) rel="noreferrer" { (trace) },
                            None => (trace),
                        }
                    }
                }
            }
        }
    }
}

/// The trace id of the job's `traceparent` metadata, when it is well formed.
fn trace_id(status: &JobStatus) -> Option<&str> {
    let value = status.job.metadata.get(TRACEPARENT)?;
    let trace = value.split('-').nth(1)?;
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
}

fn metadata(status: &JobStatus) -> Markup {
    html! {
        section.card {
            h2 { "Metadata" }
            @if status.job.metadata.is_empty() {
                p.muted { "None." }
            } @else {
                dl.facts {
                    @for (key, value) in status.job.metadata.iter() {
                        dt.mono { (key) } dd.mono { (value) }
                    }
                }
            }
        }
    }
}

fn failures(status: &JobStatus) -> Markup {
    let now = SystemTime::now();
    let instant_now = tokio::time::Instant::now();
    html! {
        section.card.flush {
            h2 { "Failed attempts" }
            @if status.history.is_empty() {
                div.empty { "No attempt has failed." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th.num { "Attempt" } th { "When" } th { "Error" } } }
                        tbody {
                            @for failure in status.history.iter().rev() {
                                tr {
                                    td.num { (failure.attempt) }
                                    td { (format::when(format::wall(failure.at, instant_now, now), now)) }
                                    td.mono { (failure.error) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn payload_section(queue: &QueueName, status: &JobStatus) -> Markup {
    let download = href(
        "/job/payload",
        &[
            ("queue", queue.as_str()),
            ("id", &status.job.id.to_string()),
        ],
    );
    html! {
        section.card {
            @if !payload_kept(status) {
                h2 { "Payload" }
                p.muted { "The payload (" (format::bytes(status.payload_bytes)) ") is no longer kept: the job has finished." }
            } @else {
                @let shown = payload::show(&status.job.payload);
                div.title-row {
                    h2 { "Payload " span.muted { "(" (shown.kind) ", " (format::bytes(status.payload_bytes)) ")" } }
                    a.button href=(download) { "Download" }
                }
                pre.payload { (shown.text) }
                @if shown.truncated {
                    p.note { "Only the start is shown. " a href=(download) { "Download the whole payload" } "." }
                }
            }
        }
    }
}

/// Whether the job still holds its payload: a finished job keeps only its
/// size.
fn payload_kept(status: &JobStatus) -> bool {
    status.job.payload.len() as u64 == status.payload_bytes
}

/// `GET /job/payload?queue=<queue>&id=<job>`: the payload as a download.
pub(super) async fn payload(
    State(dashboard): State<Shared>,
    // Taken for its check: a visitor logged in (or sent to log in).
    Viewing { params, .. }: Viewing,
) -> Result<Response, WebError> {
    let queue = params.queue("queue")?;
    let id = job_id("id", params.get("id").unwrap_or(""))?;
    let (_, status) = find(&dashboard, Some(&queue), &id).await?;
    if !payload_kept(&status) {
        return Err(WebError::Conflict(format!(
            "job {id} has finished and its payload is no longer kept"
        )));
    }
    let disposition = format!("attachment; filename=\"{queue}-{id}.bin\"");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        status.job.payload.clone(),
    )
        .into_response())
}
