//! The server a run measures: the embedded reference server (in this process, or a child
//! `ackstorm serve` when the sockets would not fit one process's file limit) or an external
//! `ws://` or `wss://` target on any host, resolved here once per run into the [`Endpoint`]
//! every connection uses; and its `/metrics`, read before and after the run (over TLS too).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rand::RngExt;

use super::RunError;
use crate::profile::{Auth, EmbeddedMode, Plan, Protocol, Target};
use crate::server::store::StoreLimits;
use crate::server::{ServerConfig, ServerHandle};
use crate::transport::TransportError;
use crate::transport::connect::{Endpoint, TargetUrl};
use crate::transport::tls::TlsOptions;

/// Connections one process may hold with its own server's sockets beside them: the file
/// limit here is 20,000, and an in-process server doubles every connection.
const IN_PROCESS_MAX_CONNECTIONS: u64 = 9_000;

/// A running target.
pub struct Running {
    /// WebSocket URL.
    pub url: String,
    /// How users log in.
    pub auth: Auth,
    /// The protocol spoken (the embedded server speaks the native one).
    pub protocol: Protocol,
    /// `embedded` or `external`.
    pub kind: &'static str,
    /// The URL resolved (once per run): where every connection goes.
    pub endpoint: Arc<Endpoint>,
    /// What the summary must say about the target before its numbers are trusted
    /// (an unverified certificate).
    pub warnings: Vec<String>,
    server: Server,
}

enum Server {
    External,
    InProcess {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    Child {
        child: std::sync::Mutex<Child>,
        /// How to start it again (fault injection: restarts on the same address).
        config: Box<ServerConfig>,
        threads: Option<usize>,
        addr: String,
    },
}

/// The embedded server's options from the plan.
pub fn server_config(plan: &Plan, secret: &str) -> ServerConfig {
    let Target::Embedded { server, .. } = &plan.target else {
        return ServerConfig::default();
    };
    ServerConfig {
        secret: secret.as_bytes().to_vec(),
        group_read_ack: plan.groups.server_read_ack,
        group_ack_anyone: plan.groups.server_ack_anyone,
        group_ack_max_members: plan.groups.server_ack_max_members as usize,
        group_max_members: server.group_max_members,
        rate_limit: server.rate_limit,
        delay: std::time::Duration::from_millis(server.delay_ms),
        throttle: server.throttle,
        // Every simulated device must fit (the server kicks the earliest beyond its limit).
        max_devices: (plan.population.devices_per_user as usize).max(ServerConfig::default().max_devices),
        limits: StoreLimits {
            offline_single: server.offline_single,
            offline_group: server.offline_group,
            messages: server.messages,
            message_bytes: server.message_bytes,
            ..StoreLimits::default()
        },
        ..ServerConfig::default()
    }
}

/// Starts (or names) the target of `plan`, and resolves its URL.
pub fn start(plan: &Plan) -> Result<Running, RunError> {
    let (mode, threads) = match &plan.target {
        Target::External {
            url,
            auth,
            ca_file,
            insecure,
            protocol,
        } => {
            let tls = TlsOptions {
                ca_file: ca_file.clone(),
                insecure: *insecure,
            };
            // Resolved here, once per run, whatever the protocol.
            let endpoint = match protocol {
                Protocol::Native => Endpoint::resolve(url, &tls)?,
                Protocol::Xmpp(_) => {
                    let parsed = TargetUrl::parse_xmpp(url).map_err(|reason| TransportError::BadUrl {
                        url: url.clone(),
                        reason,
                    })?;
                    Endpoint::resolve_target(parsed, &tls)?
                }
            };
            let endpoint = Arc::new(endpoint);
            let warnings = match *insecure && endpoint.is_tls() {
                true => vec![insecure_warning(url)],
                false => Vec::new(),
            };
            return Ok(Running {
                url: url.clone(),
                auth: auth.clone(),
                protocol: protocol.clone(),
                kind: "external",
                endpoint,
                warnings,
                server: Server::External,
            });
        }
        Target::Embedded { mode, threads, .. } => (*mode, *threads),
    };
    let secret = hex::encode(rand::rng().random::<[u8; 16]>());
    let connections = plan.local_peak_users() * plan.population.devices_per_user;
    let child = match mode {
        EmbeddedMode::ChildProcess => true,
        EmbeddedMode::InProcess => false,
        EmbeddedMode::Auto => connections > IN_PROCESS_MAX_CONNECTIONS,
    };
    let config = server_config(plan, &secret);
    let (url, server) = if child {
        let (addr, child) = start_child(&config, threads, "127.0.0.1:0")?;
        (
            format!("ws://{addr}/ws"),
            Server::Child {
                child: std::sync::Mutex::new(child),
                config: Box::new(config),
                threads,
                addr,
            },
        )
    } else {
        start_in_process(config, threads)?
    };
    Ok(Running {
        endpoint: Arc::new(Endpoint::resolve(&url, &TlsOptions::default())?),
        url,
        auth: Auth::Secret(secret),
        protocol: Protocol::Native,
        kind: "embedded",
        warnings: Vec::new(),
        server,
    })
}

/// The warning of an unverified target, printed the first time in this process (once for a
/// series of runs) and recorded in every run's summary.
fn insecure_warning(url: &str) -> String {
    static PRINTED: AtomicBool = AtomicBool::new(false);
    let text = format!(
        "insecure: the TLS certificate of {url} is NOT verified (--insecure / target.insecure): \
         anyone on the path could stand in for the server; give its CA with --ca-file instead"
    );
    if !PRINTED.swap(true, Ordering::Relaxed) {
        eprintln!("WARNING: {text}");
    }
    text
}

fn start_in_process(config: ServerConfig, threads: Option<usize>) -> Result<(String, Server), RunError> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("embedded-server".into())
        .spawn(move || {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = threads {
                builder.worker_threads(n.max(1));
            }
            let rt = match builder.enable_all().thread_name("server").build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = addr_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                match ServerHandle::start("127.0.0.1:0", config).await {
                    Ok(server) => {
                        let _ = addr_tx.send(Ok(server.ws_url()));
                        let _ = stop_rx.await;
                        let _ = server.stop().await;
                    }
                    Err(e) => {
                        let _ = addr_tx.send(Err(e.to_string()));
                    }
                }
            });
        })
        .map_err(|e| RunError::Target(format!("starting the embedded server thread: {e}")))?;
    let url = addr_rx
        .recv()
        .map_err(|_| RunError::Target("the embedded server thread ended".into()))?
        .map_err(|e| RunError::Target(format!("embedded server: {e}")))?;
    Ok((
        url,
        Server::InProcess {
            stop: Some(stop_tx),
            thread: Some(thread),
        },
    ))
}

