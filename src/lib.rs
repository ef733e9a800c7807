//! ackstorm: a load tester and simulator for IM message receipts.
//!
//! # Layout
//! - [`profile`]: profile file (TOML) + command-line overrides -> validated [`profile::Plan`].
//! - [`protocol`]: the wire protocol (PROTOCOL.md) as typed frames; parse and encode, no I/O.
//! - [`server`]: the reference receipts server (routing hub, store, WebSocket and HTTP front).
//! - [`collector`]: events from user actors -> HDR histograms, counters, audit (one thread).
//! - [`compare`]: `ackstorm compare`: two results folders (or run sets) metric by metric, with noise.
//! - [`report`]: the run report as data, and its renderers (JSON, terminal table, HTML).
//! - [`sim`]: simulated users: the seeded world, behaviour state machines, actix user actors.
//! - [`transport`]: how user actors reach a server: the driver trait and the native WebSocket driver.
//! - [`runner`]: `ackstorm run`/`strategies`: target, actors, drain, results folder.
//! - [`cli`]: command-line definitions and dispatch (the only place `anyhow` is used).

pub mod cli;
pub mod collector;
pub mod compare;
pub mod profile;
pub mod protocol;
pub mod report;
pub mod runner;
pub mod server;
pub mod sim;
pub mod simulate;
pub mod transport;
