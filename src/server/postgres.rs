//! Starting on a PostgreSQL store: connect (waiting for the database if it
//! is not up yet), migrate, and hand the engine over.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::engine::postgres::{PgEngine, PgOptions};
use crate::engine::{EngineError, Starting};
use crate::metrics::Metrics;
use crate::schedule::ScheduleSpec;

use super::StoreFailed;
use super::declared;

pub(super) use crate::engine::postgres::STORE;

/// How long to wait between tries while the database cannot be reached.
const RETRY: Duration = Duration::from_secs(1);

/// Connects to `url` until it answers, then hands `starting` the engine.
/// A refusal a retry would not mend (a bad URL, a wrong password, a schema
/// newer than this binary) stops the start with its reason.
pub(super) async fn open(
    url: String,
    starting: Arc<Starting>,
    declared: Vec<(crate::queue::ScheduleName, ScheduleSpec)>,
    config: Config,
    metrics: Arc<Metrics>,
) -> anyhow::Result<StoreFailed> {
    let mut options = PgOptions::new(url);
    options.max_connections = config.store_pool_size;
    let mut tries = 0u64;
    let engine = loop {
        match PgEngine::connect_observed(&options, config.engine(), metrics.job_observer()).await {
            Ok(engine) => break engine,
            Err(EngineError::StoreUnavailable { reason, .. }) => {
                tries += 1;
                // Said once, then every tenth try, so the log stays short.
                if tries == 1 || tries.is_multiple_of(10) {
                    tracing::warn!(%reason, tries, "the postgres store cannot be reached yet; health reports NOT_SERVING and calls fail with UNAVAILABLE until it answers");
                }
                tokio::time::sleep(RETRY).await;
            }
            Err(other) => anyhow::bail!("cannot start on the postgres store: {other}"),
        }
    };
    if !declared.is_empty() {
        declared::apply(&engine, declared).await?;
    }
    starting.ready(Arc::new(engine));
    // Losing the database is not fatal: health follows it (see
    // `serve_with`) and the pool reconnects by itself.
    let never: StoreFailed = Box::pin(std::future::pending());
    Ok(never)
}
