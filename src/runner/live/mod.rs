//! Live metrics while a run goes (`tester.metrics_listen`, `--metrics-listen ADDR`): `GET
//! /metrics` in Prometheus text ([`render`]) and `GET /healthz`, served with hyper on the
//! run's own runtime, so a fleet of testers can be watched in Grafana
//! (`deploy/grafana/ackstorm-dashboard.json`).
//!
//! The listener is bound as the run's actix part begins, before groups are created and any
//! user starts (a bind failure ends the run at once, naming the address), and closed when the
//! run ends, before the collector folds its result. It only reads the collector; it must not
//! change what a run does or measures.

mod render;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::RunError;
use crate::collector::{Event, Sink, Snapshot};

use render::{Info, render};

/// How long a scrape waits for the collector (it answers within its idle poll, 64 ms).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);
/// How long a scraper may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a scrape under way at the end of the run may take to finish.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The live metrics address of worker `i` of `run --workers`: the port plus `i`, so that
/// each worker process serves its own (port 0 stays 0: each gets a free port).
pub(crate) fn worker_addr(addr: SocketAddr, i: u32) -> Result<SocketAddr, RunError> {
    if addr.port() == 0 {
        return Ok(addr);
    }
    let port = u16::try_from(i)
        .ok()
        .and_then(|i| addr.port().checked_add(i))
        .ok_or_else(|| {
            RunError::Setup(format!(
                "tester.metrics_listen: {addr} plus worker {i} passes port 65535"
            ))
        })?;
    Ok(SocketAddr::new(addr.ip(), port))
}

/// A bound listener, not serving yet.
pub(crate) struct Bound {
    listener: TcpListener,
}

/// Binds `addr` (`tester.metrics_listen`).
pub(crate) async fn bind(addr: SocketAddr) -> Result<Bound, RunError> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(Bound { listener }),
        Err(source) => Err(RunError::MetricsListen { addr, source }),
    }
}

/// What every scrape needs.
struct Shared {
    sink: Sink,
    run: String,
    name: String,
    start: Instant,
}

impl Bound {
    /// The address it is bound to.
    #[cfg(test)]
    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until [`Live::stop`]: each scrape asks the collector behind `sink` for a
    /// snapshot; `run` is the run's tag, `name` the profile's name, `start` its time zero.
    pub(crate) fn serve(self, sink: Sink, run: &str, name: &str, start: Instant) -> Live {
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            sink,
            run: run.to_string(),
            name: name.to_string(),
            start,
        });
        let task = tokio::spawn(accept_loop(self.listener, shared, stop.clone()));
        Live { stop, task: Some(task) }
    }
}

/// The exporter while it serves; dropping it stops serving too (without waiting).
pub(crate) struct Live {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Live {
    /// Stops accepting, lets scrapes under way finish (briefly) and closes the listener.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                tasks.spawn(serve_conn(stream, shared.clone(), stop.clone()));
            }
            Err(e) => {
                // Out of file descriptors, most often: the run goes on, the scrape waits.
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    tasks.close();
    let _ = tokio::time::timeout(STOP_GRACE, tasks.wait()).await;
}

async fn serve_conn(stream: TcpStream, shared: Arc<Shared>, stop: CancellationToken) {
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(req, shared).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let done = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(STOP_GRACE, conn).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = done {
        tracing::debug!(error = %e, "metrics connection ended with an error");
    }
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

async fn route<B>(req: Request<B>, shared: Arc<Shared>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    // Nothing of the request is held across the wait for the collector.
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    drop(req);
    match (&method, path.as_str()) {
        (&Method::GET, "/metrics") => match snapshot(&shared).await {
            Some(s) => {
                let info = Info {
                    run: shared.run.clone(),
                    name: shared.name.clone(),
                    elapsed_secs: shared.start.elapsed().as_secs_f64(),
                };
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    render(&s, &info),
                )
            }
            None => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "the collector did not answer\n"),
        },
        (&Method::GET, "/healthz") => text(StatusCode::OK, PLAIN, "ok\n"),
        (_, "/metrics" | "/healthz") => text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "use GET\n"),
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found: try /metrics or /healthz\n"),
    }
}

/// A fresh snapshot for one scrape.
///
/// Asked of the collector per scrape, rather than cached from the progress line's polling:
/// the figures are those of the scrape's moment, nothing is asked while nobody scrapes, and
/// it works with the progress line off (`--no-progress`, the usual case on a fleet). The
/// collector's answer is cheap (counters copied, the latency window's quantiles worked out
/// already as each second closed). Its reply channel is a blocking one, so the wait runs on
/// the blocking pool, never on the run's System thread that starts the users.
async fn snapshot(shared: &Shared) -> Option<Snapshot> {
    let sink = shared.sink.clone();
    let ask = move || {
        let (tx, rx) = mpsc::channel();
        sink.send(Event::Snapshot(tx)).ok()?;
        rx.recv_timeout(SNAPSHOT_WAIT).ok()
    };
    tokio::task::spawn_blocking(ask).await.ok().flatten()
}

#[cfg(test)]
#[path = "dashboard_tests.rs"]
mod dashboard_tests;

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("a reply in time")
            .unwrap();
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (
            status,
            text.split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default(),
        )
    }

    #[test]
    fn each_worker_gets_the_next_port() {
        let at = |a: &str, i| {
            worker_addr(a.parse().unwrap(), i)
                .map(|a| a.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(at("0.0.0.0:9464", 0).unwrap(), "0.0.0.0:9464");
        assert_eq!(at("0.0.0.0:9464", 3).unwrap(), "0.0.0.0:9467");
        assert_eq!(at("127.0.0.1:0", 3).unwrap(), "127.0.0.1:0");
        let err = at("[::1]:65535", 1).unwrap_err();
        assert!(err.contains("[::1]:65535") && err.contains("65535"), "{err}");
    }

    #[tokio::test]
    async fn serves_the_collectors_figures_and_stops() {
        let (sink, rx) = mpsc::channel::<Event>();
        // A stand-in collector answering snapshots with 5 users connected.
        let collector = std::thread::spawn(move || {
            while let Ok(e) = rx.recv() {
                if let Event::Snapshot(reply) = e {
                    let _ = reply.send(Snapshot {
                        connected: 5,
                        ..Snapshot::default()
                    });
                }
            }
        });
        let bound = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = bound.local_addr().unwrap();
        // The address is taken: a second bind fails naming it.
        let err = bind(addr).await.err().expect("address in use");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        let live = bound.serve(sink.clone(), "t1", "tiny", Instant::now());
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("ackstorm_tester_users_connected 5\n"), "{body}");
        assert!(
            body.contains(r#"ackstorm_tester_info{run="t1",name="tiny"} 1"#),
            "{body}"
        );
        assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_string()));
        assert_eq!(get(addr, "/nope").await.0, 404);
        live.stop().await;
        assert!(TcpStream::connect(addr).await.is_err(), "still listening after stop");
        drop(sink);
        collector.join().unwrap();
    }
}
