//! Generates the server's side of the `jobq.v1` services from `proto/`,
//! with a vendored `protoc` so a fresh machine needs no system protobuf
//! compiler. The messages and clients come from the `jobq-proto` crate
//! (generated there from the same files), so this build makes only the
//! service traits and the descriptor set that reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_client(false)
        .extern_path(".jobq.v1", "::jobq_proto::v1")
        .file_descriptor_set_path(out_dir.join("jobq_descriptor.bin"))
        .compile_with_config(
            config,
            &[
                PathBuf::from("proto/jobq/v1/jobq.proto"),
                PathBuf::from("proto/jobq/v1/admin.proto"),
                PathBuf::from("proto/jobq/v1/schedules.proto"),
            ],
            &[PathBuf::from("proto"), protoc_bin_vendored::include_path()?],
        )?;
    println!("cargo:rerun-if-changed=proto/jobq/v1");
    // The postgres store embeds its migrations (sqlx::migrate!).
    println!("cargo:rerun-if-changed=src/engine/postgres/migrations");
    Ok(())
}
