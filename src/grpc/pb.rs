//! The `jobq.v1` protocol as the server sees it: the messages and limits
//! from `jobq-proto`, and the service traits generated for the server.

pub use jobq_proto::v1::*;

/// The generated `JobQueue`, `Admin` and `Schedules` service traits and
/// servers.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
mod services {
    tonic::include_proto!("jobq.v1");
}

pub use services::{admin_server, job_queue_server, schedules_server};

/// The encoded descriptors of `jobq.v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("jobq_descriptor");
