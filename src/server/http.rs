//! The HTTP endpoint beside gRPC: `/metrics` for Prometheus and `/healthz`
//! for probes that cannot speak gRPC over TLS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::engine::SharedEngine;
use crate::metrics::Metrics;

/// Serves `GET /metrics` in the Prometheus text format, and `GET /healthz`
/// (200 while `serving`: 503 while the engine is still opening and once
/// shutdown begins) for probes that cannot speak gRPC over TLS, until
/// `stop`.
pub(super) async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    engine: SharedEngine,
    serving: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = Arc::clone(&metrics);
                let engine = Arc::clone(&engine);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.scrape(engine.as_ref()).await,
                    )
                }
            }),
        )
        .route(
            "/healthz",
            axum::routing::get(move || {
                let serving = serving.load(Ordering::Relaxed);
                async move {
                    if serving {
                        (axum::http::StatusCode::OK, "SERVING\n")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING\n")
                    }
                }
            }),
        );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "metrics endpoint failed");
    }
}
