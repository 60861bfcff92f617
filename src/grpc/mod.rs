//! The gRPC face of the engine: the `jobq.v1.JobQueue` and `jobq.v1.Admin`
//! services.
//!
//! Each RPC is a few lines: validate and convert the request
//! ([`convert`]), call the [`Engine`](crate::engine::Engine), convert the
//! answer, and map refusals to statuses in one place ([`status`]).

mod admin;
mod convert;
mod observe;
pub mod pb;
mod produce;
mod service;
mod status;
mod stream;

pub use admin::AdminService;
pub use convert::{
    InvalidField, Limits, MAX_ATTEMPTS_LIMIT, MAX_DELAY, MAX_TEXT_BYTES as MAX_REASON_BYTES,
};
pub use service::JobQueueService;
pub use stream::MAX_STREAM_CREDITS;
