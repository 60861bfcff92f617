//! What each request brings, taken before its handler runs: a page's
//! visitor and query, or an action's admin and form.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use super::params::Params;
use super::{Shared, Visitor};

/// A page request: who asks (logged in, or sent to the login page and back
/// here), and the query.
pub(super) struct Viewing {
    pub visitor: Visitor,
    pub params: Params,
}

impl FromRequestParts<Shared> for Viewing {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dashboard: &Shared) -> Result<Self, Response> {
        let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let visitor = dashboard
            .visitor(&parts.headers, here)
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            visitor,
            params: Params::query(parts.uri.query()),
        })
    }
}

/// An action: a form posted by an admin with their session's CSRF token.
pub(super) struct Posted {
    pub visitor: Visitor,
    pub form: Params,
}

impl FromRequest<Shared> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, dashboard: &Shared) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, dashboard)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = Params::parse(&body);
        let visitor = dashboard
            .actor(&headers, &form)
            .map_err(IntoResponse::into_response)?;
        Ok(Self { visitor, form })
    }
}
