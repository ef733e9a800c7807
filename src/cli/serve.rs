//! `ackstorm serve`: the reference server's flags, each checked against its range as it is
//! parsed (absurd values get a clear error, never a panic), and running it until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::net::TcpListener;

use crate::server::outbox::QueueBound;
use crate::server::ratelimit::RateLimit;
use crate::server::store::{Compaction, StoreLimits};
use crate::server::{self, ServerConfig};

use crate::server::bounds as serve_bounds;

/// `0` (off) or a rate within [`serve_bounds::RATE`].
fn rate_per_second(text: &str) -> Result<f64, String> {
    let v: f64 = text.trim().parse().map_err(|e| format!("not a number ({e})"))?;
    if v == 0.0 || serve_bounds::RATE.contains(&v) {
        Ok(v)
    } else {
        let (lo, hi) = (serve_bounds::RATE.start(), serve_bounds::RATE.end());
        Err(format!(
            "use 0 (off) or a rate between {lo} and {hi:e} frames per second"
        ))
    }
}

/// A duration above zero and at most [`serve_bounds::MAX_TIMEOUT`].
fn timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration like 10s ({e})"))?;
    if d.is_zero() || d > serve_bounds::MAX_TIMEOUT {
        return Err(format!("{text} must be longer than 0 and at most 1 day"));
    }
    Ok(d)
}

/// A byte count within `range`: a number, or one with a unit (`64KiB`, `256 MiB`, `1GB`;
/// binary units are powers of 1,024, decimal ones of 1,000), as in the usage line.
fn bytes<T: TryFrom<u64> + Clone + Send + Sync + 'static>(
    range: std::ops::RangeInclusive<u64>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text| {
        let n = parse_size::parse_size(text)
            .map_err(|e| format!("{text:?} is not a byte count like 65536, 64KiB or 256MiB ({e})"))?;
        if !range.contains(&n) {
            return Err(format!(
                "{n} bytes is not between {} and {}",
                range.start(),
                range.end()
            ));
        }
        T::try_from(n).map_err(|_| format!("{n} bytes is more than this machine can address"))
    }
}

