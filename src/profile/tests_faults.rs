//! Reconnects, faults, group reader queries, tester timeouts and the audit horizon: their
//! defaults, their checks and their place in the workload.

use std::time::Duration;

use super::tests::{MINIMAL, keys_of, message_of, parse_text, problems};
use super::*;

/// Every new key of reconnects, faults, group reader queries and tester timeouts, none at
/// its default. Traffic ends at 62 s (200 users at 100/s, then 60 s).
const FAULTY: &str = r#"
[run]
duration = "60s"
drain = "5s"
ramp = { users_per_sec = 100 }
[population]
users = 200
devices_per_user = 2
[groups]
count = 10
read_users_share = 0.25
read_users_delay = "1s"
read_users_page = 50
[tester]
setup_timeout = "45s"
close_timeout = "1s"
audit_horizon = "30s"
[reconnect]
enabled = false
initial = "250ms"
max = "5s"
multiplier = 1.5
jitter = 0.2
outbox = 10
[[faults.drop_connections]]
at = "10s"
over = "20s"
count = 400
[[faults.drop_connections]]
at = "40s"
count = 1
[[faults.stall_readers]]
at = "15s"
over = "10s"
count = 50
stall = "5s"
[[faults.server_restarts]]
at = "30s"
"#;

#[test]
fn reconnects_faults_reader_queries_and_timeouts_have_defaults() {
    let p = parse_text(MINIMAL, &[]).unwrap();
    assert_eq!(
        p.reconnect,
        Reconnect {
            enabled: true,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
            outbox: 100,
        }
    );
    assert_eq!(p.reconnect, Reconnect::default());
    assert!(p.faults.is_empty() && p.faults == Faults::default());
    assert_eq!(
        (
            p.groups.read_users_share,
            p.groups.read_users_delay,
            p.groups.read_users_page
        ),
        (0.0, Duration::from_secs(2), 100)
    );
    assert_eq!(
        (p.tester.setup_timeout, p.tester.close_timeout, p.tester.audit_horizon),
        (Duration::from_secs(30), Duration::from_secs(2), Duration::from_secs(60))
    );
    assert!(p.notes.is_empty(), "{:?}", p.notes);
}

#[test]
fn reconnects_faults_reader_queries_and_timeouts_are_read() {
    let p = parse_text(FAULTY, &[]).unwrap();
    let s = Duration::from_secs;
    assert_eq!(
        p.reconnect,
        Reconnect {
            enabled: false,
            initial: Duration::from_millis(250),
            max: s(5),
            multiplier: 1.5,
            jitter: 0.2,
            outbox: 10,
        }
    );
    assert_eq!(
        p.faults,
        Faults {
            drop_connections: vec![
                FaultWindow {
                    at: s(10),
                    over: s(20),
                    count: 400
                },
                FaultWindow {
                    at: s(40),
                    over: Duration::ZERO,
                    count: 1
                },
            ],
            stall_readers: vec![Stall {
                window: FaultWindow {
                    at: s(15),
                    over: s(10),
                    count: 50
                },
                stall: s(5),
            }],
            server_restarts: vec![s(30)],
        }
    );
    assert!(!p.faults.is_empty());
    assert_eq!(
        (
            p.groups.read_users_share,
            p.groups.read_users_delay,
            p.groups.read_users_page
        ),
        (0.25, s(1), 50)
    );
    assert_eq!(
        (p.tester.setup_timeout, p.tester.close_timeout, p.tester.audit_horizon),
        (s(45), s(1), s(30))
    );
}

#[test]
fn traffic_and_ramp_end_follow_the_ramp() {
    let p = parse_text(FAULTY, &[]).unwrap();
    assert_eq!(
        (p.ramp_end(), p.traffic_end()),
        (Duration::from_secs(2), Duration::from_secs(62))
    );
    let steps = "[run]\nramp = { users_per_sec = 10, steps = [ { users = 50, hold = \"5s\" }, { users = 100, hold = \"5s\" } ] }\n[population]\nusers = 100\n";
    let p = parse_text(steps, &[]).unwrap();
    // 5 s to 50 users, hold 5 s, 5 s to 100, hold 5 s.
    assert_eq!(
        (p.ramp_end(), p.traffic_end()),
        (Duration::from_secs(10), Duration::from_secs(20))
    );
    assert_eq!(crate::runner::traffic_end(&p), p.traffic_end());
    assert_eq!(crate::runner::ramp_end(&p), p.ramp_end());
}

#[test]
fn reconnect_backoffs_must_grow_within_their_cap() {
    let found = problems(
        MINIMAL,
        &[
            "reconnect.multiplier=0.5",
            "reconnect.jitter=1.5",
            "reconnect.initial=20s",
        ],
    );
    assert_eq!(
        keys_of(&found),
        ["reconnect.jitter", "reconnect.multiplier", "reconnect.initial"],
        "{found:?}"
    );
    assert!(message_of(&found, "reconnect.multiplier").starts_with("0.5 must be a number >= 1"));
    assert!(message_of(&found, "reconnect.initial").starts_with("20s is longer than reconnect.max (10s)"));
    let p = parse_text(
        MINIMAL,
        &["reconnect.multiplier=1", "reconnect.initial=10s", "reconnect.outbox=0"],
    )
    .unwrap();
    assert_eq!((p.reconnect.multiplier, p.reconnect.outbox), (1.0, 0));
}

