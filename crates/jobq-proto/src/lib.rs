//! jobq's protocol, shared by the server and every Rust client:
//! - [`v1`]: the generated `jobq.v1` messages and gRPC clients;
//! - [`limits`]: what the server accepts in a request, so a client can stay
//!   within it without a round trip.

pub mod limits;

/// The generated `jobq.v1` messages and clients (`job_queue_client`,
/// `admin_client`).
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("jobq.v1");
}