/// An integer flag within `range`, as `usize`.
fn within(range: std::ops::RangeInclusive<u64>) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(range)
}

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on; port 0 picks a free port. The first line on stdout is
    /// `listening on ADDR`.
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: SocketAddr,
    /// HMAC key of login tokens.
    #[arg(long, env = "ACKSTORM_SECRET", hide_env_values = true)]
    secret: String,
    /// Enable group read receipts (off by default).
    #[arg(long)]
    group_read_ack: bool,
    /// Let every member, not only owner and admins, ask for group read receipts.
    #[arg(long)]
    group_ack_anyone: bool,
    /// Groups with more members than this keep no read receipts (groupAck:false); 2 to 1000000.
    #[arg(long, default_value_t = 200, value_parser = within(serve_bounds::GROUP_MEMBERS))]
    group_ack_max_members: usize,
    /// Group size limit, 2 to 1000000.
    #[arg(long, default_value_t = 3000, value_parser = within(serve_bounds::GROUP_MEMBERS))]
    group_max_members: usize,
    /// Per-connection rate limit in frames per second (0.001 to 1e9); 0 turns rate limiting off.
    #[arg(long, default_value_t = 100.0, value_parser = rate_per_second, allow_negative_numbers = true)]
    rate_limit: f64,
    /// Per-connection burst (token bucket capacity).
    #[arg(long, default_value_t = 200)]
    rate_burst: u32,
    /// Validity window of group read receipts, in seconds (1 to ten years).
    #[arg(long, default_value_t = 3 * 24 * 3600, value_parser = clap::value_parser!(u64).range(serve_bounds::ACK_VALIDITY_SECS))]
    ack_validity_secs: u64,
    /// Offline one-to-one messages kept per user (0 keeps none; at most 1000000).
    #[arg(long, default_value_t = StoreLimits::default().offline_single, value_parser = within(serve_bounds::OFFLINE))]
    offline_single: usize,
    /// Offline group messages kept per user (0 keeps none; at most 1000000).
    #[arg(long, default_value_t = StoreLimits::default().offline_group, value_parser = within(serve_bounds::OFFLINE))]
    offline_group: usize,
    /// Largest WebSocket frame, bytes (1 KiB to 64 MiB).
    #[arg(long, default_value_t = 64 * 1024, value_parser = bytes::<usize>(serve_bounds::FRAME_BYTES))]
    max_frame_bytes: usize,
    /// Largest `msg` of a send, bytes (1 to --max-frame-bytes).
    #[arg(long, default_value_t = 5 * 1024, value_parser = bytes::<usize>(1..=*serve_bounds::FRAME_BYTES.end()))]
    max_msg_bytes: usize,
    /// Most connections held at once, logged in or not; when all are taken, the oldest one not
    /// logged in yet is closed to make room (logged-in ones never are).
    #[arg(long, default_value_t = 100_000, value_parser = within(serve_bounds::CONNECTIONS))]
    max_connections: usize,
    /// Most connections held that have not logged in yet; past it the oldest of them is
    /// closed to make room (WebSocket close 1013, or dropped before the upgrade).
    #[arg(long, default_value_t = 4096, value_parser = within(serve_bounds::CONNECTIONS))]
    max_handshakes: usize,
    /// Largest HTTP request head (request line and headers), bytes; larger gets 431. At
    /// least 8192.
    #[arg(long, default_value_t = 16 * 1024, value_parser = bytes::<usize>(serve_bounds::HANDSHAKE_BYTES))]
    max_handshake_bytes: usize,
    /// Devices one user may have online at once; one more login kicks the device logged in
    /// longest ago (`kicked {reason:"too_many_devices"}`).
    #[arg(long, default_value_t = 4, value_parser = within(serve_bounds::COUNT))]
    max_devices: usize,
    /// Groups one user may create (`forbidden` past it).
    #[arg(long, default_value_t = 100, value_parser = within(serve_bounds::COUNT))]
    groups_per_user: usize,
    /// Bytes of everything waiting for one offline user (all its inboxes); past it its oldest
    /// entries are dropped.
    #[arg(long, default_value_t = StoreLimits::default().offline_user_bytes, value_parser = bytes::<usize>(serve_bounds::STORE_BYTES))]
    offline_user_bytes: usize,
    /// Bytes of everything waiting for offline users in all, with 1 KiB per record of a user who
    /// never logged in; past it the oldest go first (whole records of users who never logged
    /// in, the oldest entries of the others).
    #[arg(long, default_value_t = StoreLimits::default().offline_total_bytes, value_parser = bytes::<usize>(serve_bounds::STORE_BYTES))]
    offline_total_bytes: usize,
    /// Estimated bytes of message records kept for receipts; past it the records settled
    /// longest ago go (receipts for them get not_found). Records of messages still waiting
    /// offline are kept whatever the cap.
    #[arg(long, default_value_t = StoreLimits::default().message_bytes, value_parser = bytes::<usize>(serve_bounds::STORE_BYTES))]
    message_bytes: usize,
    /// Message records kept for receipts, at most (as --message-bytes: the settled longest
    /// ago go first, receipts for them get not_found).
    #[arg(long, default_value_t = StoreLimits::default().messages, value_parser = within(serve_bounds::COUNT))]
    messages: usize,
    /// One-to-one conversations kept per user (the least recently active go first); also the
    /// most `getConversations` lists.
    #[arg(long, default_value_t = StoreLimits::default().conversations, value_parser = within(serve_bounds::COUNT))]
    conversations: usize,
    /// Client ids of accepted sends remembered in all (idempotent sends, about 90 bytes
    /// each); past it the oldest beyond each sender's newest 10,000 are forgotten first.
    #[arg(long, default_value_t = StoreLimits::default().sent_ids_total, value_parser = within(serve_bounds::COUNT))]
    sent_ids_total: usize,
    /// Worker threads, 1 to 1024 (default: one per core).
    #[arg(long, value_parser = within(serve_bounds::THREADS))]
    threads: Option<usize>,
    /// A deliberately slowed build: wait this long before handling each frame (at most an hour).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(serve_bounds::DELAY_MS))]
    delay_ms: u64,
    /// A deliberately slowed build: handle at most this many frames per second in all
    /// (the excess queues; 0.001 to 1e9); 0 is off.
    #[arg(long, default_value_t = 0.0, value_parser = rate_per_second, allow_negative_numbers = true)]
    throttle: f64,
    /// Close a connection that has not upgraded to WebSocket and sent `login` within this
    /// time from accept (e.g. 10s, 500ms; at most 1 day).
    #[arg(long, default_value = "10s", value_parser = timeout)]
    login_timeout: Duration,
    /// Ping each connection and close one that answers no ping for this long (at most 1 day).
    #[arg(long, default_value = "60s", value_parser = timeout)]
    idle_timeout: Duration,
    /// Close as a slow consumer (1008) a connection whose write makes no progress this long
    /// (at most 1 day).
    #[arg(long, default_value = "10s", value_parser = timeout)]
    write_timeout: Duration,
    /// Close as a slow consumer (1008) a connection with more live pushes queued than this.
    #[arg(long, default_value_t = QueueBound::DEFAULT.frames, value_parser = within(1..=u64::MAX))]
    max_queue_frames: usize,
    /// Close as a slow consumer (1008) a connection with more bytes of live pushes queued.
    #[arg(long, default_value_t = QueueBound::DEFAULT.bytes, value_parser = bytes::<usize>(1..=u64::MAX))]
    max_queue_bytes: usize,
    /// Keep messages, offline queues, unread counts, receipts, groups and the id counter in
    /// an embedded database in this directory (created if missing), rebuilt from it at start:
    /// whatever a client was answered survives a crash. Default: in memory only.
    #[arg(long, value_name = "DIR")]
    data: Option<std::path::PathBuf>,
    /// Serve TLS (wss://, https://) with this PEM certificate chain, leaf first; needs
    /// --tls-key. The TLS handshake counts against --login-timeout.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// With --data: compact the log into a snapshot after this many logged store calls.
    #[arg(long, default_value_t = Compaction::default().log_ops, value_parser = clap::value_parser!(u64).range(1..), requires = "data")]
    compact_log_ops: u64,
    /// With --data: compact the log into a snapshot after this many bytes of log (or the last
    /// snapshot's size, if larger).
    #[arg(long, default_value_t = Compaction::default().log_bytes, value_parser = bytes::<u64>(1..=u64::MAX), requires = "data")]
    compact_log_bytes: u64,
}

