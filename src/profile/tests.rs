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

pub(super) fn keys_of(found: &[(String, String)]) -> Vec<&str> {
    found.iter().map(|(k, _)| k.as_str()).collect()
}

pub(super) fn message_of<'a>(found: &'a [(String, String)], key: &str) -> &'a str {
    found
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, m)| m.as_str())
        .unwrap_or_else(|| panic!("{key} missing from {found:?}"))
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
