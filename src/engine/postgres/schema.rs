//! The database schema: the migrations in `migrations/`, run at start-up
//! by every replica (or alone by `jobq migrate`) inside the advisory lock
//! sqlx's migrator takes, so replicas starting together do not race.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{PgOptions, STORE};
use crate::engine::EngineError;

/// The schema this binary knows, embedded at build time.
static MIGRATOR: Migrator = sqlx::migrate!("src/engine/postgres/migrations");

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The database has migrations this binary does not know: a newer
    /// jobq migrated it.
    #[error(
        "the database's jobq schema is at version {applied}, newer than this jobq knows (up to {known}); run the newer jobq, or restore a database migrated by this one"
    )]
    TooNew {
        /// The newest version applied.
        applied: i64,
        /// The newest version this binary has.
        known: i64,
    },
    /// A migration this binary has was applied with different contents.
    #[error(
        "the database's jobq migration {0} differs from this jobq's copy of it; the schema was changed by hand or by a different build"
    )]
    Changed(i64),
    /// A migration failed part-way and left the schema dirty.
    #[error(
        "jobq migration {0} failed part-way earlier; repair the schema by hand, then start again"
    )]
    Dirty(i64),
    /// The database failed or could not be reached.
    #[error("migrating the postgres store failed: {0}")]
    Database(String),
}

impl From<SchemaError> for EngineError {
    fn from(error: SchemaError) -> Self {
        EngineError::StoreFailed {
            store: STORE,
            reason: error.to_string(),
        }
    }
}

/// The newest migration this binary knows.
pub(super) fn known_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Runs the migrations the database lacks, on `pool`.
pub(super) async fn run(pool: &PgPool) -> Result<(), SchemaError> {
    MIGRATOR.run(pool).await.map_err(|error| match error {
        MigrateError::VersionMissing(applied) => SchemaError::TooNew {
            applied,
            known: known_version(),
        },
        MigrateError::VersionMismatch(version) => SchemaError::Changed(version),
        MigrateError::Dirty(version) => SchemaError::Dirty(version),
        other => SchemaError::Database(other.to_string()),
    })
}

/// Connects and runs the migrations the database lacks, then disconnects:
/// what `jobq migrate` does. Returns the schema version now applied.
pub async fn migrate(options: &PgOptions) -> Result<i64, SchemaError> {
    let connect = options
        .connect_options()
        .map_err(|e| SchemaError::Database(e.to_string()))?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(|e| SchemaError::Database(e.to_string()))?;
    let ran = run(&pool).await;
    pool.close().await;
    ran.map(|()| known_version())
}