impl ServeArgs {
    /// The server's configuration. Each flag's own range is checked as it is parsed; this
    /// checks what depends on two of them.
    fn config(&self) -> Result<ServerConfig> {
        if self.secret.is_empty() {
            bail!("--secret must not be empty");
        }
        if self.rate_limit > 0.0 && self.rate_burst == 0 {
            bail!("--rate-burst must be at least 1 when rate limiting is on");
        }
        if self.max_msg_bytes > self.max_frame_bytes {
            bail!(
                "--max-msg-bytes ({}) must not exceed --max-frame-bytes ({}): a send must fit in a frame",
                self.max_msg_bytes,
                self.max_frame_bytes
            );
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(server::tls::server_config(cert, key)?),
            _ => None,
        };
        let defaults = StoreLimits::default();
        Ok(ServerConfig {
            secret: self.secret.as_bytes().to_vec(),
            group_read_ack: self.group_read_ack,
            group_ack_anyone: self.group_ack_anyone,
            group_ack_max_members: self.group_ack_max_members,
            group_max_members: self.group_max_members,
            ack_validity: Duration::from_secs(self.ack_validity_secs),
            limits: StoreLimits {
                offline_single: self.offline_single,
                offline_group: self.offline_group,
                offline_user_bytes: self.offline_user_bytes,
                offline_total_bytes: self.offline_total_bytes,
                message_bytes: self.message_bytes,
                messages: self.messages,
                conversations: self.conversations,
                sent_ids_total: self.sent_ids_total,
                ..defaults
            },
            groups_per_user: self.groups_per_user,
            max_devices: self.max_devices,
            max_handshakes: self.max_handshakes,
            max_handshake_bytes: self.max_handshake_bytes,
            rate_limit: (self.rate_limit > 0.0).then_some(RateLimit {
                per_second: self.rate_limit,
                burst: self.rate_burst,
            }),
            max_frame_bytes: self.max_frame_bytes,
            max_msg_bytes: self.max_msg_bytes,
            max_connections: self.max_connections,
            delay: Duration::from_millis(self.delay_ms),
            throttle: (self.throttle > 0.0).then_some(self.throttle),
            login_timeout: self.login_timeout,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            queue_bound: QueueBound {
                frames: self.max_queue_frames,
                bytes: self.max_queue_bytes,
            },
            data: self.data.clone(),
            tls,
            compaction: Compaction {
                log_ops: self.compact_log_ops,
                log_bytes: self.compact_log_bytes,
            },
            ..ServerConfig::default()
        })
    }
}

