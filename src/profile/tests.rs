//! Profile parsing, validation, overrides and the effective profile.

use std::path::Path;
use std::time::Duration;

use super::*;

pub(super) fn parse_text(text: &str, overrides: &[&str]) -> Result<Plan, ProfileError> {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    parse(Path::new("profiles/test.toml"), text, &o)
}

pub(super) const MINIMAL: &str = "[run]\nduration = \"10s\"\n[population]\nusers = 100\n";

#[test]
fn a_minimal_profile_gets_every_default() {
    let p = parse_text(MINIMAL, &[]).unwrap();
    assert_eq!(p.name, "run");
    assert_eq!(p.duration, Duration::from_secs(10));
    assert_eq!(p.population.users, 100);
    assert_eq!(p.acks.strategy, Strategy::Hybrid);
    assert!(matches!(
        p.target,
        Target::Embedded {
            mode: EmbeddedMode::Auto,
            ..
        }
    ));
    assert_eq!(p.reading.read_delay, Delay::Exp(Duration::from_millis(800)));
    assert!(p.slo.is_empty());
}

#[test]
fn the_shipped_profiles_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 4, "smoke, capacity, group-heavy, strategies");
    let smoke = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/smoke.toml"), &[]).unwrap();
    assert_eq!(
        (smoke.population.users, smoke.duration, smoke.acks.strategy),
        (1000, Duration::from_secs(30), Strategy::Hybrid)
    );
    assert!(smoke.groups.count > 0 && smoke.groups.allow_group_ack_share > 0.0);
}

pub(super) fn problems(text: &str, overrides: &[&str]) -> Vec<(String, String)> {
    match parse_text(text, overrides) {
        Err(ProfileError::Invalid { problems, .. }) => problems,
        other => panic!("expected ProfileError::Invalid, got {other:?}"),
    }
}

#[test]
fn unknown_keys_are_errors_naming_file_and_key() {
    let e = parse_text("[population]\nusrs = 5\n", &[]).unwrap_err().to_string();
    assert!(e.contains("profiles/test.toml") && e.contains("population.usrs"), "{e}");
    let e = parse_text("[populaton]\nusers = 5\n", &[]).unwrap_err().to_string();
    assert!(e.contains("populaton: unknown key, did you mean `population`?"), "{e}");
}

#[test]
fn wrong_types_are_errors_naming_the_key() {
    let e = parse_text("[run]\nduration = \"10s\"\n[population]\nusers = \"many\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("population.users: expected an integer, got \"many\""), "{e}");
}

#[test]
fn every_problem_of_a_profile_is_reported_at_once() {
    let text = r#"
[run]
duration = "10s"
drain = 3
seeed = 4
[population]
users = "ten"
delivery_share = 1.5
[tester]
colour = "blue"
"#;
    let Err(ProfileError::Invalid { file, problems }) = parse_text(text, &[]) else {
        panic!("must be invalid")
    };
    let found: Vec<(&str, &str)> = problems.iter().map(|(k, m)| (k.as_str(), m.as_str())).collect();
    assert_eq!(found.len(), 5, "{found:?}");
    for (key, message) in [
        ("run.drain", "expected a string, got 3"),
        ("run.seeed", "unknown key, did you mean `seed`?"),
        ("population.users", "expected an integer, got \"ten\""),
        ("population.delivery_share", "1.5 is not a share between 0 and 1"),
        ("tester.colour", "unknown key (valid here: `arbiters`,"),
    ] {
        assert!(
            found.iter().any(|(k, m)| *k == key && m.starts_with(message)),
            "{key}: {message} missing from {found:?}"
        );
    }
    let msg = ProfileError::Invalid { file, problems }.to_string();
    assert!(msg.starts_with("profiles/test.toml: "), "{msg}");
}

#[test]
fn wrong_types_inside_arrays_and_tables_name_their_path_and_nothing_follows_from_them() {
    let text = r#"
[run]
ramp = { users_per_sec = "fast", steps = [ { users = 50, hold = 5 }, { users = 100, hold = "5s", hlod = "1s" } ] }
[population]
users = 100
devices_per_user = -1
[slo]
checks = ["audit.lost == 0", 5]
"#;
    let found = problems(text, &[]);
    let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "population.devices_per_user",
            "run.ramp.steps[0].hold",
            "run.ramp.steps[1].hlod",
            "run.ramp.users_per_sec",
            "slo.checks[1]",
        ],
        "{found:?}"
    );
    assert!(found[0].1.contains("expected an integer >= 0, got -1"), "{found:?}");
    assert!(found[2].1.contains("did you mean `hold`?"), "{found:?}");
    assert!(found[3].1.contains("expected a number, got \"fast\""), "{found:?}");
    assert!(found[4].1.contains("expected a string, got 5"), "{found:?}");
}

