//! Compiles the echo baseline's protocol (`jobq.bench.v1`), which only the
//! load generator serves and calls.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &[root.join("jobq/bench/v1/echo.proto")],
        std::slice::from_ref(&root),
    )?;
    println!(
        "cargo:rerun-if-changed={}",
        root.join("jobq/bench").display()
    );
    Ok(())
}
