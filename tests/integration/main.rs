//! The one integration test binary (one link step for all of them). Tests start the real
//! server (or, for the audit, a misbehaving fake one) on `127.0.0.1:0` and speak to it over
//! WebSocket; see `common` and `fake_server`.

mod audit_faults;
mod bench_cli;
mod common;
mod conformance;
mod fake_server;
mod kubernetes;
mod live_metrics;
mod run_cli;
mod run_signals;
mod serve_options;
mod server_bounds;
mod server_concurrency;
mod server_durable;
mod server_groups;
mod server_limits;
mod server_messages;
mod server_receipts;
mod server_session;
mod server_smoke;
mod server_store_errors;
mod server_v11;
mod shards;
mod simulate;
mod tls;
mod xmpp_driver;
mod xmpp_servers;
mod xmpp_smoke;
