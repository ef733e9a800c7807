//! The end-to-end audit proved against known faults: `ackstorm run` (the real binary) drives a
//! tiny 1:1 workload against the fake server of `fake_server`, which misbehaves in one way per
//! test and counts exactly what it did wrong; the audit figures in `summary.json` must equal
//! those counts, not merely be non-zero.
//!
//! Every run: 20 users, one device each, always online, always reading, no groups (except
//! where setup is the fault), 3 s of traffic and 2 s of drain, bounded by [`RUN_LIMIT`].

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::only_folder;
use crate::fake_server::{FakeServer, Garbage, Misbehave, Tally};

/// A run lasts about 6 s; one still going after this is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The audit's kinds (and of `audit.total`).
const KINDS: [&str; 9] = ackstorm::report::AUDIT_KINDS;
const FIELDS: [&str; 8] = [
    "expected",
    "arrived",
    "lost",
    "duplicated",
    "unexpected",
    "refused",
    "lost_in_disconnect",
    "not_due",
];

fn profile(url: &str, groups: u64) -> String {
    format!(
        r#"
[run]
name = "fault"
duration = "3s"
drain = "2s"
seed = 11
ramp = {{ users_per_sec = 100000 }}

[target]
url = "{url}"
secret = "x"

[population]
users = 20
devices_per_user = 1
contacts = 4
delivery_share = 1.0

[groups]
count = {groups}

[traffic]
one_to_one_per_min = 60
group_per_min = 0
message_bytes = 32

[reading]
online_share = 1.0
always_open = true
read_probability = 1.0
read_delay = {{ dist = "fixed", value = "0s" }}

[acks]
strategy = "hybrid"

[slo]
checks = ["audit.lost == 0"]
"#
    )
}

/// A finished `ackstorm run` and what the fake counted meanwhile.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    /// `summary.json`, when the run wrote a results folder.
    summary: Option<Value>,
    /// The fake's counters once every connection closed.
    tally: Tally,
}

impl Run {
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn summary(&self) -> &Value {
        self.summary
            .as_ref()
            .unwrap_or_else(|| panic!("no results folder; output:\n{}", self.text()))
    }

    /// A u64 of `summary.json` by dotted path (`audit.by_kind.message.lost`).
    fn figure(&self, path: &str) -> u64 {
        let s = self.summary();
        let v = path.split('.').fold(s, |v, k| &v[k]);
        v.as_u64()
            .unwrap_or_else(|| panic!("summary.json has no u64 at {path} (found {v}); audit: {}", s["audit"]))
    }

    fn kind(&self, kind: &str, field: &str) -> u64 {
        self.figure(&format!("audit.by_kind.{kind}.{field}"))
    }

    fn assert_exit(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "exit code; fake: {:?}; output:\n{}",
            self.tally,
            self.text()
        );
    }
}

/// Runs the tiny profile against `fake` (with `groups` groups to create) within [`RUN_LIMIT`].
async fn run(fake: &FakeServer, groups: u64) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("fault.toml");
    std::fs::write(&path, profile(&fake.url(), groups)).unwrap();
    let results = tmp.path().join("results");
    let started = Instant::now();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ackstorm"))
        .arg("run")
        .arg(&path)
        .arg("--no-progress")
        .arg("--results")
        .arg(&results)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let out = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`ackstorm run` had not ended after {RUN_LIMIT:?}: killed"))
        .expect("the binary runs");
    let elapsed = started.elapsed();
    let tally = fake.settle().await;
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed,
        summary: read_summary(&results),
        tally,
    }
}

fn read_summary(results: &Path) -> Option<Value> {
    if !results.is_dir() {
        return None;
    }
    let dir = only_folder(results, "fault-");
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    Some(serde_json::from_str(&text).expect("summary.json is JSON"))
}

async fn fake(misbehave: Misbehave) -> FakeServer {
    FakeServer::start(misbehave).await
}

