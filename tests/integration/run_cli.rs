//! `ackstorm run` and `ackstorm strategies` end to end, through the real binary: tiny
//! profiles against the embedded server (and an external one started here on 127.0.0.1:0),
//! results folders checked against the JSON schema, exit codes for SLOs and bad input.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::common::{SECRET, ackstorm, config, only_folder, output_text, start};

/// A few seconds of everything: 1:1 and group messages with receipts, conversations that
/// open and close, delivery and read receipts, channel acks.
const TINY: &str = r#"
[run]
name = "tiny"
duration = "3s"
drain = "2s"
seed = 9
ramp = { users_per_sec = 200 }

[population]
users = 40
contacts = 4
delivery_share = 1.0

[groups]
count = 4
size_min = 5
size_max = 10
admins = 2
allow_group_ack_share = 1.0

[traffic]
one_to_one_per_min = 60
group_per_min = 30
message_bytes = 48

[reading]
open = "1s"
away = "500ms"
read_probability = 1.0
read_delay = { dist = "exp", mean = "100ms" }

[acks]
strategy = "hybrid"

[slo]
checks = ["audit.lost == 0", "errors.rate < 0.1%"]
"#;

/// Writes the tiny profile into `dir` and returns its path.
fn profile(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    let path = profile(dir, TINY);
    let results = dir.join("results");
    let mut args = vec![
        "run",
        path.to_str().unwrap(),
        "--no-progress",
        "--results",
        results.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ackstorm(&args)
}

/// The one results folder under `dir/results` whose name starts with `prefix`.
fn results_dir(dir: &Path, prefix: &str) -> PathBuf {
    only_folder(&dir.join("results"), prefix)
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn schema_errors(schema: &str, doc: &Value) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema").join(schema);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    v.iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn a_run_writes_its_results_and_audits_every_receipt() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(tmp.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let printed = output_text(&out);
    assert!(
        printed.contains("ackstorm run tiny") && printed.contains("Audit:"),
        "{printed}"
    );
    let dir = results_dir(tmp.path(), "tiny-");
    for file in ["summary.json", "latencies.hlog", "profile.toml", "report.html"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let s = summary(&dir);
    assert_eq!(schema_errors("summary.schema.json", &s), Vec::<String>::new());
    assert!(
        s["throughput"]["one_to_one_sent"].as_u64().unwrap() > 50,
        "{}",
        s["throughput"]
    );
    assert!(s["throughput"]["group_sent"].as_u64().unwrap() > 10);
    for metric in [
        "server_ack",
        "delivery",
        "read_receipt",
        "read",
        "channel",
        "group_read_first",
        "schedule_lag",
    ] {
        assert!(
            s["latencies"][metric]["count"].as_u64().unwrap() > 0,
            "no {metric} samples"
        );
    }
    assert!(s["audit"]["total"]["expected"].as_u64().unwrap() > 50);
    assert_eq!(s["audit"]["total"]["lost"], 0, "{}", s["audit"]);
    assert_eq!(s["audit"]["total"]["duplicated"], 0);
    assert_eq!(s["audit"]["total"]["unexpected"], 0);
    assert_eq!(s["connections"]["achieved"], 40);
    assert_eq!(s["target"]["kind"], "embedded");
    assert!(
        s["target"]["build_info"]
            .as_str()
            .unwrap()
            .contains("group_read_ack=\"true\"")
    );
    assert!(s["ack_economics"]["server_frames"]["total_in"].as_u64().unwrap() > 0);
    assert!(
        s["slo"].as_array().unwrap().iter().all(|c| c["passed"] == true),
        "{}",
        s["slo"]
    );
    let hlog = std::fs::read_to_string(dir.join("latencies.hlog")).unwrap();
    assert!(
        hlog.contains("#[StartTime:") && hlog.contains("Tag=read_receipt"),
        "{hlog}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("<script src"));
    let effective = std::fs::read_to_string(dir.join("profile.toml")).unwrap();
    assert!(
        effective.contains("strategy = \"hybrid\"") && effective.contains("users = 40"),
        "{effective}"
    );
}

#[test]
fn a_failed_slo_exits_1_and_bad_input_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &["--set", r#"slo.checks=["read_receipt.p99 < 1us"]"#, "--duration", "1s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(output_text(&out).contains("FAIL"), "{}", output_text(&out));

    let bad = profile(tmp.path(), "[population]\nusers = 5\nusrs = 6\n");
    let out = ackstorm(&["run", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tiny.toml") && err.contains("usrs"), "{err}");

    let out = run(tmp.path(), &["--set", "acks.strategy=sometimes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("acks.strategy"));
    let missing = ackstorm(&["run", tmp.path().join("nope.toml").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.toml"));
}

/// A server with a backlog (the embedded one throttled to 20 frames a second, far below what
/// the profile offers) and a drain of 1 s: what is still queued there at the end is lost, and
/// marked as still awaited (`lost_at_end`), requests left unanswered included, with a
/// warning naming the drain. Against a server that never delivers, nothing is so marked
/// (`audit_faults::never_delivered_messages_are_each_lost`).
#[test]
fn what_a_backlogged_server_still_held_at_the_end_is_marked_lost_at_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &["--set", "target.server.throttle=20", "--set", "run.drain=1s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let s = summary(&results_dir(tmp.path(), "tiny-"));
    assert!(schema_errors("summary.schema.json", &s).is_empty());
    let total = &s["audit"]["total"];
    let (lost, at_end) = (total["lost"].as_u64().unwrap(), total["lost_at_end"].as_u64().unwrap());
    assert!(at_end > 0 && at_end <= lost, "{total}");
    for (kind, k) in s["audit"]["by_kind"].as_object().unwrap() {
        assert!(k["lost_at_end"].as_u64() <= k["lost"].as_u64(), "{kind}: {k}");
    }
    // The requests still queued at the server when the run stopped.
    let reply = &s["audit"]["by_kind"]["reply"];
    assert!(reply["lost_at_end"].as_u64() > Some(0), "{reply}");
    let warnings: Vec<&str> = s["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let said = |what: &str| warnings.iter().any(|w| w.contains(what));
    assert!(
        said(&format!(
            "{at_end} of the {lost} losses were still awaited when the run ended"
        )) && said("longer run.drain (now 1.0 s)"),
        "{warnings:?}"
    );
}

#[test]
fn the_same_seed_sends_the_same_messages() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        let out = run(
            tmp.path(),
            &["--set", &format!("run.name=\"{name}\""), "--duration", "2s"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    let (a, b) = (
        summary(&results_dir(tmp.path(), "a-")),
        summary(&results_dir(tmp.path(), "b-")),
    );
    assert_eq!(a["throughput"]["one_to_one_sent"], b["throughput"]["one_to_one_sent"]);
    assert_eq!(a["throughput"]["group_sent"], b["throughput"]["group_sent"]);
}

#[test]
fn strategies_run_the_same_workload_and_compare_acks() {
    let tmp = tempfile::tempdir().unwrap();
    let path = profile(tmp.path(), TINY);
    let results = tmp.path().join("results");
    let out = ackstorm(&[
        "strategies",
        path.to_str().unwrap(),
        "--no-progress",
        "--duration",
        "2s",
        "--results",
        results.to_str().unwrap(),
        "--strategies",
        "per_message,channel",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let dir = results_dir(tmp.path(), "tiny-strategies-");
    let c: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("comparison.json")).unwrap()).unwrap();
    assert_eq!(schema_errors("comparison.schema.json", &c), Vec::<String>::new());
    let rows = c["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["strategy"], "per_message");
    assert_eq!(
        rows[0]["messages_sent"], rows[1]["messages_sent"],
        "same seeded workload"
    );
    assert_eq!(rows[0]["channel_acks"], 0);
    assert!(rows[1]["channel_acks"].as_u64().unwrap() > 0);
    assert!(dir.join("comparison.html").is_file());
    assert!(
        results_dir(tmp.path(), "tiny-per_message-")
            .join("summary.json")
            .is_file()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_target_is_driven_with_its_secret() {
    let server = start(config()).await;
    let url = server.ws_url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        run(
            &dir,
            &[
                "--target",
                &url,
                "--secret",
                SECRET,
                "--label",
                "build-42",
                "--duration",
                "2s",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let s = summary(&results_dir(tmp.path(), "tiny-"));
    assert_eq!(s["target"]["kind"], "external");
    assert_eq!(s["target"]["label"], "build-42");
    assert!(s["target"]["build_info"].as_str().unwrap().contains("version="));
    assert_eq!(s["audit"]["total"]["lost"], 0);

    let wrong = tempfile::tempdir().unwrap();
    let url = server.ws_url();
    let dir = wrong.path().to_path_buf();
    let out =
        tokio::task::spawn_blocking(move || run(&dir, &["--target", &url, "--secret", "wrong", "--duration", "1s"]))
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("login refused: unauthorized"), "{err}");
    server.stop().await.unwrap();
}
