//! The one integration test binary (one link step for all of them). Every test starts the
//! real server on `127.0.0.1:0` and speaks to it over WebSocket; see `common`.

mod audit_faults;
mod bench_cli;
mod common;
mod fake_server;
mod run_cli;
mod run_signals;
mod serve_options;
mod server_concurrency;
mod server_groups;
mod server_limits;
mod server_messages;
mod server_receipts;
mod server_session;
mod server_smoke;
mod server_v11;
