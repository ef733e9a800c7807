//! Benchmarking builds through the real binary: `compare` tells the reference server from a
//! deliberately slowed build of it (non-zero exit), and `capacity` finds the knee of a build
//! throttled to a known number of frames per second.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{ackstorm, only_folder, output_text};

/// A small, fast workload where every message makes a full receipt chain at once: the send,
/// a delivery receipt and a read receipt, i.e. three frames for the server to handle.
const CHAINS: &str = r#"
[run]
name = "chains"
duration = "2s"
drain = "1s"
seed = 5
ramp = { users_per_sec = 1000 }

[population]
users = 20
contacts = 2
delivery_share = 1.0

[groups]
count = 0

[traffic]
one_to_one_per_min = 120
group_per_min = 0

[reading]
always_open = true
read_probability = 1.0
read_delay = { dist = "fixed", value = "0ms" }

[acks]
strategy = "per_message"

[slo]
checks = ["read_receipt.p99 < 100ms"]
"#;

fn profile(dir: &Path) -> PathBuf {
    let p = dir.join("chains.toml");
    std::fs::write(&p, CHAINS).unwrap();
    p
}

#[test]
fn compare_tells_a_slowed_build_apart_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path());
    let run = |results: &str, label: &str, extra: &[&str]| {
        let results = tmp.path().join(results);
        let mut args = vec![
            "run",
            p.to_str().unwrap(),
            "--no-progress",
            "--results",
            results.to_str().unwrap(),
            "--label",
            label,
        ];
        args.extend_from_slice(extra);
        let out = ackstorm(&args);
        // 0, or 1 when the slowed build breaks the profile's SLO: either way it ran.
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", output_text(&out));
        only_folder(&results, "chains-")
    };
    let a = run("a", "default", &[]);
    let b = run("b", "slowed", &["--set", "target.server.delay_ms=30"]);
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(b.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["label"], "slowed");
    assert!(
        manifest["build_info"].as_str().unwrap().contains("delay_ms=\"30\""),
        "{manifest}"
    );
    assert!(manifest["machine"]["cores"].as_u64().unwrap() >= 1);

    let results = tmp.path().join("cmp");
    let out = ackstorm(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--fail-on-regression",
        "5%",
        "--results",
        results.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a 30 ms slower build must fail the gate:\n{}",
        output_text(&out)
    );
    let dir = only_folder(&results, "compare-default-vs-slowed-");
    let c: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("compare.json")).unwrap()).unwrap();
    let rows = c["rows"].as_array().unwrap();
    let rr = rows.iter().find(|r| r["metric"] == "read_receipt.p99").unwrap();
    assert_eq!(rr["regression"], true, "{rr}");
    assert!(rr["b"].as_f64().unwrap() > rr["a"].as_f64().unwrap() + 20.0, "{rr}");
    assert!(dir.join("compare.html").is_file());

    // A build compared with itself passes.
    let out = ackstorm(&[
        "compare",
        a.to_str().unwrap(),
        a.to_str().unwrap(),
        "--fail-on-regression",
        "5%",
        "--results",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

#[test]
fn capacity_finds_the_knee_of_a_throttled_build() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path());
    let results = tmp.path().join("results");
    // 90 frames/s in all and 3 frames per message: the knee is at 30 messages/s, i.e. 20
    // users at 90 messages per minute each (low enough that a debug-build tester sharing the
    // cores with other tests keeps its schedule).
    let out = ackstorm(&[
        "capacity",
        p.to_str().unwrap(),
        "--no-progress",
        "--results",
        results.to_str().unwrap(),
        "--set",
        "target.server.throttle=90",
        "--vary",
        "rate",
        "--start",
        "22.5",
        "--max-steps",
        "8",
        // Debug builds sharing two cores with the other tests lag more than a release tester
        // (p99 over 25 ms seen under a loaded machine), and the throttle shows long before.
        "--max-lag-ms",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let dir = only_folder(&results, "chains-capacity-");
    let c: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("capacity.json")).unwrap()).unwrap();
    let capacity = c["capacity"]
        .as_f64()
        .unwrap_or_else(|| panic!("no capacity found: {c}"));
    assert!(
        (45.0..=90.0).contains(&capacity),
        "the knee is at 90/min; found {capacity}: {c}"
    );
    assert_eq!(c["limit"], "server_saturated", "{c}");
    let steps = c["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["passed"] == false && s["load"].as_f64().unwrap() <= 180.0)
    );
    assert!(dir.join("capacity.html").is_file());
    for s in steps {
        assert!(
            Path::new(s["results_dir"].as_str().unwrap())
                .join("summary.json")
                .is_file()
        );
    }
}
