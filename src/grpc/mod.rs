//! The gRPC face of the engine: the `jobq.v1.JobQueue`, `jobq.v1.Admin`
//! and `jobq.v1.Schedules` services.
//!
//! Each RPC is a few lines: check the request ([`validate`]), call the
//! [`Engine`](crate::engine::Engine), convert the answer ([`convert`]), and
//! map refusals to statuses in one place ([`status`]). Both services share
//! those three modules and [`observe`] (spans and RPC figures).

mod admin;
mod client_faults;
mod convert;
mod observe;
pub mod pb;
mod produce;
mod schedule_settings;
mod schedules;
mod service;
mod status;
mod stream;
mod validate;

pub use admin::AdminService;
pub(crate) use client_faults::ClientFaultLayer;
pub use schedule_settings::checked_schedule;
pub use service::JobQueueService;
pub use validate::{InvalidField, Limits};
