//! A throwaway PostgreSQL cluster of the test's own, in a temporary
//! directory on a port of its own, that the test may stop (as a crash:
//! `pg_ctl stop -m immediate`, so the restart replays its WAL) and start
//! again. Made with the server binaries of Debian's `postgresql` package
//! (`/usr/lib/postgresql/*/bin`, or `JOBQ_TEST_PG_BIN`); without them the
//! test says so and passes without running, unless
//! `JOBQ_TEST_DATABASE_REQUIRED` is set, when it fails.

use std::io::Write;
use std::path::{Path, PathBuf};

use jobq::engine::postgres::testing::REQUIRED_VAR;
use tokio::process::Command;

/// The variable naming the directory of `initdb` and `pg_ctl`.
const BIN_VAR: &str = "JOBQ_TEST_PG_BIN";

pub(crate) struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

/// Where the server binaries are, if anywhere.
fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_VAR) {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    // The newest major version: 9 < 10 < 15 numerically.
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

/// Whether this process runs as root (whose clusters `initdb` refuses).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Cluster {
    /// A new cluster, running; `None` (having said why) without the
    /// server binaries.
    pub(crate) async fn start(test: &str) -> Option<Self> {
        let Some(bin) = binaries() else {
            let why = format!(
                "no PostgreSQL server binaries (Debian's postgresql package, or {BIN_VAR})"
            );
            assert!(
                std::env::var_os(REQUIRED_VAR).is_none(),
                "{test}: {why}, and {REQUIRED_VAR} says they are required"
            );
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("jobq-test-pg-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut cluster = Self { bin, dir, port: 0 };
        if is_root() {
            // initdb refuses root: the cluster belongs to `postgres`.
            let owned = Command::new("chown")
                .args(["-R", "postgres", cluster.path()])
                .status()
                .await
                .expect("chown");
            assert!(owned.success(), "chown of the cluster dir failed");
        }
        let data = cluster.dir.join("data");
        let data = data.to_str().expect("utf-8 path").to_string();
        cluster
            .run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres"])
            .await;
        cluster.port = free_port();
        cluster.start_again().await;
        Some(cluster)
    }

    fn path(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    /// A URL of the cluster's `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts it (again), waiting until it accepts connections.
    pub(crate) async fn start_again(&self) {
        let data = format!("{}/data", self.path());
        let log = format!("{}/log", self.path());
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.path()
        );
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-o", &options, "start"],
        )
        .await;
    }

    /// Stops it as a crash would: no checkpoint, every connection cut.
    pub(crate) async fn crash(&self) {
        let data = format!("{}/data", self.path());
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
            .await;
    }

    async fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let program = program.to_str().expect("utf-8 path").to_string();
        // As `postgres` when this is root.
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &program]);
            c
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(&self.dir)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            std::process::Command::new(&pg_ctl)
        };
        let _ = command
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
