//! The dashboard's stylesheet, script and icon, embedded in the binary
//! (no CDN, no build step) and served with a version in their links so a
//! browser may cache them for good.

use std::sync::LazyLock;

use axum::extract::{Path, RawQuery};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use super::WebError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 3] = [
    Asset {
        name: "dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/dashboard.css"),
    },
    Asset {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/dashboard.js"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/icon.svg"),
    },
];

/// A checksum of every asset: it changes whenever one does, so links that
/// carry it are never served stale.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let sum = ASSETS.iter().fold(0, |crc, asset| {
        crc32c::crc32c_append(crc, asset.body.as_bytes())
    });
    format!("{sum:08x}")
});

/// The link to an embedded asset.
pub(super) fn href(name: &str) -> String {
    format!("/assets/{name}?v={}", *VERSION)
}

/// `GET /assets/{name}`.
pub(super) async fn serve(Path(name): Path<String>, RawQuery(query): RawQuery) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return WebError::NotFound(format!("no asset {name:?}")).into_response();
    };
    let versioned = query.as_deref() == Some(&format!("v={}", *VERSION));
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        asset.body,
    )
        .into_response()
}
