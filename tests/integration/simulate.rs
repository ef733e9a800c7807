//! `simulate` and `calibrate` through the binary, checked against socket runs of the same
//! profiles (the embedded reference server on 127.0.0.1): exactly the same counts when reading
//! does not depend on network timing, within 2% when it does, the same figures twice for one
//! seed, a model calibrated from runs that predicts their latencies, and clear refusals.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{ackstorm_within, only_folder};

/// Reading that does not depend on network timing: conversations always open, per-message
/// acks, nobody sending before everyone is logged in.
const TIMELESS: &str = r#"
[run]
name = "timeless"
duration = "4s"
drain = "2s"
seed = 7
ramp = { users_per_sec = 200 }

[population]
users = 60
contacts = 4
devices_per_user = 2

[groups]
count = 4
size_min = 4
size_max = 10
allow_group_ack_share = 1.0
server_read_ack = true

[traffic]
one_to_one_per_min = 60
group_per_min = 10
warmup = "1s"

[reading]
always_open = true
read_delay = { dist = "exp", mean = "100ms" }

[acks]
strategy = "per_message"
"#;

/// Conversations opened and left on timers, hybrid acks: which messages are read while a
/// conversation is open depends on when they arrive.
const TIMED: &str = r#"
[run]
name = "timed"
duration = "20s"
drain = "3s"
seed = 42
ramp = { users_per_sec = 500 }

[population]
users = 400
contacts = 6

[groups]
count = 20
size_min = 5
size_max = 20
allow_group_ack_share = 0.6
server_read_ack = true

[traffic]
one_to_one_per_min = 12
group_per_min = 2
warmup = "1s"

[reading]
open = "5s"
away = "3s"
read_probability = 0.9
read_delay = { dist = "exp", mean = "300ms" }

[acks]
strategy = "hybrid"
"#;

const LIMIT: Duration = Duration::from_secs(180);

fn scratch(name: &str, profile: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ackstorm-sim-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("p.toml"), profile).unwrap();
    d
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `command` (`run` or `simulate`) of `dir/p.toml` into `dir/<out>`; its summary.
async fn summary(command: &str, dir: &Path, out: &str, extra: &[&str]) -> (Value, PathBuf) {
    let results = dir.join(out);
    let profile = dir.join("p.toml");
    let mut args = vec![command, s(&profile), "--no-progress", "--results", s(&results)];
    args.extend(extra);
    let (code, text) = ackstorm_within(&args, LIMIT).await;
    assert_eq!(code, Some(0), "{command}: {text}");
    let folder = only_folder(&results, "");
    (json(&folder.join("summary.json")), folder)
}

