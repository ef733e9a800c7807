//! TLS end to end, on loopback: a throwaway CA and a certificate for `localhost` made here
//! with rcgen, `ackstorm serve --tls-cert --tls-key`, and `ackstorm run --target
//! wss://localhost:PORT/ws` trusting the CA with `--ca-file`, refusing the server without it,
//! and running unverified with `--insecure` (warned about, and recorded). A stalled TLS
//! handshake cannot hold a place on the server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ackstorm::server::ServerConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::common::{SECRET, config, only_folder, output_text, start};

/// The PEM files of a CA and of a server certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ackstorm test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca_cert.pem()),
        cert: write("server.pem", cert.pem()),
        key: write("server.key", key.serialize_pem()),
        dir,
    }
}

/// `ackstorm serve` over TLS in a child process (killed on drop).
struct Serve {
    child: Child,
    port: u16,
}

impl Serve {
    fn start(pki: &Pki) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ackstorm"))
            .args(["serve", "--listen", "127.0.0.1:0", "--secret", SECRET, "--threads", "1"])
            .args(["--rate-limit", "0", "--group-read-ack"])
            .arg("--tls-cert")
            .arg(&pki.cert)
            .arg("--tls-key")
            .arg(&pki.key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ackstorm serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr: std::net::SocketAddr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no address line: {line:?}"))
            .parse()
            .unwrap();
        Serve {
            child,
            port: addr.port(),
        }
    }

    fn url(&self) -> String {
        format!("wss://localhost:{}/ws", self.port)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ackstorm run profiles/smoke.toml` made small, against `url`, with `extra` flags; fails the
/// test if it has not ended within a minute (a hang is a failure, not a wait).
fn run_smoke(results: &Path, url: &str, extra: &[&str]) -> Output {
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/smoke.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ackstorm"))
        .arg("run")
        .arg(profile)
        .args(["--target", url, "--secret", SECRET, "--no-progress"])
        .args(["--users", "60", "--duration", "2s", "--set", "run.drain=2s"])
        .args(["--set", "groups.count=6", "--set", "groups.size_max=20"])
        .args(["--set", r#"slo.checks=["audit.lost == 0", "errors.rate < 0.1%"]"#])
        .arg("--results")
        .arg(results)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ackstorm run did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn summary(results: &Path) -> Value {
    let dir = only_folder(results, "smoke-");
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_wss_target_is_driven_when_its_ca_is_given() {
    let pki = pki();
    let serve = Serve::start(&pki);
    let results = pki.dir.path().join("results");
    let out = run_smoke(&results, &serve.url(), &["--ca-file", pki.ca.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let s = summary(&results);
    assert_eq!(s["target"]["url"], serve.url());
    assert_eq!(s["target"]["kind"], "external");
    // `/metrics` was read over TLS too.
    let build = s["target"]["build_info"].as_str().unwrap_or_default();
    assert!(build.contains("tls=\"true\""), "{build}");
    assert_eq!(s["connections"]["achieved"], 60, "{}", s["connections"]);
    assert!(s["audit"]["total"]["expected"].as_u64().unwrap() > 10, "{}", s["audit"]);
    assert_eq!(s["audit"]["total"]["lost"], 0, "{}", s["audit"]);
    // Verified: no insecure warning (others, such as a busy machine's schedule lag, may be).
    let warnings = s["warnings"].as_array().unwrap();
    assert!(
        !warnings.iter().any(|w| w.as_str().unwrap().contains("NOT verified")),
        "{warnings:?}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("WARNING"));
}

#[test]
fn an_untrusted_certificate_fails_the_run_at_once_and_insecure_runs_with_a_warning() {
    let pki = pki();
    let serve = Serve::start(&pki);
    let results = pki.dir.path().join("refused");
    let started = Instant::now();
    let out = run_smoke(&results, &serve.url(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("TLS handshake with localhost failed") && err.contains("certificate") && err.contains("--ca-file"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    let results = pki.dir.path().join("insecure");
    let out = run_smoke(&results, &serve.url(), &["--insecure"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("WARNING: insecure").count(), 1, "{err}");
    let s = summary(&results);
    assert_eq!(s["audit"]["total"]["lost"], 0, "{}", s["audit"]);
    let warnings = s["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w.as_str().unwrap().contains("is NOT verified")),
        "{warnings:?}"
    );
}

/// A socket that never starts its TLS handshake is closed by the server.
async fn closed_within(addr: std::net::SocketAddr, within: Duration) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(within, s.read(&mut buf))
        .await
        .expect("the server closes a stalled TLS handshake")
        .unwrap_or(0);
    assert_eq!(n, 0, "the server sent something to a client that said nothing");
    s
}

fn tls_config(pki: &Pki, base: ServerConfig) -> ServerConfig {
    ServerConfig {
        tls: Some(ackstorm::server::tls::server_config(&pki.cert, &pki.key).unwrap()),
        ..base
    }
}

#[tokio::test]
async fn a_stalled_tls_handshake_ends_at_the_login_deadline() {
    let pki = pki();
    let server = start(tls_config(
        &pki,
        ServerConfig {
            login_timeout: Duration::from_millis(300),
            ..config()
        },
    ))
    .await;
    assert!(server.ws_url().starts_with("wss://127.0.0.1:"));
    let t = Instant::now();
    closed_within(server.addr, Duration::from_secs(5)).await;
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "closed after {:?}",
        t.elapsed()
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_stalled_tls_handshake_gives_its_place_to_a_new_connection() {
    let pki = pki();
    let server = start(tls_config(
        &pki,
        ServerConfig {
            max_handshakes: 1,
            login_timeout: Duration::from_secs(60),
            ..config()
        },
    ))
    .await;
    let addr = server.addr;
    let first = tokio::spawn(async move { closed_within(addr, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Long before the 60 s login timeout: the newcomer took the stalled one's place.
    first.await.unwrap();
    server.stop().await.unwrap();
}

#[test]
fn serve_refuses_a_key_that_is_not_pem_naming_the_file() {
    let pki = pki();
    let junk = pki.dir.path().join("junk.key");
    std::fs::write(&junk, "nope").unwrap();
    let out = crate::common::ackstorm(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--secret",
        SECRET,
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("junk.key") && err.contains("private key"), "{err}");
}
