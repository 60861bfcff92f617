//! The one place where what went wrong becomes an HTTP status and a page
//! that says what was wrong and what would be right.

use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use maud::{DOCTYPE, html};

use crate::engine::EngineError;
use crate::queue::QueueError;

/// Why a page or action was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Auth is on and the visitor has no session: the login page, then
    /// `next`.
    #[error("log in to see this page")]
    LoginNeeded {
        /// Where to go once logged in.
        next: String,
    },
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The visitor may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing is there (404).
    #[error("{0}")]
    NotFound(String),
    /// The action does not fit the state things are in (409).
    #[error("{0}")]
    Conflict(String),
    /// The request was addressed to a host this dashboard does not answer
    /// for (421).
    #[error("{0}")]
    Misdirected(String),
    /// The store refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            Self::LoginNeeded { .. } => StatusCode::SEE_OTHER,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::Engine(error) => engine_status(error),
        }
    }
}

/// The status for an engine's refusal or failure. No wildcard arm: a new
/// error variant must be given its status here.
fn engine_status(error: &EngineError) -> StatusCode {
    match error {
        EngineError::Queue(queue_error) => match queue_error {
            QueueError::Full { .. } => StatusCode::INSUFFICIENT_STORAGE,
            QueueError::LeaseNotFound { .. } | QueueError::JobNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            QueueError::JobLeased { .. } | QueueError::JobNotDead { .. } => StatusCode::CONFLICT,
        },
        EngineError::MemoryExhausted { .. }
        | EngineError::TooManyQueues { .. }
        | EngineError::TooManySchedules { .. }
        | EngineError::DataDirFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        EngineError::QueueNotFound(_)
        | EngineError::JobNotFound(_)
        | EngineError::ScheduleNotFound(_) => StatusCode::NOT_FOUND,
        EngineError::QueueBusy { .. } => StatusCode::CONFLICT,
        EngineError::BackoffOutOfOrder { .. } => StatusCode::BAD_REQUEST,
        EngineError::ShuttingDown | EngineError::StoreUnavailable { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        EngineError::StoreFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let Self::LoginNeeded { next } = &self {
            let to = super::params::href("/login", &[("next", next)]);
            return Redirect::to(&to).into_response();
        }
        let status = self.status();
        let reason = status.canonical_reason().unwrap_or("Error");
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                (super::layout::head(&format!("{} {reason}", status.as_u16()), false))
                body {
                    main.narrow {
                        section.card.error-page {
                            h1 { (status.as_u16()) " " (reason) }
                            p.message { (self.to_string()) }
                            p { a href="/" { "Back to the overview" } }
                        }
                    }
                }
            }
        };
        (status, axum::response::Html(page.into_string())).into_response()
    }
}