/// What the workload decides: messages, reads and acks by kind, receipts by kind, the audit.
fn counts(v: &Value) -> Value {
    serde_json::json!({
        "messages": v["throughput"]["messages_sent"],
        "one_to_one": v["throughput"]["one_to_one_sent"],
        "economics": v["ack_economics"],
        "receipts": v["counters"]["receipts_received"],
        "audit": v["audit"]["by_kind"],
        "frames": v["counters"]["frames_sent_by_op"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_and_run_give_exactly_the_same_counts_when_reading_ignores_timing() {
    let dir = scratch("timeless", TIMELESS);
    let (run, _) = summary("run", &dir, "run", &[]).await;
    let (sim, folder) = summary("simulate", &dir, "sim", &[]).await;
    assert!(run["throughput"]["messages_sent"].as_u64().unwrap() > 200, "{run}");
    assert_eq!(counts(&sim), counts(&run));
    assert_eq!(run["audit"]["total"]["lost"], 0);
    // Marked simulated, with the model and its predictions beside the run's figures.
    assert_eq!(sim["target"]["kind"], "simulated");
    assert!(
        sim["simulation"]["model"]["name"].as_str().is_some(),
        "{}",
        sim["simulation"]
    );
    assert!(sim["simulation"]["series"].as_array().unwrap().len() >= 6);
    assert!(run.get("simulation").is_none());
    for f in [
        "report.html",
        "histograms.hdr",
        "manifest.json",
        "profile.toml",
        "latencies.hlog",
    ] {
        assert!(folder.join(f).is_file(), "{f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_and_run_agree_within_two_percent_when_reading_follows_the_clock() {
    let dir = scratch("timed", TIMED);
    let (run, _) = summary("run", &dir, "run", &[]).await;
    let (sim, _) = summary("simulate", &dir, "sim", &[]).await;
    // Sends are timers of their own: the same messages.
    assert_eq!(sim["throughput"]["messages_sent"], run["throughput"]["messages_sent"]);
    let close = |path: &[&str]| {
        let get = |v: &Value| path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap();
        let (a, b) = (get(&run), get(&sim));
        assert!(a > 100.0, "{path:?}: too few to compare ({a})");
        assert!((b - a).abs() <= 0.02 * a, "{path:?}: run {a}, simulated {b}");
    };
    close(&["ack_economics", "total", "messages_read"]);
    close(&["ack_economics", "total", "read_acks"]);
    close(&["ack_economics", "total", "channel_acks"]);
    close(&["counters", "receipts_received", "delivery"]);
    assert_eq!(sim["audit"]["total"]["lost"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulation_is_the_same_twice_for_one_seed() {
    let dir = scratch("twice", TIMED);
    let (a, _) = summary("simulate", &dir, "a", &[]).await;
    let (b, _) = summary("simulate", &dir, "b", &[]).await;
    assert_eq!(counts(&a), counts(&b));
    assert_eq!(
        a["latencies"], b["latencies"],
        "latencies are the model's, drawn from the seed"
    );
    let (c, _) = summary("simulate", &dir, "c", &["--seed", "43"]).await;
    assert_ne!(counts(&a), counts(&c), "another seed, another workload");
}

/// `target.server.messages` caps the message records of the server a run drives (a child
/// process: the key becomes `serve --messages`) and of the one a simulation models: receipts
/// for records gone are refused `not_found`, which the default cap never does at this size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_record_cap_is_the_profiles_in_runs_and_simulations() {
    let dir = scratch("records", TIMELESS);
    let not_found = |v: &Value| v["audit"]["refused_by_code"]["not_found"].as_u64().unwrap_or(0);
    let capped = ["--set", "target.server.messages=20"];
    let (sim, _) = summary("simulate", &dir, "sim", &capped).await;
    assert!(not_found(&sim) > 0, "{}", sim["audit"]);
    let child = [
        "--set",
        "target.server.messages=20",
        "--set",
        "target.embedded=\"child-process\"",
    ];
    let (run, _) = summary("run", &dir, "run", &child).await;
    assert!(not_found(&run) > 0, "{}", run["audit"]);
    let (plain, _) = summary("simulate", &dir, "plain", &[]).await;
    assert_eq!(not_found(&plain), 0, "{}", plain["audit"]);
    assert_eq!(sim["audit"]["total"]["lost"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_simulation_cannot_model_is_refused_clearly() {
    let dir = scratch("refused", TIMELESS);
    let profile = dir.join("p.toml");
    let (code, out) = ackstorm_within(
        &[
            "simulate",
            s(&profile),
            "--no-progress",
            "--set",
            "faults.server_restarts=[{ at = \"2s\" }]",
        ],
        LIMIT,
    )
    .await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("faults") && out.contains("never fails"), "{out}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = 'x'\ncores = 2\none_way_us = 10\nframe_in_us = 1\n").unwrap();
    let (code, out) = ackstorm_within(&["simulate", s(&profile), "--model", s(&bad)], LIMIT).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("bad.toml") && out.contains("frame_out_us"), "{out}");
    // An embedded server in the tester's own process: its CPU cannot be told apart.
    let (run, _) = summary("run", &dir, "in-process", &["--set", "target.embedded=\"in-process\""]).await;
    assert!(run["target"].get("server_cpu_secs").is_none(), "{}", run["target"]);
    let folder = only_folder(&dir.join("in-process"), "");
    let (code, out) = ackstorm_within(&["calibrate", s(&folder)], LIMIT).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("child-process"), "{out}");
}

/// Per-message acks read on arrival (every message a full chain), against the embedded
/// server in a process of its own (so its CPU is its own).
const CHAINS: &str = r#"
[run]
name = "chains"
duration = "6s"
drain = "2s"
seed = 11
ramp = { users_per_sec = 1000 }

[target]
embedded = "child-process"
server = { rate_limit = 0 }

[population]
users = 50
delivery_share = 1.0
contacts = 4

[groups]
count = 0

[traffic]
one_to_one_per_min = 480
group_per_min = 0

[reading]
always_open = true
read_probability = 1.0
read_delay = { dist = "fixed", value = "0ms" }

[acks]
strategy = "per_message"
"#;

/// The tolerance of simulated latencies after calibration (README, "Plan capacity without the
/// hardware"): p50 within a factor of 3 of the measured one, p99 within a factor of 4,
/// below the knee; past it, both sides break the SLO.
const P50_FACTOR: f64 = 3.0;
const P99_FACTOR: f64 = 4.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measures latencies: .ci/run runs it alone, after the other tests"]
async fn a_model_calibrated_from_runs_predicts_their_latencies() {
    let dir = scratch("calibrated", CHAINS);
    // Below the knee, towards it, and well past it (this build's, whatever it is: the model
    // is calibrated from the first two). "Past" must be past for the real server whatever the
    // build and the box's mood: 20,000 chains/s. (6,000/s was not always: a busy server
    // writes more frames per system call, so its CPU per frame falls below the calibrated one.)
    let loads = [("low", 240), ("mid", 960), ("past", 24_000)];
    let mut runs = Vec::new();
    for (name, per_min) in loads {
        let set = format!("traffic.one_to_one_per_min={per_min}");
        let (summary, folder) = summary("run", &dir, name, &["--set", &set]).await;
        assert!(summary["target"]["server_cpu_secs"].as_f64().unwrap() > 0.0);
        runs.push((name, summary, folder));
    }
    let model = dir.join("model.toml");
    let below: Vec<&str> = runs[..2].iter().map(|(_, _, f)| s(f)).collect();
    let mut args = vec!["calibrate"];
    args.extend(&below);
    args.extend(["--out", s(&model)]);
    let (code, out) = ackstorm_within(&args, LIMIT).await;
    assert_eq!(code, Some(0), "{out}");
    let text = std::fs::read_to_string(&model).unwrap();
    assert!(text.contains("frame_in_us") && text.contains("[calibration]"), "{text}");
    let ms = |v: &Value, m: &str, q: &str| v["latencies"][m][q].as_f64().unwrap();
    for (name, run, folder) in &runs {
        let profile = folder.join("profile.toml");
        let results = dir.join(format!("sim-{name}"));
        let args = [
            "simulate",
            s(&profile),
            "--model",
            s(&model),
            "--no-progress",
            "--results",
            s(&results),
        ];
        let (_, out) = ackstorm_within(&args, LIMIT).await;
        let sim = json(&only_folder(&results, "").join("summary.json"));
        assert!(
            sim["simulation"]["model"]["calibrated_from"].as_str().is_some(),
            "{out}"
        );
        for m in ["server_ack", "read_receipt"] {
            let (r50, s50, r99, s99) = (
                ms(run, m, "p50"),
                ms(&sim, m, "p50"),
                ms(run, m, "p99"),
                ms(&sim, m, "p99"),
            );
            if *name == "past" {
                // Past the knee both break a 50 ms SLO.
                assert!(
                    r99 > 50.0 && s99 > 50.0,
                    "{m} past the knee: run p99 {r99} ms, simulated {s99} ms"
                );
            } else {
                let within = |a: f64, b: f64, f: f64| b <= a * f && a <= b * f;
                assert!(
                    within(r50, s50, P50_FACTOR),
                    "{name} {m} p50: run {r50} ms, simulated {s50} ms"
                );
                assert!(
                    within(r99, s99, P99_FACTOR),
                    "{name} {m} p99: run {r99} ms, simulated {s99} ms"
                );
            }
        }
    }
}
