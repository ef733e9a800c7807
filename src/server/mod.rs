//! The reference receipts server: implements all of PROTOCOL.md over WebSocket (`/ws`), with
//! `/metrics` and `/healthz` on the same port.
//!
//! Data flow: [`http`] accepts TCP connections (with [`admission`] deciding which it holds),
//! completes [`tls`] when the server has a certificate, and upgrades `/ws` requests; [`conn`] runs one
//! task per WebSocket (parse, rate limit, write replies and pushes); [`hub`] applies the
//! protocol's rules under one short lock and fans pushes out through per-connection
//! [`outbox`]es, taking back what a closing connection did not write;
//! [`store`] keeps the state behind a small trait. The entry point takes a bound listener and
//! a shutdown future, so tests bind `127.0.0.1:0` and the load tester embeds it in-process.

mod admission;
pub mod bounds;
mod conn;
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod hub;
pub mod metrics;
pub mod online;
pub mod outbox;
pub mod ratelimit;
pub mod slowdown;
pub mod store;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::hub::Hub;
use self::metrics::{Metrics, escape_label};
use self::outbox::QueueBound;
use self::ratelimit::RateLimit;
use self::store::{Compaction, DurableError, DurableStore, MemoryStore, Store, StoreLimits};

/// Server options; the defaults are PROTOCOL.md's.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// HMAC key of login tokens.
    pub secret: Vec<u8>,
    /// Group read receipts enabled (off by default, as in the SDK's console switch).
    pub group_read_ack: bool,
    /// Every member, not only owner and admins, may ask for group read receipts.
    pub group_ack_anyone: bool,
    /// Groups larger than this keep no read receipts (`groupAck:false`); the owner counts.
    pub group_ack_max_members: usize,
    /// Group size limit for create and join.
    pub group_max_members: usize,
    /// Groups one user may create (`forbidden` past it): with the group size limit, what
    /// bounds the memory of groups.
    pub groups_per_user: usize,
    /// Devices one user may have online at once; a login past it kicks the device logged in
    /// longest ago (`kicked {reason:"too_many_devices"}`).
    pub max_devices: usize,
    /// How long after sending a group message read receipts are accepted.
    pub ack_validity: Duration,
    /// Caps on what the store keeps: offline inboxes (counts, bytes per user and in all),
    /// message records (count, bytes), conversations per user, remembered client ids.
    pub limits: StoreLimits,
    /// Per-connection token bucket; `None` disables rate limiting.
    pub rate_limit: Option<RateLimit>,
    /// Largest WebSocket frame accepted (`too_large` and close above it).
    pub max_frame_bytes: usize,
    /// Largest `msg` of a `send` (`bad_request` above it).
    pub max_msg_bytes: usize,
    /// Most TCP connections held at once, logged in or not. When all are taken, the oldest
    /// one that has not logged in yet is closed to make room; when all are logged in,
    /// further ones wait to be accepted.
    pub max_connections: usize,
    /// Most connections held that have not logged in yet (HTTP requests, upgrades, WebSockets
    /// before `login`); past it the oldest of them is closed to make room. Bounds their memory.
    pub max_handshakes: usize,
    /// Largest HTTP request head (request line and headers) read, bytes; a longer one gets
    /// `431` and the connection closes. At least 8 KiB (hyper's floor).
    pub max_handshake_bytes: usize,
    /// A connection that has not completed the WebSocket upgrade and sent `login` within this
    /// time from accept is closed.
    pub login_timeout: Duration,
    /// The server pings each logged-in connection and closes one that answers no ping for
    /// this long (pings go out every third of it).
    pub idle_timeout: Duration,
    /// A write to a connection (one frame, or flushing its write buffer) that does not
    /// complete within this time closes it as a slow consumer.
    pub write_timeout: Duration,
    /// Bound of the live pushes queued for one connection and not yet written; past it the
    /// connection closes as a slow consumer.
    pub queue_bound: QueueBound,
    /// tungstenite read buffer per connection, held for the connection's life (2 KiB, ~12
    /// typical frames a read: ~7 KiB per idle logged-in connection in all, see
    /// `scripts/server-memory.sh`).
    pub read_buffer_bytes: usize,
    /// A deliberately slowed build: fixed delay before each frame is handled.
    pub delay: Duration,
    /// A deliberately slowed build: frames the whole server handles per second (excess queues).
    pub throttle: Option<f64>,
    /// Keep the store in this directory (`--data`): rebuilt from it at start, and every
    /// frame waits until what it reflects is durable (docs/protocol.md, "Durability").
    /// `None`: in memory only.
    pub data: Option<PathBuf>,
    /// Serve TLS (`wss://`, `https://`) with this configuration (`--tls-cert`, `--tls-key`):
    /// the handshake counts against the login timeout. `None`: plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// With `data`: when the durable store's log is compacted into a snapshot.
    pub compaction: Compaction,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            secret: Vec::new(),
            group_read_ack: false,
            group_ack_anyone: false,
            group_ack_max_members: 200,
            group_max_members: 3000,
            groups_per_user: 100,
            max_devices: 4,
            ack_validity: Duration::from_secs(3 * 24 * 3600),
            limits: StoreLimits::default(),
            rate_limit: Some(RateLimit {
                per_second: 100.0,
                burst: 200,
            }),
            max_frame_bytes: 64 * 1024,
            max_msg_bytes: 5 * 1024,
            max_connections: 100_000,
            max_handshakes: 4096,
            max_handshake_bytes: 16 * 1024,
            login_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            queue_bound: QueueBound::DEFAULT,
            read_buffer_bytes: 2 * 1024,
            delay: Duration::ZERO,
            throttle: None,
            data: None,
            tls: None,
            compaction: Compaction::default(),
        }
    }
}

