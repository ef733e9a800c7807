//! The TCP and HTTP front: accept loop with connection admission ([`super::admission`]),
//! TLS when configured ([`super::tls`]), `GET /ws` upgraded to a WebSocket, `GET /metrics`
//! and `GET /healthz`, and graceful shutdown of all of it.
//!
//! Until it logs in, a connection lives by the login timeout counted from accept: the TLS
//! handshake must finish within it, request heads must arrive within it (hyper's header timeout, with a timer), the upgrade must
//! complete within it (a request whose body never comes is not upgraded), and an HTTP
//! connection that has not upgraded by then is shut down (one whose response is under way gets
//! [`HTTP_GRACE`] to finish). A request head is read into at most `max_handshake_bytes`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::ServerError;
use super::admission::{Admission, Ticket};
use super::conn;
use super::hub::Hub;
use super::metrics::CloseReason;
use super::store::Store;

type Body = Full<Bytes>;

/// How long shutdown waits for connections to close before returning anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long an HTTP connection still unupgraded at its login deadline may finish a response
/// under way before it is dropped.
const HTTP_GRACE: Duration = Duration::from_secs(1);
/// hyper's floor for its read buffer.
const MIN_HEAD_BYTES: usize = 8 * 1024;

/// Shared by every connection task.
struct Shared<S> {
    hub: Arc<Hub<S>>,
    stop: CancellationToken,
    tasks: TaskTracker,
    ws_config: WebSocketConfig,
    /// Set when the server serves TLS.
    tls: Option<TlsAcceptor>,
}

/// Accepts until `shutdown`, then stops every connection and waits for them.
pub(super) async fn serve<S: Store>(
    listener: TcpListener,
    hub: Arc<Hub<S>>,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    let cfg = hub.config();
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_bytes)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(cfg.max_frame_bytes))
        .max_frame_size(Some(cfg.max_frame_bytes));
    let admission = Admission::new(cfg.max_connections, cfg.max_handshakes, hub.metrics().clone());
    let tls = cfg.tls.clone().map(TlsAcceptor::from);
    let shared = Arc::new(Shared {
        hub,
        stop: CancellationToken::new(),
        tasks: TaskTracker::new(),
        ws_config,
        tls,
    });
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&listener, &admission) => accepted,
        };
        let (stream, ticket) = accepted?;
        // The login timeout counts from here: upgrade and `login` must both fit in it.
        let login_deadline = tokio::time::Instant::now() + shared.hub.config().login_timeout;
        let shared2 = shared.clone();
        shared
            .tasks
            .spawn(serve_http(stream, shared2, Arc::new(ticket), login_deadline));
    }
    shared.stop.cancel();
    shared.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, shared.tasks.wait()).await.is_err() {
        warn!(
            open = shared.tasks.len(),
            "connections still open after the shutdown grace period"
        );
    }
    Ok(())
}