#[test]
fn missing_step_keys_are_reported_by_the_checker() {
    let text = "[run]\nramp = { steps = [ { users = 50 } ] }\n[population]\nusers = 100\n";
    let found = problems(text, &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "run.ramp.steps[0].hold");
    assert!(found[0].1.starts_with("missing"), "{found:?}");
}

#[test]
fn a_file_that_is_not_toml_is_one_error() {
    let e = parse_text("[run\nduration = 3\nbogus = 1\n", &[]).unwrap_err();
    assert!(matches!(e, ProfileError::Toml { .. }), "{e:?}");
    assert!(e.to_string().starts_with("profiles/test.toml: "), "{e}");
}

#[test]
fn problems_with_command_line_keys_say_so() {
    let found = problems(MINIMAL, &["population.usrs=5", "population.users=lots"]);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0],
        (
            "population.users".to_string(),
            "expected an integer, got \"lots\" (from the command line: population.users=lots)".to_string()
        )
    );
    assert_eq!(
        found[1],
        (
            "population.usrs".to_string(),
            "unknown key, did you mean `users`? (from the command line: population.usrs=5)".to_string()
        )
    );
    let found = problems(MINIMAL, &["run.duration=soon"]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].1.ends_with("(from the command line: run.duration=soon)"),
        "{found:?}"
    );
}

#[test]
fn suggestions_only_for_near_misses() {
    let run = ["name", "duration", "drain", "seed", "ramp", "results_dir"];
    for (typo, meant) in [
        ("durration", "duration"),
        ("duraton", "duration"),
        ("Duration", "duration"),
        ("sed", "seed"),
        ("results-dir", "results_dir"),
        ("resultsdir", "results_dir"),
    ] {
        let m = lenient::unknown_key(typo, &run);
        assert_eq!(m, format!("unknown key, did you mean `{meant}`?"), "{typo}");
    }
    for unrelated in ["users", "bogus", "timeout", "x"] {
        let m = lenient::unknown_key(unrelated, &run);
        assert!(
            m.starts_with("unknown key (valid here: `name`, `duration`"),
            "{unrelated}: {m}"
        );
    }
}

#[test]
fn every_invalid_value_is_reported_at_once_with_its_key() {
    let text = r#"
[run]
duration = "ten seconds"
[population]
users = 0
delivery_share = 1.5
[acks]
strategy = "sometimes"
[reading]
read_delay = { dist = "fixed", mean = "1s" }
[slo]
checks = ["read_receipt.p99 < 50", "latency < 3ms"]
"#;
    let Err(ProfileError::Invalid { file, problems }) = parse_text(text, &[]) else {
        panic!("must be invalid")
    };
    assert_eq!(file, Path::new("profiles/test.toml"));
    let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "run.duration",
        "population.users",
        "population.delivery_share",
        "acks.strategy",
        "reading.read_delay",
        "slo.checks[0]",
        "slo.checks[1]",
    ] {
        assert!(keys.contains(&key), "{key} missing from {problems:?}");
    }
    let msg = ProfileError::Invalid { file, problems }.to_string();
    assert!(msg.contains("\"sometimes\" is not one of"), "{msg}");
}

#[test]
fn command_line_overrides_win_over_the_file() {
    let p = parse_text(
        MINIMAL,
        &[
            "population.users=7",
            "run.duration=3s",
            "acks.strategy=channel",
            "run.ramp.users_per_sec=50",
        ],
    )
    .unwrap();
    assert_eq!(p.population.users, 7);
    assert_eq!(p.duration, Duration::from_secs(3));
    assert_eq!(p.acks.strategy, Strategy::Channel);
    assert_eq!(p.ramp, Ramp::Rate { users_per_sec: 50.0 });
    let e = parse_text(MINIMAL, &["population.users"]).unwrap_err().to_string();
    assert!(e.contains("--set population.users") && e.contains("key=value"), "{e}");
    let e = parse_text(MINIMAL, &["population.users=lots"]).unwrap_err().to_string();
    assert!(e.contains("users"), "{e}");
}

#[test]
fn step_plans_replace_the_duration() {
    let text = "[run]\nramp = { users_per_sec = 100, steps = [ { users = 50, hold = \"5s\" }, { users = 100, hold = \"5s\" } ] }\n[population]\nusers = 100\n";
    let p = parse_text(text, &[]).unwrap();
    assert_eq!(p.duration, Duration::from_secs(10));
    assert_eq!(p.peak_users(), 100);
    let e = parse_text(text, &["run.duration=5s"]).unwrap_err().to_string();
    assert!(e.contains("not allowed with run.ramp.steps"), "{e}");
}

