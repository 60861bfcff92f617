//! Test support (for this crate's tests and its integration suite): a
//! schema of its own per test, on the database `JOBQ_TEST_DATABASE_URL`
//! names (default: the local server, `postgres://postgres@127.0.0.1:5432/test`);
//! when none answers, tests that need one say so and pass without running.

use std::io::Write;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The variable that points the tests at a database.
pub const DATABASE_VAR: &str = "JOBQ_TEST_DATABASE_URL";

/// Set (to anything) where a database is promised, as in CI: a test that
/// cannot reach it then fails instead of skipping.
pub const REQUIRED_VAR: &str = "JOBQ_TEST_DATABASE_REQUIRED";

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A throwaway schema, dropped (with everything in it) when this is.
#[derive(Debug)]
pub struct TestSchema {
    base: String,
    name: String,
}

impl TestSchema {
    /// A new schema, or `None` (having said why) when no database answers.
    pub async fn create(test: &str) -> Option<Self> {
        let base = std::env::var(DATABASE_VAR).unwrap_or_else(|_| DEFAULT_URL.to_string());
        let connected =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&base)).await;
        let why = match connected {
            Ok(Ok(conn)) => return Some(Self::create_in(conn, base).await),
            Ok(Err(error)) => format!("no PostgreSQL at {base} ({error})"),
            Err(_) => format!("PostgreSQL at {base} did not answer"),
        };
        assert!(
            std::env::var_os(REQUIRED_VAR).is_none(),
            "{test}: {why}, and {REQUIRED_VAR} says one is required"
        );
        // Straight to the process's stderr, past the test harness's
        // capture, so a plain `cargo test` shows what it did not run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: {why}; set {DATABASE_VAR} to run it"
        );
        None
    }

    async fn create_in(mut conn: PgConnection, base: String) -> Self {
        let name = format!("jobq_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test schema {name}: {e}"));
        let _ = conn.close().await;
        Self { base, name }
    }

    /// A URL whose connections use this schema, and carry its name as
    /// their application name (so the drop can end any left behind).
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-csearch_path%3D{}&application_name={}",
            self.base, self.name, self.name
        )
    }

    /// As [`url`](Self::url), reaching the database at `addr` instead (a
    /// proxy in front of it); the base URL must name its host and port.
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        let rest = self
            .base
            .split_once('@')
            .map_or(self.base.as_str(), |(_, r)| r);
        let host_port = rest.split(['/', '?']).next().unwrap_or(rest);
        self.url().replacen(host_port, &addr.to_string(), 1)
    }

    /// The database's address, from the base URL's `host:port`.
    pub fn database_addr(&self) -> String {
        let rest = self
            .base
            .split_once('@')
            .map_or(self.base.as_str(), |(_, r)| r);
        rest.split(['/', '?']).next().unwrap_or(rest).to_string()
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // On a thread of its own: this may run inside a runtime, or in a
        // panic.
        let dropped = std::thread::spawn(
            move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let mut conn = PgConnection::connect(&base).await?;
                    // An engine still running on the test's runtime (which
                    // this drop blocks) may hold locks on the schema: end
                    // its sessions first, or the drop would wait forever.
                    sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                    )
                    .bind(&name)
                    .execute(&mut conn)
                    .await?;
                    sqlx::query("SET lock_timeout = '30s'")
                        .execute(&mut conn)
                        .await?;
                    sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut conn)
                        .await?;
                    conn.close().await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
            },
        )
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}
