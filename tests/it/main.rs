//! The integration suite: each module starts real jobq servers on
//! `127.0.0.1:0` (through `common`) and pins one area's behaviour. One test
//! binary, so the suite links once. The tests that need a process of their
//! own (a global tracing subscriber, signals sent to the process) are
//! `tests/tracing.rs` and `tests/tls_sighup.rs`.

// Tests state their expectations with `expect`: a failed one is the
// test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

mod admin;
mod binary;
mod cli;
mod coalescing;
mod connections;
mod dependency_floor;
mod durable;
mod errors;
mod faults;
mod hostile;
mod keepalive;
mod metrics;
mod postgres;
mod python_example;
mod schedules;
mod security;
mod service;
mod starting;
mod stream_enqueue;
mod stream_leases;
mod unary_rpcs;
mod web;
mod worker;