#[test]
fn the_effective_profile_parses_back_to_the_same_plan() {
    let smoke = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/smoke.toml")).unwrap();
    for text in [MINIMAL.to_string(), smoke] {
        let p = parse_text(&text, &[]).unwrap();
        let eff = effective_toml(&p);
        let back = parse_text(&eff, &[]).unwrap_or_else(|e| panic!("{e}\n{eff}"));
        assert_eq!(back, p, "{eff}");
        assert_eq!(workload_hash(&p), workload_hash(&back));
    }
}

#[test]
fn the_workload_hash_ignores_target_labels_and_checks_but_not_the_workload() {
    let base = parse_text(MINIMAL, &[]).unwrap();
    let other_build = parse_text(
        MINIMAL,
        &[
            "target.server.delay_ms=5",
            "target.label=\"b\"",
            "run.name=\"x\"",
            r#"slo.checks=["audit.lost == 0"]"#,
        ],
    )
    .unwrap();
    assert_eq!(workload_hash(&base), workload_hash(&other_build));
    let other_workload = parse_text(MINIMAL, &["population.users=101"]).unwrap();
    assert_ne!(workload_hash(&base), workload_hash(&other_workload));
    let other_seed = parse_text(MINIMAL, &["run.seed=2"]).unwrap();
    assert_ne!(workload_hash(&base), workload_hash(&other_seed));
}

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

fn keys_of(found: &[(String, String)]) -> Vec<&str> {
    found.iter().map(|(k, _)| k.as_str()).collect()
}

fn message_of<'a>(found: &'a [(String, String)], key: &str) -> &'a str {
    found
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, m)| m.as_str())
        .unwrap_or_else(|| panic!("{key} missing from {found:?}"))
}

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

/// Absurd values of the embedded server's options are errors naming the key (they used to
/// panic the server: a throttle or token wait past `Duration`'s range, a delay past the
/// clock's); the edges of the ranges are fine.
#[test]
fn absurd_server_options_are_errors_naming_the_key() {
    let found = problems(
        MINIMAL,
        &[
            "target.server.rate_limit=1e-300",
            "target.server.throttle=1e-300",
            "target.server.delay_ms=3600001",
            "target.server.offline_single=1000001",
            "target.server.offline_group=99999999999",
            "target.server.group_max_members=0",
            "target.server_threads=0",
            "groups.server_ack_max_members=1",
        ],
    );
    assert_eq!(
        keys_of(&found),
        [
            "target.server.rate_limit",
            "target.server.offline_single",
            "target.server.offline_group",
            "target.server.group_max_members",
            "target.server.delay_ms",
            "target.server.throttle",
            "target.server_threads",
            "groups.server_ack_max_members",
        ]
    );
    let throttle = message_of(&found, "target.server.throttle");
    assert!(
        throttle.starts_with("1e-300 must be 0 (off) or a rate between 0.001 and 1e9 frames per second"),
        "{throttle}"
    );
    let delay = message_of(&found, "target.server.delay_ms");
    assert!(delay.starts_with("3600001 must be between 0 and 3600000"), "{delay}");
    for (over, key) in [
        ("target.server.rate_limit=nan", "target.server.rate_limit"),
        ("target.server.throttle=-1", "target.server.throttle"),
        ("target.server.rate_limit=2e9", "target.server.rate_limit"),
        ("target.server_threads=1025", "target.server_threads"),
        ("target.server.delay_ms=18446744073709551615", "target.server.delay_ms"),
    ] {
        assert_eq!(keys_of(&problems(MINIMAL, &[over])), [key], "{over}");
    }
    let found = problems(MINIMAL, &["target.server.rate_limit=5", "target.server.rate_burst=0"]);
    assert_eq!(keys_of(&found), ["target.server.rate_burst"]);
    let edges = parse_text(
        MINIMAL,
        &[
            "target.server.rate_limit=0.001",
            "target.server.throttle=1e9",
            "target.server.delay_ms=3600000",
            "target.server.offline_single=0",
            "target.server.offline_group=1000000",
            "target.server.group_max_members=2",
            "target.server_threads=1024",
            "groups.server_ack_max_members=1000000",
        ],
    )
    .unwrap();
    let Target::Embedded { server, threads, .. } = &edges.target else {
        panic!("embedded")
    };
    assert_eq!(server.rate_limit.map(|r| r.per_second), Some(0.001));
    assert_eq!(server.throttle, Some(1e9));
    assert_eq!(
        (server.offline_single, server.group_max_members, *threads),
        (0, 2, Some(1024))
    );
    let off = parse_text(MINIMAL, &["target.server.rate_limit=0", "target.server.throttle=0"]).unwrap();
    let Target::Embedded { server, .. } = &off.target else {
        panic!("embedded")
    };
    assert_eq!((server.rate_limit, server.throttle), (None, None));
}