/// Waits for a connection, then gives it a place ([`Admission::admit`]: possibly the place
/// of the oldest connection not logged in yet). Accept errors (out of file descriptors, most
/// often) are logged and retried with backoff rather than ending the server.
async fn accept(listener: &TcpListener, admission: &Arc<Admission>) -> Result<(TcpStream, Ticket), ServerError> {
    let mut backoff = Duration::from_millis(1);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let ticket = admission.admit().await;
                return Ok((stream, ticket));
            }
            Err(e) => {
                warn!(error = %e, "accept failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn serve_http<S: Store>(
    stream: TcpStream,
    shared: Arc<Shared<S>>,
    ticket: Arc<Ticket>,
    login_deadline: tokio::time::Instant,
) {
    let stop = shared.stop.clone();
    let metrics = shared.hub.metrics().clone();
    // Before anything else, TLS (when served), under the same deadline and eviction.
    let Some(stream) =
        super::tls::handshake(shared.tls.as_ref(), stream, &ticket, &stop, login_deadline, &metrics).await
    else {
        return;
    };
    let config = shared.hub.config();
    let (login_timeout, head_bytes) = (config.login_timeout, config.max_handshake_bytes.max(MIN_HEAD_BYTES));
    let served = Arc::new(AtomicBool::new(false));
    let served2 = served.clone();
    let ticket2 = ticket.clone();
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let ticket = ticket2.clone();
        served2.store(true, Ordering::Relaxed);
        async move { Ok::<_, Infallible>(route(req, &shared, ticket, login_deadline)) }
    });
    // Each request head must arrive within the login timeout (a socket opened and left
    // silent, or a head sent a byte at a time), into a bounded buffer.
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(login_timeout)
        .max_buf_size(head_bytes)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        // Evicted to make room: dropped on the spot (nothing was upgraded yet).
        _ = ticket.evicted() => return,
        // Not upgraded by the login deadline: whatever it is doing, it ends. (Once upgraded,
        // `conn` has resolved and the WebSocket's task keeps the deadline.)
        _ = tokio::time::sleep_until(login_deadline) => {
            if !served.load(Ordering::Relaxed) {
                metrics.closed(CloseReason::LoginTimeout);
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HTTP_GRACE, conn).await;
            return;
        }
    };
    if let Err(e) = result {
        if e.is_timeout() && !served.load(Ordering::Relaxed) {
            metrics.closed(CloseReason::LoginTimeout);
        }
        debug!(error = %e, "http connection ended with an error");
    }
}

fn text_response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(Body::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

fn route<S: Store>(
    req: Request<Incoming>,
    shared: &Arc<Shared<S>>,
    ticket: Arc<Ticket>,
    login_deadline: tokio::time::Instant,
) -> Response<Body> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ws") => upgrade(req, shared, ticket, login_deadline),
        (&Method::GET, "/metrics") => text_response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.hub.render_metrics(),
        ),
        (&Method::GET, "/healthz") if !shared.hub.healthy() => {
            text_response(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "store failed\n")
        }
        (&Method::GET, "/healthz") => text_response(StatusCode::OK, PLAIN, "ok\n"),
        (_, "/ws" | "/metrics" | "/healthz") => text_response(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "use GET\n"),
        _ => text_response(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: try /ws, /metrics or /healthz\n",
        ),
    }
}

fn header_has(req: &Request<Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Answers a WebSocket handshake (RFC 6455) and hands the upgraded stream to a connection task.
fn upgrade<S: Store>(
    mut req: Request<Incoming>,
    shared: &Arc<Shared<S>>,
    ticket: Arc<Ticket>,
    login_deadline: tokio::time::Instant,
) -> Response<Body> {
    let key = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let version_ok = req.headers().get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let (Some(accept), true, true, true) = (
        key,
        version_ok,
        header_has(&req, CONNECTION, "upgrade"),
        header_has(&req, UPGRADE, "websocket"),
    ) else {
        let mut res = text_response(
            StatusCode::UPGRADE_REQUIRED,
            "text/plain; charset=utf-8",
            "expected a WebSocket upgrade (version 13)\n",
        );
        res.headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return res;
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Only the body goes on to the upgrade: the head (method, URI, headers) is dropped here,
    // for its header values are slices of hyper's read buffer (8 KiB or more), which the
    // connection would otherwise keep for its whole life.
    let body = req.into_body();
    let shared2 = shared.clone();
    shared.tasks.spawn(async move {
        // The upgrade completes once the 101 is written and the request is done with; one
        // that does not by the login deadline (a body that never comes) is given up.
        let upgraded = tokio::select! {
            r = tokio::time::timeout_at(login_deadline, on_upgrade) => r,
            _ = ticket.evicted() => return,
        };
        drop(body);
        match upgraded {
            Ok(Ok(upgraded)) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(shared2.ws_config))
                        .await;
                conn::serve(ws, shared2.hub.clone(), shared2.stop.clone(), ticket, login_deadline).await;
            }
            Ok(Err(e)) => debug!(error = %e, "websocket upgrade failed"),
            Err(_) => {
                shared2.hub.metrics().closed(CloseReason::LoginTimeout);
                debug!("websocket upgrade not complete by the login deadline");
            }
        }
    });
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = res.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    res
}
