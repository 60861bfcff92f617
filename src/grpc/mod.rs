//! The gRPC face of the broker: the `jobq.v1.JobQueue` service.
//!
//! Each RPC is a few lines: validate and convert the request
//! ([`convert`]), call the [`Broker`](crate::broker::Broker), convert the
//! answer, and map refusals to statuses in one place ([`status`]).

mod admin;
mod convert;
pub mod pb;
mod produce;
mod service;
mod status;
mod stream;

pub use admin::AdminService;
pub use convert::{InvalidField, Limits, MAX_ATTEMPTS_LIMIT, MAX_TEXT_BYTES as MAX_REASON_BYTES};
pub use service::JobQueueService;
pub use stream::MAX_STREAM_CREDITS;