/// The control: nothing wrong, so every figure the tester expects arrives, once, and the
/// audit's shape is complete (every kind, every field, totals the sum of the kinds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_fake_audits_clean_and_complete() {
    let f = fake(Misbehave::default()).await;
    let r = run(&f, 0).await;
    r.assert_exit(0);
    let t = r.tally;
    assert!(t.sends_answered > 20, "{t:?}");
    for field in FIELDS {
        let sum: u64 = KINDS.iter().map(|k| r.kind(k, field)).sum();
        assert_eq!(r.figure(&format!("audit.total.{field}")), sum, "total.{field}");
    }
    assert_eq!(r.kind("reply", "expected"), t.frames_after_login, "{t:?}");
    assert_eq!(r.kind("reply", "arrived"), t.frames_after_login, "{t:?}");
    assert_eq!(r.kind("message", "expected"), t.sends_answered, "{t:?}");
    assert_eq!(r.kind("message", "arrived"), t.message_pushes, "{t:?}");
    for kind in ["delivery", "read"] {
        assert!(r.kind(kind, "expected") > 0, "no {kind} receipts to audit");
    }
    // (Channel acks stay at 0 here: conversations are always open, so hybrid acks per message.)
    for kind in ["delivery", "read", "channel"] {
        assert_eq!(r.kind(kind, "arrived"), r.kind(kind, "expected"), "{kind}");
    }
    for field in ["lost", "duplicated", "unexpected", "refused", "lost_in_disconnect"] {
        assert_eq!(r.figure(&format!("audit.total.{field}")), 0, "total.{field}");
    }
    assert_eq!(r.figure("connections.reconnects"), 0);
    assert_eq!(r.summary()["interrupted"], false);
}

/// Sends answered, messages never pushed nor stored: each accepted send is lost, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_delivered_messages_are_each_lost() {
    let f = fake(Misbehave {
        never_deliver: true,
        ..Misbehave::default()
    })
    .await;
    let r = run(&f, 0).await;
    let t = r.tally;
    assert!(t.sends_answered > 20 && t.message_pushes == 0, "{t:?}");
    r.assert_exit(1);
    assert_eq!(r.kind("message", "lost"), t.sends_answered, "{t:?}");
    assert_eq!(r.kind("message", "expected"), t.sends_answered, "{t:?}");
    assert_eq!(r.kind("message", "arrived"), 0);
    assert_eq!(r.kind("reply", "lost"), 0);
    // Nothing arrived slower than the replies: no loss is taken for a late arrival.
    assert_eq!(r.kind("message", "lost_at_end"), 0);
}

/// Every 5th send's push dropped, every 7th send's `received` dropped (never both): the lost
/// messages and lost replies are exactly those, and no receipt is missed because of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_pushes_and_replies_are_lost_one_for_one() {
    let f = fake(Misbehave {
        drop_message_push_every: Some(5),
        drop_received_every: Some(7),
        ..Misbehave::default()
    })
    .await;
    let r = run(&f, 0).await;
    let t = r.tally;
    assert!(t.dropped_pushes > 0 && t.dropped_received > 0, "{t:?}");
    r.assert_exit(1);
    assert_eq!(r.kind("message", "lost"), t.dropped_pushes, "{t:?}");
    assert_eq!(r.kind("reply", "lost"), t.dropped_received, "{t:?}");
    // Accepted sends, plus the pushes of sends whose `received` was dropped: those are not
    // owed, but what arrives of them is counted as expected and arrived alike.
    assert_eq!(
        r.kind("message", "expected"),
        t.sends_answered + t.dropped_received,
        "{t:?}"
    );
    assert_eq!(
        r.kind("message", "arrived"),
        t.message_pushes,
        "pushes of unaccepted sends arrive too; {t:?}"
    );
    assert_eq!(r.kind("delivery", "lost"), 0);
    assert_eq!(r.kind("read", "lost"), 0);
    assert_eq!(r.kind("message", "duplicated"), 0);
    assert_eq!(r.kind("reply", "duplicated"), 0);
}