/// Starts `ackstorm serve` on `listen`; returns the address it reports and the process.
fn start_child(config: &ServerConfig, threads: Option<usize>, listen: &str) -> Result<(String, Child), RunError> {
    let exe = std::env::current_exe().map_err(|e| RunError::Target(format!("finding this executable: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .args(["--listen", listen])
        .args(["--group-ack-max-members", &config.group_ack_max_members.to_string()])
        .args(["--group-max-members", &config.group_max_members.to_string()])
        .args(["--offline-single", &config.limits.offline_single.to_string()])
        .args(["--offline-group", &config.limits.offline_group.to_string()])
        .args(["--messages", &config.limits.messages.to_string()])
        .args(["--message-bytes", &config.limits.message_bytes.to_string()])
        .args(["--max-devices", &config.max_devices.to_string()])
        .args([
            "--rate-limit",
            &config.rate_limit.map_or(0.0, |r| r.per_second).to_string(),
        ])
        .args(["--rate-burst", &config.rate_limit.map_or(200, |r| r.burst).to_string()])
        .args(["--delay-ms", &config.delay.as_millis().to_string()])
        .args(["--throttle", &config.throttle.unwrap_or(0.0).to_string()])
        .env("ACKSTORM_SECRET", String::from_utf8_lossy(&config.secret).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if config.group_read_ack {
        cmd.arg("--group-read-ack");
    }
    if config.group_ack_anyone {
        cmd.arg("--group-ack-anyone");
    }
    if let Some(n) = threads {
        cmd.args(["--threads", &n.to_string()]);
    }
    // Its own process group: a Ctrl-C at the terminal interrupts the run, which then stops
    // the server itself after the drain.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| RunError::Target(format!("starting `ackstorm serve`: {e}")))?;
    super::interrupt::set_child(Some(child.id()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        return Err(RunError::Target(format!(
            "`ackstorm serve` did not report its address (got {line:?})"
        )));
    };
    Ok((addr.to_string(), child))
}

impl Running {
    /// The embedded server runs in this process.
    pub fn in_process(&self) -> bool {
        matches!(self.server, Server::InProcess { .. })
    }

    /// Stops an embedded server (external targets are left alone).
    pub fn stop(&mut self) {
        match &mut self.server {
            Server::External => {}
            Server::InProcess { stop, thread } => {
                if let Some(s) = stop.take() {
                    let _ = s.send(());
                }
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            Server::Child { child, .. } => {
                let child = child.get_mut().unwrap_or_else(|e| e.into_inner());
                let _ = child.kill();
                let _ = child.wait();
                super::interrupt::set_child(None);
            }
        }
    }

    /// Kills the child server (`kill -9`: no graceful shutdown) and starts it again on the
    /// same address; how long it was down. Only a child server can be restarted.
    pub fn restart(&self) -> Result<Duration, RunError> {
        let Server::Child {
            child,
            config,
            threads,
            addr,
        } = &self.server
        else {
            return Err(RunError::Target(
                "only an embedded child server can be restarted".into(),
            ));
        };
        let mut child = child.lock().unwrap_or_else(|e| e.into_inner());
        let t = std::time::Instant::now();
        let _ = child.kill();
        let _ = child.wait();
        let (_, fresh) = start_child(config, *threads, addr)?;
        *child = fresh;
        Ok(t.elapsed())
    }

    /// Reads the target's `/metrics` on the WebSocket's host and port, over TLS for a
    /// `wss://` target (None when it has none or does not answer in time).
    pub async fn metrics(&self) -> Option<Metrics> {
        let text = tokio::time::timeout(Duration::from_secs(5), get(&self.endpoint, "/metrics"))
            .await
            .ok()??;
        Some(Metrics::parse(&text))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn get(endpoint: &Endpoint, path: &str) -> Option<String> {
    let (stream, _) = endpoint.stream(None).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, endpoint.authority())
        .body(Empty::<Bytes>::new())
        .ok()?;
    let res = sender.send_request(req).await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    let body = res.into_body().collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}

/// The parts of a server's `/metrics` a run uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// `ackstorm_frames_in_total` by op.
    pub frames_in: BTreeMap<String, u64>,
    /// `ackstorm_frames_out_total` by op.
    pub frames_out: BTreeMap<String, u64>,
    /// The labels of `ackstorm_build_info`, as `k="v",...`.
    pub build_info: Option<String>,
    /// `process_cpu_seconds_total`: the server process's CPU time, when it says.
    pub cpu_secs: Option<f64>,
}

impl Metrics {
    /// Reads Prometheus text; unknown metrics are ignored.
    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        let Ok(scrape) = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))) else {
            return m;
        };
        for s in scrape.samples {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => continue,
            };
            match s.metric.as_str() {
                "ackstorm_frames_in_total" | "ackstorm_frames_out_total" => {
                    let Some(op) = s.labels.get("op") else { continue };
                    let map = if s.metric.ends_with("in_total") {
                        &mut m.frames_in
                    } else {
                        &mut m.frames_out
                    };
                    map.insert(op.to_string(), value as u64);
                }
                "process_cpu_seconds_total" => m.cpu_secs = Some(value),
                "ackstorm_build_info" => {
                    let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                    labels.sort();
                    m.build_info = Some(labels.join(","));
                }
                _ => {}
            }
        }
        m
    }

    /// `after - self` per op.
    pub fn delta(&self, after: &Metrics) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let d = |before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>| {
            after
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
                .collect()
        };
        (
            d(&self.frames_in, &after.frames_in),
            d(&self.frames_out, &after.frames_out),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_frame_counters_and_build_info_from_the_reference_servers_text() {
        let m = crate::server::metrics::Metrics::new(ServerConfig::default().build_info_labels());
        m.frame_in(Some(1), 10);
        m.frame_out(2, 10);
        m.frame_out(2, 10);
        let parsed = Metrics::parse(&m.render());
        assert_eq!(parsed.frames_in["send"], 1);
        assert_eq!(parsed.frames_out["received"], 2);
        assert!(parsed.build_info.as_deref().unwrap().contains("version=\""));
        let (din, dout) = Metrics::default().delta(&parsed);
        assert_eq!((din["send"], dout["received"]), (1, 2));
    }
}
