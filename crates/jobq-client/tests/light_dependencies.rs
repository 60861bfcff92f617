//! A service that only enqueues or runs workers depends on this crate
//! alone, so it must not compile the server's machinery: its HTTP router,
//! command line, metrics, OTLP exporter, tables or histograms.

use std::process::Command;

/// Crates only the server (or the load generator) needs.
const SERVER_ONLY: &[&str] = &[
    "axum",
    "clap",
    "prometheus-client",
    "opentelemetry-otlp",
    "comfy-table",
    "hdrhistogram",
    "tonic-health",
    "tonic-reflection",
    "jobq",
];

#[test]
fn the_client_compiles_no_server_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--manifest-path",
            manifest,
            "-p",
            "jobq-client",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"tonic"),
        "the tree was read (it must hold tonic):\n{tree}"
    );
    let found: Vec<&&str> = SERVER_ONLY
        .iter()
        .filter(|name| crates.contains(name))
        .collect();
    assert!(
        found.is_empty(),
        "jobq-client depends on server-only crates {found:?}:\n{tree}"
    );
}
