//! Compiles `proto/` into Rust with a vendored `protoc`, so a fresh machine
//! needs no system protobuf compiler.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("jobq_descriptor.bin"))
        .compile_with_config(
            config,
            &[
                PathBuf::from("proto/jobq/v1/jobq.proto"),
                PathBuf::from("proto/jobq/v1/admin.proto"),
            ],
            &[PathBuf::from("proto"), well_known],
        )?;
    // The load generator's echo baseline, kept out of the descriptor set
    // that reflection serves: jobq does not serve it.
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &[PathBuf::from("proto/jobq/bench/v1/echo.proto")],
        &[PathBuf::from("proto")],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
