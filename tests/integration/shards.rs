//! Split runs end to end through the binary: shards of one seeded workload against one server
//! on 127.0.0.1:0, merged, must give exactly the counts, the audit and the histogram totals of a
//! single process; `merge` refuses what is not one run; `--workers` splits and merges by itself;
//! partitioned shards each with their own embedded server audit clean.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ackstorm::collector::Metric;
use ackstorm::collector::histfile;
use serde_json::Value;

use crate::common::{SECRET, ackstorm_within, config, only_folder, start};

/// Reading that does not depend on network timing (conversations always open), per-message
/// acks, and nobody sending before everyone is logged in: every count is the workload's own.
const PROFILE: &str = r#"
[run]
name = "split"
duration = "4s"
drain = "2s"
seed = 7
ramp = { users_per_sec = 200 }

[population]
users = 60
contacts = 4

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

[slo]
checks = ["audit.lost == 0", "server_ack.p99 < 5s"]
"#;

const LIMIT: Duration = Duration::from_secs(90);

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ackstorm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("p.toml"), PROFILE).unwrap();
    d
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn soon() -> String {
    humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(3)).to_string()
}

/// The counts a split run must reproduce exactly.
fn counts(summary: &Value) -> Value {
    let latency_counts: serde_json::Map<String, Value> = summary["latencies"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["count"].clone()))
        .collect();
    serde_json::json!({
        "messages": summary["throughput"]["messages_sent"],
        "receipts": summary["counters"]["receipts_received"],
        "audit": summary["audit"]["by_kind"],
        "latency_counts": latency_counts,
        "economics": summary["ack_economics"]["total"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_merged_are_exactly_one_process() {
    let server = start(config()).await;
    let url = server.ws_url();
    let dir = scratch("shards");
    let profile = dir.join("p.toml");
    let base = ["--target", url.as_str(), "--secret", SECRET, "--no-progress"];

    let single = dir.join("single");
    let mut args = vec!["run", s(&profile), "--results", s(&single)];
    args.extend(base);
    let (code, out) = ackstorm_within(&args, LIMIT).await;
    assert_eq!(code, Some(0), "{out}");

    let split = dir.join("split");
    let start_at = soon();
    let runs = (0..4).map(|i| {
        let shard = format!("{i}/4");
        let (profile, split, start_at, url) = (profile.clone(), split.clone(), start_at.clone(), url.clone());
        async move {
            let args = [
                "run",
                s(&profile),
                "--results",
                s(&split),
                "--shard",
                &shard,
                "--run-id",
                "t1",
                "--start-at",
                &start_at,
                "--target",
                &url,
                "--secret",
                SECRET,
                "--no-progress",
            ];
            ackstorm_within(&args, LIMIT).await
        }
    });
    for (code, out) in futures_util::future::join_all(runs).await {
        assert_eq!(code, Some(0), "{out}");
    }
    let run_dir = split.join("split-t1");
    let merged = dir.join("merged");
    let (code, out) = ackstorm_within(&["merge", s(&run_dir), "--out", s(&merged)], LIMIT).await;
    assert_eq!(code, Some(0), "{out}");

    let one = json(&only_folder(&single, "split").join("summary.json"));
    let all = json(&merged.join("summary.json"));
    assert_eq!(counts(&all), counts(&one), "merged shards against one process");
    assert_eq!(all["audit"]["total"]["lost"], 0);
    assert!(
        all["audit"]["total"]["expected"].as_u64().unwrap() > 500,
        "{}",
        all["audit"]
    );
    // The shards each saw a part; their merge has every message.
    let rows = all["shards"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let per_shard: u64 = rows.iter().map(|r| r["messages_sent"].as_u64().unwrap()).sum();
    assert_eq!(per_shard, all["throughput"]["messages_sent"].as_u64().unwrap());
    assert!(
        rows.iter().all(|r| r["messages_sent"].as_u64().unwrap() > 0),
        "{rows:?}"
    );

    // Histograms: what is measured within one process (at the sender) adds up exactly from
    // the shards' own histograms, and the merged percentiles are those of that sum.
    let read = |d: &Path| histfile::read(&std::fs::read(d.join("histograms.hdr")).unwrap()).unwrap();
    let merged_h = read(&merged);
    let shards_h: Vec<_> = (0..4).map(|i| read(&run_dir.join(format!("shard-{i}")))).collect();
    for metric in [Metric::ServerAck, Metric::ScheduleLag, Metric::AckLag, Metric::Delivery] {
        let mut sum = ackstorm::collector::new_histogram();
        for h in &shards_h {
            if let Some((_, c, _)) = h.iter().find(|(m, _, _)| *m == metric) {
                sum.add(c).unwrap();
            }
        }
        let (_, merged_c, _) = merged_h.iter().find(|(m, _, _)| *m == metric).unwrap();
        assert_eq!(*merged_c, sum, "{}", metric.name());
        let l = ackstorm::collector::latency(&sum, None);
        assert_eq!(
            all["latencies"][metric.name()]["p99"].as_f64().unwrap(),
            l.p99,
            "{}",
            metric.name()
        );
        assert_eq!(
            all["latencies"][metric.name()]["p50"].as_f64().unwrap(),
            l.p50,
            "{}",
            metric.name()
        );
    }
    // Every metric's summary in the report comes from its histogram in the file.
    for (m, c, _) in &merged_h {
        assert_eq!(
            all["latencies"][m.name()]["count"].as_u64().unwrap(),
            c.len(),
            "{}",
            m.name()
        );
    }

    // A shard's own report says it is one and leaves the SLOs to the merge.
    let shard0 = json(&run_dir.join("shard-0/summary.json"));
    assert_eq!(shard0["shards"]["index"], 0);
    assert!(shard0["slo"].as_array().unwrap().is_empty());

    // Refusals: a missing shard, shards of another run.
    let three: Vec<String> = (0..3)
        .map(|i| s(&run_dir.join(format!("shard-{i}"))).to_string())
        .collect();
    let mut args: Vec<&str> = vec!["merge"];
    args.extend(three.iter().map(String::as_str));
    let m3 = dir.join("m3");
    args.extend(["--out", s(&m3)]);
    let (code, out) = ackstorm_within(&args, LIMIT).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("shard 3") && out.contains("missing"), "{out}");

    let other = dir.join("other");
    copy_dir(&run_dir.join("shard-3"), &other);
    let manifest = other.join("manifest.json");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("\"run_id\": \"t1\"", "\"run_id\": \"t2\"");
    std::fs::write(&manifest, text).unwrap();
    let mut args: Vec<&str> = vec!["merge"];
    args.extend(three.iter().map(String::as_str));
    let m4 = dir.join("m4");
    args.extend([s(&other), "--out", s(&m4)]);
    let (code, out) = ackstorm_within(&args, LIMIT).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("different runs"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_split_the_run_and_merge_it() {
    let dir = scratch("workers");
    let results = dir.join("r");
    let profile = dir.join("p.toml");
    let args = [
        "run",
        s(&profile),
        "--workers",
        "2",
        "--results",
        s(&results),
        "--no-progress",
    ];
    let (code, out) = ackstorm_within(&args, LIMIT).await;
    assert_eq!(code, Some(0), "{out}");
    let run_dir = only_folder(&results, "split-");
    let merged = json(&run_dir.join("merged/summary.json"));
    assert_eq!(merged["shards"]["count"], 2);
    assert_eq!(merged["audit"]["total"]["lost"], 0, "{}", merged["audit"]);
    let rows = merged["shards"]["rows"].as_array().unwrap();
    let sum: u64 = rows.iter().map(|r| r["messages_sent"].as_u64().unwrap()).sum();
    assert_eq!(sum, merged["throughput"]["messages_sent"].as_u64().unwrap());
    assert!(sum > 100, "{sum}");
    // The SLOs are judged once, on the merged run.
    let slo = merged["slo"].as_array().unwrap();
    assert_eq!(slo.len(), 2, "{slo:?}");
    assert!(slo.iter().all(|c| c["passed"] == true), "{slo:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_shards_with_servers_of_their_own_audit_clean() {
    let dir = scratch("partition");
    let results = dir.join("r");
    let start_at = soon();
    let runs = (0..2).map(|i| {
        let shard = format!("{i}/2");
        let (profile, results, start_at) = (dir.join("p.toml"), results.clone(), start_at.clone());
        async move {
            let args = [
                "run",
                s(&profile),
                "--results",
                s(&results),
                "--shard",
                &shard,
                "--start-at",
                &start_at,
                "--set",
                "population.partition=\"shard\"",
                "--no-progress",
            ];
            ackstorm_within(&args, LIMIT).await
        }
    });
    for (code, out) in futures_util::future::join_all(runs).await {
        assert_eq!(code, Some(0), "{out}");
    }
    let run_dir = only_folder(&results, "split-");
    for i in 0..2 {
        // Each shard's own audit is complete: its users talked only among themselves.
        let shard = json(&run_dir.join(format!("shard-{i}/summary.json")));
        assert_eq!(shard["audit"]["total"]["lost"], 0, "shard {i}: {}", shard["audit"]);
        assert_eq!(
            shard["audit"]["total"]["unexpected"], 0,
            "shard {i}: {}",
            shard["audit"]
        );
    }
    let (code, out) = ackstorm_within(&["merge", s(&run_dir)], LIMIT).await;
    assert_eq!(code, Some(0), "{out}");
    let merged = json(&run_dir.join("merged/summary.json"));
    assert_eq!(merged["shards"]["partitioned"], true);
    assert_eq!(merged["audit"]["total"]["lost"], 0);
    assert!(merged["throughput"]["messages_sent"].as_u64().unwrap() > 100);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_signal_to_the_workers_parent_stops_them_all_and_merges_what_ran() {
    let dir = scratch("workers-signal");
    let results = dir.join("r");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ackstorm"))
        .args([
            "run",
            s(&dir.join("p.toml")),
            "--workers",
            "2",
            "--duration",
            "60s",
            "--no-progress",
        ])
        .args(["--results", s(&results)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0) // the signal reaches the parent alone, as a supervisor's would
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(8));
    // SAFETY: kill(2) on the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the workers' parent did not end within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(143));
    let run_dir = only_folder(&results, "split-");
    let merged = json(&run_dir.join("merged/summary.json"));
    assert_eq!(merged["interrupted"], true);
    assert_eq!(merged["shards"]["count"], 2);
    assert!(merged["throughput"]["messages_sent"].as_u64().unwrap() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
