//! Which store the suite's servers run on: `JOBQ_TEST_STORE=memory` (the
//! default) or `JOBQ_TEST_STORE=postgres`, where each server gets a schema
//! of its own on the database `JOBQ_TEST_DATABASE_URL` names (see
//! `jobq::engine::postgres::testing`). The same tests then run on either.

use jobq::engine::postgres::testing::TestSchema;

/// The variable that picks the store.
pub(crate) const STORE_VAR: &str = "JOBQ_TEST_STORE";

/// Connections each test server opens at most: tests run side by side on
/// one database.
pub(crate) const POOL_SIZE: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Memory,
    Postgres,
}

/// The store this run's servers use.
pub(crate) fn chosen() -> Kind {
    match std::env::var(STORE_VAR).as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("" | "memory") => Kind::Memory,
        Ok("postgres") => Kind::Postgres,
        Ok(other) => panic!("{STORE_VAR}={other:?}: use `memory` (the default) or `postgres`"),
        Err(std::env::VarError::NotUnicode(_)) => {
            panic!("{STORE_VAR} is not UTF-8: use `memory` or `postgres`")
        }
    }
}

/// A fresh schema. A run that asked for PostgreSQL and cannot reach it
/// fails: skipping would pass a suite that never ran.
pub(crate) async fn schema() -> TestSchema {
    match TestSchema::create("integration suite").await {
        Some(schema) => schema,
        None => panic!(
            "{STORE_VAR}=postgres, but no database answers: start one or set {}",
            jobq::engine::postgres::testing::DATABASE_VAR
        ),
    }
}