#[test]
fn reader_queries_need_a_share_and_a_page_the_protocol_allows() {
    for (set, key) in [
        ("groups.read_users_page=0", "groups.read_users_page"),
        ("groups.read_users_page=501", "groups.read_users_page"),
        ("groups.read_users_share=2", "groups.read_users_share"),
        ("groups.read_users_delay=soon", "groups.read_users_delay"),
    ] {
        let found = problems(MINIMAL, &[set]);
        assert_eq!(keys_of(&found), [key], "{set}: {found:?}");
    }
    let p = parse_text(MINIMAL, &["groups.read_users_page=500", "groups.read_users_share=1"]).unwrap();
    assert_eq!(p.groups.read_users_page, 500);
    assert!(
        p.notes.iter().any(|n| n.contains("read_users_share has no effect")),
        "{:?}",
        p.notes
    );
}

#[test]
fn the_audit_horizon_is_at_most_an_hour() {
    let found = problems(MINIMAL, &["tester.audit_horizon=2h"]);
    assert_eq!(keys_of(&found), ["tester.audit_horizon"], "{found:?}");
    assert!(message_of(&found, "tester.audit_horizon").starts_with("2h is longer than 1h"));
    assert!(parse_text(MINIMAL, &["tester.audit_horizon=1h"]).is_ok());
}

#[test]
fn the_audit_horizon_outlives_the_drain() {
    let found = problems(MINIMAL, &["tester.audit_horizon=2s"]);
    assert_eq!(keys_of(&found), ["tester.audit_horizon"], "{found:?}");
    assert!(message_of(&found, "tester.audit_horizon").starts_with("2s is shorter than run.drain (3s)"));
    let p = parse_text(MINIMAL, &["tester.audit_horizon=3s"]).unwrap();
    assert_eq!(p.tester.audit_horizon, Duration::from_secs(3));
}

#[test]
fn faults_strike_while_traffic_runs() {
    let window = |table: &str, body: &str| format!("{FAULTY}[[faults.{table}]]\n{body}\n");
    // Traffic ends at 62 s.
    let found = problems(&window("drop_connections", "at = \"62s\"\ncount = 1"), &[]);
    assert_eq!(keys_of(&found), ["faults.drop_connections[2].at"], "{found:?}");
    assert!(message_of(&found, "faults.drop_connections[2].at").contains("is not before traffic ends (1m 2s)"));
    let found = problems(
        &window("drop_connections", "at = \"50s\"\nover = \"13s\"\ncount = 1"),
        &[],
    );
    assert_eq!(keys_of(&found), ["faults.drop_connections[2].over"], "{found:?}");
    parse_text(
        &window("drop_connections", "at = \"50s\"\nover = \"12s\"\ncount = 1"),
        &[],
    )
    .unwrap();
    let found = problems(&window("stall_readers", "at = \"70s\"\ncount = 1\nstall = \"1s\""), &[]);
    assert_eq!(keys_of(&found), ["faults.stall_readers[1].at"], "{found:?}");
    let found = problems(&window("server_restarts", "at = \"1h\""), &[]);
    assert_eq!(keys_of(&found), ["faults.server_restarts[1].at"], "{found:?}");
    // No run length, no judgement of fault times (one problem, not one per fault).
    let found = problems(&FAULTY.replace("duration = \"60s\"", ""), &[]);
    assert_eq!(keys_of(&found), ["run.duration"], "{found:?}");
    let found = problems(FAULTY, &["run.ramp.users_per_sec=0"]);
    assert_eq!(keys_of(&found), ["run.ramp.users_per_sec"], "{found:?}");
    // An absurd ramp saturates instead of panicking.
    parse_text(FAULTY, &["run.ramp.users_per_sec=1e-300"]).unwrap();
}

#[test]
fn fault_starts_and_counts_are_required() {
    let text = format!(
        "{MINIMAL}[[faults.drop_connections]]\nover = \"1s\"\n[[faults.stall_readers]]\nat = \"1s\"\n[[faults.server_restarts]]\n"
    );
    let found = problems(&text, &[]);
    assert_eq!(
        keys_of(&found),
        [
            "faults.drop_connections[0].at",
            "faults.drop_connections[0].count",
            "faults.stall_readers[0].count",
            "faults.stall_readers[0].stall",
            "faults.server_restarts[0].at",
        ],
        "{found:?}"
    );
    assert!(found.iter().all(|(_, m)| m.starts_with("missing")), "{found:?}");
    let found = problems(
        &format!("{MINIMAL}[[faults.stall_readers]]\nat = \"1s\"\ncount = 0\nstall = \"0s\"\n"),
        &[],
    );
    assert_eq!(
        keys_of(&found),
        ["faults.stall_readers[0].count", "faults.stall_readers[0].stall"],
        "{found:?}"
    );
    assert!(message_of(&found, "faults.stall_readers[0].stall").contains("longer than 0s"));
}