impl ServerConfig {
    /// Labels of `ackstorm_build_info`: version and every option that changes behaviour, so a
    /// load run can record which build and settings it measured.
    pub fn build_info_labels(&self) -> String {
        let rate = match self.rate_limit {
            Some(r) => format!("{}/{}", r.per_second, r.burst),
            None => "off".to_string(),
        };
        let pairs = [
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "store",
                if self.data.is_some() { "durable" } else { "memory" }.to_string(),
            ),
            ("group_read_ack", self.group_read_ack.to_string()),
            ("group_ack_anyone", self.group_ack_anyone.to_string()),
            ("group_ack_max_members", self.group_ack_max_members.to_string()),
            ("group_max_members", self.group_max_members.to_string()),
            ("rate_limit", rate),
            ("delay_ms", self.delay.as_millis().to_string()),
            ("throttle", self.throttle.map_or("off".to_string(), |t| t.to_string())),
            ("idle_timeout_ms", self.idle_timeout.as_millis().to_string()),
            ("write_timeout_ms", self.write_timeout.as_millis().to_string()),
            ("tls", self.tls.is_some().to_string()),
            ("queue_frames", self.queue_bound.frames.to_string()),
            ("queue_bytes", self.queue_bound.bytes.to_string()),
            ("groups_per_user", self.groups_per_user.to_string()),
            ("max_devices", self.max_devices.to_string()),
            ("max_connections", self.max_connections.to_string()),
            ("max_handshakes", self.max_handshakes.to_string()),
            ("offline_user_bytes", self.limits.offline_user_bytes.to_string()),
            ("offline_total_bytes", self.limits.offline_total_bytes.to_string()),
            ("message_bytes", self.limits.message_bytes.to_string()),
            ("messages", self.limits.messages.to_string()),
            ("conversations", self.limits.conversations.to_string()),
            ("sent_ids_total", self.limits.sent_ids_total.to_string()),
        ];
        pairs
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Why the server stopped with an error.
#[derive(Debug, Error)]
pub enum ServerError {
    /// Binding or reading the listener failed.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
    /// The durable store could not open or rebuild its data.
    #[error("store: {0}")]
    Store(#[from] DurableError),
    /// The TLS certificate or key could not be used.
    #[error("TLS: {}: {message}", path.display())]
    Tls {
        /// The PEM file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// Serves `listener` until `shutdown` completes, then closes every connection (WebSocket
/// close 1001) and returns once they are gone (or after a grace period).
pub async fn run(listener: TcpListener, config: ServerConfig, shutdown: impl Future) -> Result<(), ServerError> {
    if let Some(dir) = config.data.clone() {
        let store = DurableStore::open(&dir, config.limits, config.compaction)?;
        return run_with_store(listener, config, store, shutdown).await;
    }
    let store = MemoryStore::new(config.limits);
    run_with_store(listener, config, store, shutdown).await
}

/// [`run`] with a store of the caller's (tests: a store that fails on demand); `config.data`
/// is not used.
pub async fn run_with_store<S: Store>(
    listener: TcpListener,
    config: ServerConfig,
    store: S,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    let metrics = Arc::new(Metrics::new(config.build_info_labels()));
    let hub = Arc::new(Hub::new(Arc::new(config), metrics, store));
    http::serve(listener, hub, shutdown).await
}

/// A server running on the current Tokio runtime (tests, benches, the embedded target).
#[derive(Debug)]
pub struct ServerHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// Serving TLS.
    tls: bool,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl ServerHandle {
    /// Binds `addr` (use `127.0.0.1:0` for a free port) and starts serving.
    pub async fn start(addr: &str, config: ServerConfig) -> Result<ServerHandle, ServerError> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let tls = config.tls.is_some();
        let task = tokio::spawn(async move { run(listener, config, signal.cancelled_owned()).await });
        Ok(ServerHandle { addr, tls, stop, task })
    }

    /// [`ServerHandle::start`] with a store of the caller's (see [`run_with_store`]).
    pub async fn start_with_store<S: Store>(
        addr: &str,
        config: ServerConfig,
        store: S,
    ) -> Result<ServerHandle, ServerError> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let tls = config.tls.is_some();
        let task = tokio::spawn(async move { run_with_store(listener, config, store, signal.cancelled_owned()).await });
        Ok(ServerHandle { addr, tls, stop, task })
    }

    /// The WebSocket URL of this server (`wss://` when it serves TLS).
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.addr)
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.stop.cancel();
        self.task.await.unwrap_or(Ok(()))
    }
}
