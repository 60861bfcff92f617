//! The locked dependencies stay above the versions that fixed known
//! security advisories. The RustSec database itself cannot be fetched
//! where this project is built (its home is a Git repository, not a
//! package registry), so this keeps the floor for the crates in this tree
//! that have had advisories; `cargo audit` should be run wherever the
//! database is reachable.

/// (crate, first fixed version, advisory). Every crate listed must be in
/// the lock file: a floor for a crate the tree no longer has could never
/// fail, so it is an error (drop the entry when the crate leaves).
const FLOORS: &[(&str, (u64, u64, u64), &str)] = &[
    (
        "h2",
        (0, 4, 4),
        "RUSTSEC-2024-0332: CONTINUATION frame flood",
    ),
    (
        "rustls",
        (0, 23, 18),
        "RUSTSEC-2024-0399: panic on a fragmented ClientHello",
    ),
    (
        "ring",
        (0, 17, 12),
        "RUSTSEC-2025-0009: AES panic on overflow checks",
    ),
    (
        "tokio",
        (1, 44, 2),
        "RUSTSEC-2025-0023: broadcast channel unsoundness",
    ),
    (
        "tracing-subscriber",
        (0, 3, 20),
        "RUSTSEC-2025-0055: ANSI escapes in logged values",
    ),
    (
        "slab",
        (0, 4, 11),
        "RUSTSEC-2025-0047: out-of-bounds access",
    ),
    ("bytes", (1, 11, 1), "RUSTSEC-2026-0007: BytesMut overflow"),
    (
        "rustls-webpki",
        (0, 103, 13),
        "RUSTSEC-2026-0098 and others: name constraints",
    ),
    // Not an advisory: 0.14.3 is the first tonic that lets the server set
    // the local-error reset-stream limit (which jobq sets).
    (
        "tonic",
        (0, 14, 3),
        "the HTTP/2 local-error reset-stream limit",
    ),
];

fn parse(version: &str) -> (u64, u64, u64) {
    let mut parts = version
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[test]
fn locked_versions_are_past_known_advisories() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("Cargo.lock");
    let mut packages = Vec::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            packages.push((n, v.trim_matches('"').to_string()));
        }
    }
    assert!(
        packages.iter().any(|(n, _)| n == "tonic"),
        "Cargo.lock parsed"
    );
    let mut problems = Vec::new();
    for (krate, floor, advisory) in FLOORS {
        if !packages.iter().any(|(n, _)| n == krate) {
            problems.push(format!(
                "{krate} has a floor ({advisory}) but is not in Cargo.lock: drop the entry"
            ));
        }
        for (_, version) in packages.iter().filter(|(n, _)| n == krate) {
            if parse(version) < *floor {
                problems.push(format!(
                    "{krate} {version} is below {}.{}.{} ({advisory})",
                    floor.0, floor.1, floor.2
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
