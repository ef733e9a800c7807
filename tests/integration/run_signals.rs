//! Runs that are stopped or disturbed: Ctrl-C and SIGTERM leave a complete results folder
//! marked interrupted and exit 130/143; a second signal exits at once; a server killed and
//! restarted mid-run is reconnected to and its losses are reported, not hidden.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::only_folder;

/// Long enough to be interrupted well before its end.
const LONG: &str = r#"
[run]
name = "long"
duration = "60s"
drain = "2s"
seed = 5
ramp = { users_per_sec = 500 }

[population]
users = 30
contacts = 3

[traffic]
one_to_one_per_min = 60
group_per_min = 0

[reading]
always_open = true
read_probability = 1.0
read_delay = { dist = "fixed", value = "50ms" }
"#;

fn start(dir: &Path, profile: &str, child_server: bool) -> Child {
    let path = dir.join("p.toml");
    std::fs::write(&path, profile).unwrap();
    let results = dir.join("results");
    let mut args = vec![
        "run".to_string(),
        path.display().to_string(),
        "--set".into(),
        format!("run.results_dir={}", results.display()),
    ];
    if child_server {
        args.extend(["--set".into(), "target.embedded=child-process".into()]);
    }
    Command::new(env!("CARGO_BIN_EXE_ackstorm"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits for the child to exit, at most `limit`; returns its code and output.
fn finish(child: Child, limit: Duration) -> (Option<i32>, String) {
    let t = Instant::now();
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (status.code(), text);
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn interrupted_run_leaves_results(sig: i32, code: i32) {
    let tmp = tempfile::tempdir().unwrap();
    let child = start(tmp.path(), LONG, true);
    std::thread::sleep(Duration::from_secs(4));
    let t = Instant::now();
    signal(&child, sig);
    let (status, text) = finish(child, Duration::from_secs(20));
    assert_eq!(status, Some(code), "{text}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?} after the signal",
        t.elapsed()
    );
    let dir = only_folder(&tmp.path().join("results"), "long-");
    for file in [
        "summary.json",
        "manifest.json",
        "latencies.hlog",
        "profile.toml",
        "report.html",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing: {text}");
    }
    let s = summary(&dir);
    assert_eq!(s["interrupted"], true);
    assert!(
        s["throughput"]["messages_sent"].as_u64().unwrap() > 20,
        "{}",
        s["throughput"]
    );
    assert!(s["elapsed_secs"].as_f64().unwrap() < 20.0);
    // Stopping sending and draining first: nothing the server owed was lost.
    assert_eq!(s["audit"]["total"]["lost"], 0, "{}", s["audit"]);
    let hlog = std::fs::read_to_string(dir.join("latencies.hlog")).unwrap();
    assert!(hlog.contains("Tag=server_ack"), "{hlog}");
    assert!(text.contains("INTERRUPTED"), "{text}");
}

#[test]
fn ctrl_c_stops_the_run_and_leaves_complete_results() {
    interrupted_run_leaves_results(libc::SIGINT, 130);
}

#[test]
fn sigterm_stops_the_run_and_leaves_complete_results() {
    interrupted_run_leaves_results(libc::SIGTERM, 143);
}

#[test]
fn a_second_signal_exits_at_once_keeping_the_interval_log() {
    let tmp = tempfile::tempdir().unwrap();
    let child = start(tmp.path(), &LONG.replace("drain = \"2s\"", "drain = \"30s\""), true);
    std::thread::sleep(Duration::from_secs(4));
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, libc::SIGINT);
    let (status, text) = finish(child, Duration::from_secs(10));
    assert_eq!(status, Some(130), "{text}");
    let dir = only_folder(&tmp.path().join("results"), "long-");
    let hlog = std::fs::read_to_string(dir.join("latencies.hlog")).unwrap();
    assert!(
        hlog.contains("Tag=server_ack"),
        "seconds closed before the signal are on disk: {hlog}"
    );
}

#[test]
fn a_restarted_in_memory_server_is_reconnected_to_and_its_losses_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let profile = LONG.replace("duration = \"60s\"", "duration = \"8s\"")
        + "\n[reconnect]\ninitial = \"100ms\"\n\n[[faults.server_restarts]]\nat = \"4s\"\n";
    let child = start(tmp.path(), &profile, false);
    let (status, text) = finish(child, Duration::from_secs(40));
    assert!(matches!(status, Some(0) | Some(1)), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    let s = summary(&only_folder(&tmp.path().join("results"), "long-"));
    let fault = &s["faults"][0];
    assert_eq!(fault["kind"], "server_restart");
    assert_eq!(fault["done"], 1);
    assert_eq!(fault["recovered"], 30, "every user came back: {fault}");
    assert_eq!(s["connections"]["reconnects"], 30);
    // The in-memory store forgot everything: what was owed across the restart is reported
    // (lost, or lost with the connections), and receipts for forgotten messages are refused.
    let audit = &s["audit"]["total"];
    let owed = audit["lost"].as_u64().unwrap() + audit["lost_in_disconnect"].as_u64().unwrap();
    let refused = audit["refused"].as_u64().unwrap();
    assert!(
        owed + refused > 0,
        "a restart of an in-memory server cannot be free: {}",
        s["audit"]
    );
    assert!(s["audit"]["by_kind"]["message"]["arrived"].as_u64().unwrap() > 100);
}

#[test]
fn dropped_connections_and_stalled_readers_lose_nothing_the_protocol_promises() {
    let tmp = tempfile::tempdir().unwrap();
    let profile = LONG
        .replace("duration = \"60s\"", "duration = \"8s\"")
        .replace("users = 30", "users = 60")
        + r#"
[groups]
count = 4
size_min = 5
size_max = 10
allow_group_ack_share = 1.0

[reconnect]
initial = "100ms"

[[faults.drop_connections]]
at = "1s"
over = "6s"
count = 60

[[faults.stall_readers]]
at = "2s"
over = "4s"
count = 10
stall = "1s"
"#;
    let profile = profile.replace("group_per_min = 0", "group_per_min = 20");
    let child = start(tmp.path(), &profile, false);
    let (status, text) = finish(child, Duration::from_secs(60));
    assert_eq!(status, Some(0), "{text}");
    let s = summary(&only_folder(&tmp.path().join("results"), "long-"));
    let drops = &s["faults"][0];
    assert_eq!(drops["kind"], "drop_connections");
    assert_eq!(drops["done"], 60, "{drops}");
    assert_eq!(drops["recovered"], 60, "every dropped connection came back: {drops}");
    assert_eq!(s["faults"][1]["done"], 10);
    assert_eq!(s["connections"]["reconnects"], 60);
    let total = &s["audit"]["total"];
    assert_eq!(total["lost"], 0, "{}", s["audit"]);
    assert_eq!(total["duplicated"], 0, "{}", s["audit"]);
    assert_eq!(total["unexpected"], 0, "{}", s["audit"]);
    assert!(s["audit"]["by_kind"]["message"]["arrived"].as_u64().unwrap() > 300);
}