#[test]
fn fault_counts_are_bounded_by_the_peak() {
    // 200 users x 2 devices.
    let text = |count: u64| format!("{FAULTY}[[faults.drop_connections]]\nat = \"1s\"\ncount = {count}\n");
    parse_text(&text(400), &[]).unwrap();
    let found = problems(&text(401), &[]);
    assert_eq!(keys_of(&found), ["faults.drop_connections[2].count"], "{found:?}");
    assert!(
        message_of(&found, "faults.drop_connections[2].count")
            .contains("between 1 and the connections at peak (200 users x 2 devices)"),
        "{found:?}"
    );
    let stall =
        |count: u64| format!("{FAULTY}[[faults.stall_readers]]\nat = \"1s\"\ncount = {count}\nstall = \"1s\"\n");
    parse_text(&stall(200), &[]).unwrap();
    let found = problems(&stall(201), &[]);
    assert_eq!(keys_of(&found), ["faults.stall_readers[1].count"], "{found:?}");
    // With steps the peak is the largest step, not the population.
    let steps = "[run]\nramp = { steps = [ { users = 50, hold = \"5s\" } ] }\n[population]\nusers = 100\n[[faults.stall_readers]]\nat = \"1s\"\ncount = 51\nstall = \"1s\"\n";
    let found = problems(steps, &[]);
    assert!(message_of(&found, "faults.stall_readers[0].count").contains("the users at peak (50)"));
}

#[test]
fn server_restarts_need_an_embedded_server_in_a_child_process() {
    let p = parse_text(FAULTY, &[]).unwrap();
    assert!(matches!(
        p.target,
        Target::Embedded {
            mode: EmbeddedMode::ChildProcess,
            ..
        }
    ));
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("faults.server_restarts: the embedded server runs as a child process")),
        "{:?}",
        p.notes
    );
    let found = problems(FAULTY, &["target.embedded=in-process"]);
    assert_eq!(keys_of(&found), ["faults.server_restarts"], "{found:?}");
    let found = problems(FAULTY, &["target.url=\"ws://127.0.0.1:1/ws\"", "target.secret=s"]);
    assert_eq!(keys_of(&found), ["faults.server_restarts"], "{found:?}");
    assert!(message_of(&found, "faults.server_restarts").contains("cannot restart an external one"));
    // Without restarts the mode is left as asked.
    let p = parse_text(MINIMAL, &["target.embedded=in-process"]).unwrap();
    assert!(matches!(
        p.target,
        Target::Embedded {
            mode: EmbeddedMode::InProcess,
            ..
        }
    ));
}

#[test]
fn new_keys_round_trip_through_the_effective_profile() {
    let p = parse_text(FAULTY, &[]).unwrap();
    let eff = effective_toml(&p);
    for table in [
        "[reconnect]",
        "[[faults.drop_connections]]",
        "[[faults.stall_readers]]",
        "[[faults.server_restarts]]",
    ] {
        assert!(eff.contains(table), "{table} missing from\n{eff}");
    }
    let back = parse_text(&eff, &[]).unwrap_or_else(|e| panic!("{e}\n{eff}"));
    assert_eq!(back, p, "{eff}");
    assert_eq!(workload_hash(&back), workload_hash(&p));
    // Without faults no faults table is written; every other new key is.
    let eff = effective_toml(&parse_text(MINIMAL, &[]).unwrap());
    assert!(!eff.contains("faults"), "{eff}");
    for key in [
        "read_users_share",
        "read_users_delay",
        "read_users_page",
        "setup_timeout",
        "close_timeout",
        "audit_horizon",
        "multiplier",
        "outbox",
    ] {
        assert!(eff.contains(key), "{key} missing from\n{eff}");
    }
    // Only some lists given: only those written.
    let p = parse_text(&format!("{MINIMAL}[[faults.server_restarts]]\nat = \"5s\"\n"), &[]).unwrap();
    let eff = effective_toml(&p);
    assert!(
        eff.contains("[[faults.server_restarts]]") && !eff.contains("drop_connections"),
        "{eff}"
    );
    assert_eq!(parse_text(&eff, &[]).unwrap(), p);
}

#[test]
fn faults_and_reconnects_are_part_of_the_workload() {
    let base = parse_text(FAULTY, &[]).unwrap();
    for set in [
        "reconnect.enabled=true",
        "reconnect.outbox=11",
        "groups.read_users_page=51",
        "faults.server_restarts=[]",
    ] {
        let other = parse_text(FAULTY, &[set]).unwrap();
        assert_ne!(workload_hash(&base), workload_hash(&other), "{set}");
    }
    let moved = FAULTY.replace("at = \"40s\"", "at = \"41s\"");
    assert_ne!(workload_hash(&base), workload_hash(&parse_text(&moved, &[]).unwrap()));
}
