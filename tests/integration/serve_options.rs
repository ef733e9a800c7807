//! `ackstorm serve` and the profile's `target.server` keys with absurd values, through the
//! real binary: each is refused at once with exit 2 and the flag or key named, never a panic
//! (they used to panic: a throttle interval or token wait past `Duration`'s range, a delay or
//! timeout past the clock's, a semaphore past its permits), and the edges of the ranges serve.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{ackstorm, output_text};

/// `ackstorm serve` on a free port with `args`; fails the test if it is still running after
/// a few seconds (an absurd value must be refused before serving).
fn serve_refused(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ackstorm"))
        .args(["serve", "--listen", "127.0.0.1:0", "--secret", "s"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("serve {args:?} was not refused: {}", output_text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The first line a served `child` prints (empty if none within 20 s).
fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default()
}

#[test]
fn absurd_serve_options_exit_2_naming_the_flag() {
    for (flag, value) in [
        ("--rate-limit", "1e-300"),
        ("--throttle", "1e-300"),
        ("--throttle", "-1"),
        ("--delay-ms", "18446744073709551615"),
        ("--login-timeout", "500000000000y"),
        ("--idle-timeout", "0s"),
        ("--max-connections", "18446744073709551615"),
        ("--max-connections", "0"),
        ("--max-frame-bytes", "0"),
        ("--group-max-members", "0"),
        ("--ack-validity-secs", "18446744073709551615"),
        ("--threads", "1000000"),
    ] {
        let out = serve_refused(&[flag, value]);
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {text}");
        assert!(text.contains(flag) && text.contains("error"), "{flag} {value}: {text}");
        assert!(!text.contains("panicked"), "{flag} {value}: {text}");
        assert!(out.stdout.is_empty(), "{flag} {value}: nothing served: {text}");
    }
    let text = output_text(&serve_refused(&["--throttle", "1e-300"]));
    assert!(
        text.contains(
            "invalid value '1e-300' for '--throttle <THROTTLE>': use 0 (off) or a rate between 0.001 and 1e9"
        ),
        "{text}"
    );
}

/// Byte flags take units as the usage line writes them, and the server runs with the bytes
/// they name (its `build_info` labels, read back over HTTP).
#[tokio::test]
async fn byte_flags_take_units_and_the_server_uses_them() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ackstorm"))
        .args(["serve", "--listen", "127.0.0.1:0", "--secret", "s"])
        .args(["--message-bytes", "256MiB", "--offline-user-bytes", "1.5 MiB"])
        .args(["--offline-total-bytes", "1GB", "--max-queue-bytes", "64KiB"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary runs");
    let line = first_line(&mut child);
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    let (status, body) = crate::common::http_get_at(addr, "/metrics").await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200);
    let info = body
        .lines()
        .find(|l| l.starts_with("ackstorm_build_info{"))
        .unwrap_or_else(|| panic!("no build_info in {body}"));
    for label in [
        "message_bytes=\"268435456\"",
        "offline_user_bytes=\"1572864\"",
        "offline_total_bytes=\"1000000000\"",
        "queue_bytes=\"65536\"",
    ] {
        assert!(info.contains(label), "{label} in {info}");
    }
    let text = output_text(&serve_refused(&["--message-bytes", "256 MiBs"]));
    assert!(
        text.contains("'256 MiBs' for '--message-bytes <MESSAGE_BYTES>': \"256 MiBs\" is not a byte count like"),
        "{text}"
    );
}

#[test]
fn the_edges_of_the_ranges_serve() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ackstorm"))
        .args(["serve", "--listen", "127.0.0.1:0", "--secret", "s"])
        .args(["--rate-limit", "0.001", "--throttle", "1e9", "--delay-ms", "3600000"])
        .args([
            "--idle-timeout",
            "1d",
            "--max-connections",
            "10000000",
            "--threads",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary runs");
    let line = first_line(&mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.starts_with("listening on 127.0.0.1:"), "{line:?}");
}

#[test]
fn absurd_profile_server_keys_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.toml");
    std::fs::write(&profile, "[run]\nduration = \"1s\"\n[population]\nusers = 2\n").unwrap();
    let out = ackstorm(&[
        "run",
        profile.to_str().unwrap(),
        "--no-progress",
        "--results",
        dir.path().join("results").to_str().unwrap(),
        "--set",
        "target.server.throttle=1e-300",
        "--set",
        "target.server.rate_limit=1e-300",
        "--set",
        "target.server.delay_ms=3600001",
    ]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for key in [
        "target.server.throttle",
        "target.server.rate_limit",
        "target.server.delay_ms",
    ] {
        assert!(text.contains(key), "{key}: {text}");
    }
    assert!(!text.contains("panicked"), "{text}");
    assert!(!dir.path().join("results").exists(), "nothing ran: {text}");
}