/// Setup that never completes: the run gives up by itself, says what it waited for, exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_create_group_ends_the_run_with_exit_2() {
    let f = fake(Misbehave {
        never_answer_create_group: true,
        ..Misbehave::default()
    })
    .await;
    let r = run(&f, 2).await;
    assert!(r.tally.create_group_frames >= 1, "{:?}", r.tally);
    assert!(r.elapsed < Duration::from_secs(60), "took {:?}", r.elapsed);
    r.assert_exit(2);
    assert!(r.stderr.contains("createGroup"), "{}", r.text());
}

/// A server that logs users in, then reads and answers nothing: every frame is a lost reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_loses_every_reply() {
    let f = fake(Misbehave {
        silent_after_login: true,
        ..Misbehave::default()
    })
    .await;
    let r = run(&f, 0).await;
    let t = r.tally;
    assert!(t.logins == 20 && t.frames_after_login > 20, "{t:?}");
    r.assert_exit(1);
    assert_eq!(r.kind("reply", "lost"), t.frames_after_login, "{t:?}");
    assert_eq!(r.kind("reply", "expected"), t.frames_after_login, "{t:?}");
    assert_eq!(r.kind("reply", "arrived"), 0);
    assert_eq!(r.kind("message", "expected"), 0, "no send was accepted");
}

/// Each user's first connection cut in the middle of a frame after 4 frames: users reconnect,
/// nothing is counted twice, nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_frame_are_reconnected_without_double_counting() {
    let f = fake(Misbehave {
        close_mid_frame_after: Some(4),
        ..Misbehave::default()
    })
    .await;
    let r = run(&f, 0).await;
    let t = r.tally;
    assert!(t.mid_frame_closes > 0, "{t:?}");
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(matches!(r.code, Some(0 | 1)), "exit {:?}: {}", r.code, r.text());
    assert_eq!(r.summary()["interrupted"], false);
    assert!(
        r.figure("connections.reconnects") >= t.mid_frame_closes,
        "{} reconnects; {t:?}",
        r.figure("connections.reconnects")
    );
    assert_eq!(r.kind("reply", "duplicated"), 0);
    assert_eq!(r.kind("message", "duplicated"), 0);
}

/// Invalid JSON, unknown ops, bad ids and binary frames after every login: each counted under
/// its cause, and the run goes on as if they were not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_are_counted_by_cause() {
    let f = fake(Misbehave {
        garbage_after_login: Some(Garbage {
            invalid_json: 1,
            unknown_op: 2,
            bad_id: 3,
            binary: 4,
        }),
        ..Misbehave::default()
    })
    .await;
    let r = run(&f, 0).await;
    let t = r.tally;
    assert_eq!(t.garbage_invalid_json, t.logins, "{t:?}");
    r.assert_exit(0);
    assert_eq!(r.figure("audit.protocol_errors.invalid_json"), t.garbage_invalid_json);
    assert_eq!(r.figure("audit.protocol_errors.unknown_op"), t.garbage_unknown_op);
    assert_eq!(r.figure("audit.protocol_errors.bad_frame"), t.garbage_bad_id);
    assert_eq!(r.figure("audit.protocol_errors.binary"), t.garbage_binary);
    assert_eq!(r.figure("audit.total.lost"), 0);
}

/// Receipts for mids the tester never sent are unexpected, one for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_unsent_messages_are_unexpected() {
    let f = fake(Misbehave {
        unexpected_receipts: 3,
        ..Misbehave::default()
    })
    .await;
    let r = run(&f, 0).await;
    let t = r.tally;
    assert_eq!((t.unexpected_deliveries, t.unexpected_reads), (3, 3), "{t:?}");
    r.assert_exit(0);
    assert_eq!(r.kind("delivery", "unexpected"), 3);
    assert_eq!(r.kind("read", "unexpected"), 3);
}
