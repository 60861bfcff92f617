//! How database failures reach callers.

use crate::engine::EngineError;

/// The store's name in logs, errors and status pages.
pub const STORE: &str = "postgres";

/// An error of the database or of the way to it, as the engine reports it:
/// UNAVAILABLE for what a retry may mend (no connection, a pool that timed
/// out, a server shutting down or failing over), a store failure otherwise.
pub(super) fn store(error: sqlx::Error) -> EngineError {
    use sqlx::Error;
    let transient = match &error {
        Error::Io(_) | Error::PoolTimedOut | Error::PoolClosed | Error::Tls(_) => true,
        Error::WorkerCrashed | Error::Protocol(_) => true,
        Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exceptions; 57P: operator intervention
            // (admin shutdown, crash shutdown, cannot connect now);
            // 40001/40P01: serialization failure, deadlock (retry);
            // 53300: too many connections.
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
                || code == "53300"
        }),
        _ => false,
    };
    let reason = match &error {
        Error::PoolTimedOut => {
            "no database connection could be had in time (the database is down or every connection is busy)".to_string()
        }
        other => other.to_string(),
    };
    if transient {
        EngineError::StoreUnavailable {
            store: STORE,
            reason,
        }
    } else {
        EngineError::StoreFailed {
            store: STORE,
            reason,
        }
    }
}