pub(super) fn serve(args: ServeArgs) -> Result<ExitCode> {
    let config = args.config()?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().build().context("building the Tokio runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("listening on {addr}");
        let (ws, http) = if config.tls.is_some() {
            ("wss", "https")
        } else {
            ("ws", "http")
        };
        eprintln!("ackstorm server: {ws}://{addr}/ws, {http}://{addr}/metrics, {http}://{addr}/healthz (Ctrl-C stops)");
        server::run(listener, config, shutdown_signal()).await?;
        eprintln!("ackstorm server: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::profile;
    use clap::Parser;

    #[test]
    fn data_selects_the_durable_store() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["ackstorm", "serve", "--secret", "s"];
            argv.extend_from_slice(extra);
            let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
                panic!()
            };
            args.config().unwrap()
        };
        let durable = parse(&["--data", "/var/lib/ackstorm"]);
        assert_eq!(durable.data.as_deref(), Some(std::path::Path::new("/var/lib/ackstorm")));
        assert!(durable.build_info_labels().contains("store=\"durable\""));
        let memory = parse(&[]);
        assert_eq!(memory.data, None);
        assert!(memory.build_info_labels().contains("store=\"memory\""));
    }

    #[test]
    fn serve_flags_map_to_the_config() {
        let cli = Cli::try_parse_from([
            "ackstorm",
            "serve",
            "--secret",
            "s",
            "--group-read-ack",
            "--rate-limit",
            "0",
            "--group-ack-max-members",
            "50",
            "--idle-timeout",
            "90s",
            "--max-queue-frames",
            "7",
            "--max-devices",
            "2",
            "--offline-total-bytes",
            "1000000",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else { panic!() };
        let c = args.config().unwrap();
        assert_eq!(c.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.queue_bound.frames, 7);
        assert_eq!((c.max_devices, c.limits.offline_total_bytes), (2, 1_000_000));
        let defaults = ServerConfig::default();
        assert_eq!(
            c.limits,
            StoreLimits {
                offline_total_bytes: 1_000_000,
                ..defaults.limits
            },
            "the store flags' defaults are the store's"
        );
        assert_eq!(
            (
                c.groups_per_user,
                c.max_handshakes,
                c.max_handshake_bytes,
                c.max_connections
            ),
            (
                defaults.groups_per_user,
                defaults.max_handshakes,
                defaults.max_handshake_bytes,
                defaults.max_connections
            )
        );
        assert_eq!(
            (c.login_timeout, c.write_timeout, c.queue_bound.bytes),
            (
                defaults.login_timeout,
                defaults.write_timeout,
                defaults.queue_bound.bytes
            ),
            "the flags' defaults are the server's"
        );
        assert!(c.group_read_ack);
        assert_eq!(c.rate_limit, None);
        assert_eq!(c.group_ack_max_members, 50);
        assert_eq!(c.secret, b"s");
    }

    /// The error `ackstorm serve --secret s ARGS` gives, from clap or from the config check.
    fn serve_error(args: &[&str]) -> Option<String> {
        let argv = ["ackstorm", "serve", "--secret", "s"].iter().chain(args);
        match Cli::try_parse_from(argv) {
            Err(e) => Some(e.to_string()),
            Ok(cli) => {
                let Command::Serve(args) = cli.command else { panic!() };
                args.config().err().map(|e| e.to_string())
            }
        }
    }

    #[test]
    fn bad_serve_flags_are_refused_with_the_flag_named() {
        for (flag, value) in [
            ("--rate-limit", "-1"),
            ("--rate-limit", "1e-300"),
            ("--rate-limit", "NaN"),
            ("--throttle", "1e-300"),
            ("--throttle", "inf"),
            ("--throttle", "2e9"),
            ("--idle-timeout", "0s"),
            ("--login-timeout", "500000000000y"),
            ("--write-timeout", "2days"),
            ("--delay-ms", "18446744073709551615"),
            ("--ack-validity-secs", "0"),
            ("--ack-validity-secs", "18446744073709551615"),
            ("--group-max-members", "0"),
            ("--group-ack-max-members", "18446744073709551615"),
            ("--offline-single", "1000001"),
            ("--max-frame-bytes", "0"),
            ("--max-msg-bytes", "0"),
            ("--max-msg-bytes", "65537"),
            ("--max-connections", "0"),
            ("--max-handshake-bytes", "100"),
            ("--max-devices", "0"),
            ("--max-connections", "18446744073709551615"),
            ("--threads", "0"),
            ("--threads", "100000"),
            ("--max-queue-frames", "0"),
        ] {
            let err = serve_error(&[flag, value]).unwrap_or_else(|| panic!("{flag} {value} was accepted"));
            assert!(err.contains(flag), "{flag} {value}: {err}");
        }
        let err = serve_error(&["--rate-limit", "1e-300"]).unwrap();
        assert!(
            err.contains("use 0 (off) or a rate between 0.001 and 1e9 frames per second"),
            "{err}"
        );
        let err = serve_error(&["--rate-limit", "5", "--rate-burst", "0"]).unwrap();
        assert!(err.contains("--rate-burst"), "{err}");
        for edges in [
            &["--rate-limit", "0.001", "--throttle", "1e9", "--delay-ms", "3600000"][..],
            &[
                "--rate-limit",
                "0",
                "--throttle",
                "0",
                "--idle-timeout",
                "1d",
                "--threads",
                "1024",
            ],
            &[
                "--max-frame-bytes",
                "1024",
                "--max-msg-bytes",
                "1024",
                "--offline-single",
                "0",
            ],
            &[
                "--max-queue-frames",
                "18446744073709551615",
                "--ack-validity-secs",
                "315360000",
            ],
        ] {
            assert_eq!(serve_error(edges), None, "{edges:?}");
        }
    }

    /// A child-process embedded server gets the profile's `target.server` keys as `serve`
    /// flags: the profile accepts exactly what the flags accept.
    #[test]
    fn serve_bounds_agree_with_the_profile() {
        let profile = |key: &str, value: &str| {
            let text = "[run]\nduration = \"10s\"\n[population]\nusers = 10\n";
            let path = std::path::Path::new("p.toml");
            profile::parse(path, text, &[format!("{key}={value}")]).is_ok()
        };
        let cases: [(&str, &str, &[&str]); 10] = [
            (
                "--messages",
                "target.server.messages",
                &["0", "1", "100000000", "100000001"],
            ),
            (
                "--message-bytes",
                "target.server.message_bytes",
                &["0", "1099511627776", "1099511627777"],
            ),
            (
                "--rate-limit",
                "target.server.rate_limit",
                &["0", "0.0009", "0.001", "1e9", "1.1e9", "-1"],
            ),
            (
                "--throttle",
                "target.server.throttle",
                &["0", "0.0009", "0.001", "1e9", "1.1e9", "-1"],
            ),
            ("--delay-ms", "target.server.delay_ms", &["0", "3600000", "3600001"]),
            (
                "--offline-single",
                "target.server.offline_single",
                &["0", "1000000", "1000001"],
            ),
            (
                "--offline-group",
                "target.server.offline_group",
                &["0", "1000000", "1000001"],
            ),
            (
                "--group-max-members",
                "target.server.group_max_members",
                &["1", "2", "1000000", "1000001"],
            ),
            (
                "--group-ack-max-members",
                "groups.server_ack_max_members",
                &["1", "2", "1000000", "1000001"],
            ),
            ("--threads", "target.server_threads", &["0", "1", "1024", "1025"]),
        ];
        for (flag, key, values) in cases {
            for value in values {
                let by_flag = serve_error(&[flag, value]).is_none();
                assert_eq!(by_flag, profile(key, value), "{flag} {value} vs {key} = {value}");
            }
        }
    }
}
