//! What the dashboard's buttons do. Each is a POST of a form carrying the
//! session's CSRF token, allowed to admins only; success goes back to the
//! page it came from with a message, a refusal is a page of its own with
//! the status that says why.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::header;

use super::params::{Params, href, job_id};
use super::queue::purge_target;
use super::request::Posted;
use super::session::{self, FLASH_COOKIE, Flash};
use super::{Dashboard, Shared, Visitor, WebError, format};
use crate::engine::{EngineError, PurgeTarget, QueueUpdate};
use crate::queue::{JobId, QueueError};

/// Most jobs one bulk action names.
const MAX_IDS: usize = 1000;

/// Back to `to`, saying `text` there.
fn done(dashboard: &Dashboard, visitor: &Visitor, to: &str, text: String) -> Response {
    let flash = dashboard
        .sessions
        .flash_value(&visitor.session, &Flash { text });
    // Gone after a minute, if the page it was for is never opened.
    let cookie = session::set_cookie(FLASH_COOKIE, &flash, Duration::from_secs(60), visitor.tls);
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// `POST /act/pause`: `queue`.
pub(super) async fn pause(
    State(dashboard): State<Shared>,
    posted: Posted,
) -> Result<Response, WebError> {
    set_paused(&dashboard, posted, true).await
}

/// `POST /act/resume`: `queue`.
pub(super) async fn resume(
    State(dashboard): State<Shared>,
    posted: Posted,
) -> Result<Response, WebError> {
    set_paused(&dashboard, posted, false).await
}

async fn set_paused(
    dashboard: &Dashboard,
    Posted { visitor, form }: Posted,
    paused: bool,
) -> Result<Response, WebError> {
    let queue = form.queue("queue")?;
    dashboard.engine.set_paused(&queue, paused).await?;
    let said = if paused {
        format!("Paused {queue}: workers get no new jobs from it until it is resumed.")
    } else {
        format!("Resumed {queue}.")
    };
    let to = href("/queue", &[("name", queue.as_str())]);
    Ok(done(dashboard, &visitor, &to, said))
}

/// `POST /act/settings`: `queue` and any of `capacity`, `lease_duration`,
/// `max_attempts`, `backoff_base`, `backoff_cap`.
pub(super) async fn settings(
    State(dashboard): State<Shared>,
    Posted { visitor, form }: Posted,
) -> Result<Response, WebError> {
    let queue = form.queue("queue")?;
    let update = QueueUpdate {
        capacity: number(&form, "capacity")?,
        lease_duration: duration(&form, "lease_duration")?,
        max_attempts: number(&form, "max_attempts")?,
        backoff_base: duration(&form, "backoff_base")?,
        backoff_cap: duration(&form, "backoff_cap")?,
        paused: None,
    };
    update
        .check(dashboard.settings.max_lease)
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    dashboard.engine.update_queue(&queue, update, false).await?;
    let to = href("/queue", &[("name", queue.as_str())]);
    Ok(done(
        dashboard.as_ref(),
        &visitor,
        &to,
        format!("Saved the settings of {queue}."),
    ))
}

/// A whole number field, if filled in (thousands separators allowed).
fn number<T: std::str::FromStr>(form: &Params, key: &str) -> Result<Option<T>, WebError> {
    let Some(text) = form.get(key) else {
        return Ok(None);
    };
    let digits: String = text
        .chars()
        .filter(|c| !matches!(c, ',' | '_' | ' '))
        .collect();
    digits.parse().map(Some).map_err(|_| {
        WebError::BadRequest(format!(
            "{key}: {text:?} is not a whole number; write one such as 1000"
        ))
    })
}

/// A duration field, if filled in, as `30s`, `5m`, `1h 30m`.
fn duration(form: &Params, key: &str) -> Result<Option<Duration>, WebError> {
    let Some(text) = form.get(key) else {
        return Ok(None);
    };
    humantime::parse_duration(text.trim())
        .map(Some)
        .map_err(|e| {
            WebError::BadRequest(format!(
                "{key}: {text:?} is not a duration ({e}); write one such as 30s, 5m or 1h 30m"
            ))
        })
}

/// `POST /act/purge`: `queue`, `target` (ready or dead).
pub(super) async fn purge(
    State(dashboard): State<Shared>,
    Posted { visitor, form }: Posted,
) -> Result<Response, WebError> {
    let queue = form.queue("queue")?;
    let target = purge_target(form.get("target"))?;
    let removed = dashboard.engine.purge(&queue, target).await?;
    let what = match target {
        PurgeTarget::Ready => "ready",
        PurgeTarget::Dead => "dead",
    };
    let to = href("/queue", &[("name", queue.as_str())]);
    let said = format!(
        "Deleted {} {what} jobs of {queue}.",
        format::count(removed as u64)
    );
    Ok(done(dashboard.as_ref(), &visitor, &to, said))
}

/// `POST /act/cancel`: `queue`, `id`.
pub(super) async fn cancel(
    State(dashboard): State<Shared>,
    Posted { visitor, form }: Posted,
) -> Result<Response, WebError> {
    let queue = form.queue("queue")?;
    let id = job_id("id", form.get("id").unwrap_or(""))?;
    dashboard.engine.cancel_job(Some(&queue), &id).await?;
    let to = href("/queue", &[("name", queue.as_str())]);
    Ok(done(
        dashboard.as_ref(),
        &visitor,
        &to,
        format!("Cancelled job {id}."),
    ))
}

/// `POST /act/redrive`: `queue`, `id` (a dead job).
pub(super) async fn redrive(
    State(dashboard): State<Shared>,
    Posted { visitor, form }: Posted,
) -> Result<Response, WebError> {
    let queue = form.queue("queue")?;
    let id = job_id("id", form.get("id").unwrap_or(""))?;
    let moved = dashboard.engine.redrive(&queue, Some(&[id])).await?;
    if moved == 0 {
        return Err(WebError::Conflict(format!(
            "job {id} of {queue} is not dead-lettered (any more), so there is nothing to redrive"
        )));
    }
    let to = href(
        "/job",
        &[("queue", queue.as_str()), ("id", &id.to_string())],
    );
    Ok(done(
        dashboard.as_ref(),
        &visitor,
        &to,
        format!("Redrove job {id}: it is ready again, with its attempts reset."),
    ))
}

/// `POST /act/dead`: `queue`, `action` (redrive, delete, redrive-all) and
/// for the first two the `id`s ticked.
pub(super) async fn dead_letters(
    State(dashboard): State<Shared>,
    Posted { visitor, form }: Posted,
) -> Result<Response, WebError> {
    let queue = form.queue("queue")?;
    let ids = form
        .all("id")
        .map(|id| job_id("id", id))
        .collect::<Result<Vec<JobId>, _>>()?;
    if ids.len() > MAX_IDS {
        return Err(WebError::BadRequest(format!(
            "{} jobs were selected; one action takes at most {MAX_IDS}",
            ids.len()
        )));
    }
    let to = href("/dead", &[("queue", queue.as_str())]);
    let action = form.get("action").unwrap_or("");
    let needs_ids = matches!(action, "redrive" | "delete");
    if needs_ids && ids.is_empty() {
        return Err(WebError::BadRequest(
            "no job was selected: tick the jobs to act on, or use Redrive all".into(),
        ));
    }
    let said = match action {
        "redrive" => {
            let moved = dashboard.engine.redrive(&queue, Some(&ids)).await?;
            format!(
                "Redrove {} of the {} jobs selected.",
                format::count(moved as u64),
                format::count(ids.len() as u64)
            )
        }
        "redrive-all" => {
            let moved = dashboard.engine.redrive(&queue, None).await?;
            format!(
                "Redrove all {} dead jobs of {queue}.",
                format::count(moved as u64)
            )
        }
        "delete" => {
            let (mut deleted, mut gone) = (0, 0);
            for id in &ids {
                match dashboard.engine.cancel_job(Some(&queue), id).await {
                    Ok(()) => deleted += 1,
                    // Redriven and taken meanwhile, or already gone: the
                    // count below says so.
                    Err(
                        EngineError::JobNotFound(_)
                        | EngineError::Queue(
                            QueueError::JobLeased { .. } | QueueError::JobNotFound { .. },
                        ),
                    ) => gone += 1,
                    Err(other) => return Err(other.into()),
                }
            }
            let mut said = format!("Deleted {} dead jobs.", format::count(deleted as u64));
            if gone > 0 {
                said.push_str(&format!(
                    " {} had left the dead letters meanwhile.",
                    format::count(gone as u64)
                ));
            }
            said
        }
        other => {
            return Err(WebError::BadRequest(format!(
                "`action` is {other:?}; it must be redrive, delete or redrive-all"
            )));
        }
    };
    Ok(done(dashboard.as_ref(), &visitor, &to, said))
}

/// `POST /act/schedule`: `name`, `action` (pause, resume, trigger).
pub(super) async fn schedule(
    State(dashboard): State<Shared>,
    Posted { visitor, form }: Posted,
) -> Result<Response, WebError> {
    let name = form.schedule("name")?;
    let said = match form.get("action").unwrap_or("") {
        "pause" => {
            dashboard.engine.set_schedule_paused(&name, true).await?;
            format!(
                "Paused {name}: fire times that pass meanwhile follow its misfire rule on resume."
            )
        }
        "resume" => {
            dashboard.engine.set_schedule_paused(&name, false).await?;
            format!("Resumed {name}.")
        }
        "trigger" => {
            let fired = dashboard.engine.trigger_schedule(&name).await?;
            format!("Fired {name} now: job {}.", fired.id)
        }
        other => {
            return Err(WebError::BadRequest(format!(
                "`action` is {other:?}; it must be pause, resume or trigger"
            )));
        }
    };
    let to = href("/schedule", &[("name", name.as_str())]);
    Ok(done(dashboard.as_ref(), &visitor, &to, said))
}
