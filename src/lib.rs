//! ackstorm: a load tester and simulator for IM message receipts.
//!
//! # Layout
//! - [`protocol`]: the wire protocol (PROTOCOL.md) as typed frames; parse and encode, no I/O.
//! - [`server`]: the reference receipts server (routing hub, store, WebSocket and HTTP front).
//! - [`report`]: the run report as data, and its renderers (JSON, terminal table, HTML).
//! - [`cli`]: command-line definitions and dispatch (the only place `anyhow` is used).

pub mod cli;
pub mod protocol;
pub mod report;
pub mod server;
