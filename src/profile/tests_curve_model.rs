//! `traffic.curve`, `traffic.curve_step` and `model.file`: parsing, errors, the offered
//! rates, the effective profile and the workload hash.

use std::path::Path;
use std::time::Duration;

use super::tests::{MINIMAL, parse_text, problems};
use super::*;

fn with_traffic(lines: &str) -> String {
    format!("{MINIMAL}[traffic]\n{lines}\n")
}

fn message<'a>(found: &'a [(String, String)], key: &str) -> &'a str {
    found
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, m)| m.as_str())
        .unwrap_or_else(|| panic!("{key} missing from {found:?}"))
}

#[test]
fn no_curve_by_default_and_a_curve_is_read_with_an_hourly_step() {
    assert_eq!(parse_text(MINIMAL, &[]).unwrap().traffic.curve, None);
    let p = parse_text(&with_traffic("curve = [0.5, 1, 2.5, 0]"), &[]).unwrap();
    let c = p.traffic.curve.unwrap();
    assert_eq!(c.factors(), &[0.5, 1.0, 2.5, 0.0]);
    assert_eq!(c.step(), Duration::from_secs(3600));
    let p = parse_text(&with_traffic("curve = [1, 2]\ncurve_step = \"250ms\""), &[]).unwrap();
    assert_eq!(p.traffic.curve.unwrap().step(), Duration::from_millis(250));
    // From the command line too.
    let p = parse_text(MINIMAL, &["traffic.curve=[3, 1]", "traffic.curve_step=1m"]).unwrap();
    let c = p.traffic.curve.unwrap();
    assert_eq!((c.factors(), c.step()), (&[3.0, 1.0][..], Duration::from_secs(60)));
}

#[test]
fn bad_curves_are_errors_naming_the_key() {
    let found = problems(&with_traffic("curve = [1, -0.5, 2]"), &[]);
    assert!(message(&found, "traffic.curve[1]").contains("-0.5 must be a finite number >= 0"));
    let found = problems(&with_traffic("curve = [1, nan]"), &[]);
    assert!(message(&found, "traffic.curve[1]").contains("NaN must be a finite number"));
    let found = problems(&with_traffic("curve = [1, inf]"), &[]);
    assert!(message(&found, "traffic.curve[1]").contains("inf must be a finite"));
    let found = problems(&with_traffic("curve = []"), &[]);
    assert!(message(&found, "traffic.curve").contains("at least one factor"));
    let found = problems(&with_traffic("curve = [0, 0.0]"), &[]);
    assert!(message(&found, "traffic.curve").contains("every factor is 0"));
    let long = vec!["1"; Curve::MAX_FACTORS + 1].join(",");
    let found = problems(&with_traffic(&format!("curve = [{long}]")), &[]);
    assert!(message(&found, "traffic.curve").contains("at most 10000"));
    let found = problems(&with_traffic("curve = [1]\ncurve_step = \"0s\""), &[]);
    assert!(message(&found, "traffic.curve_step").contains("at least 1us"));
    let found = problems(&with_traffic("curve = [1]\ncurve_step = \"hourly\""), &[]);
    assert!(message(&found, "traffic.curve_step").contains("is not a duration"));
    // Wrong types are the reader's, under their own path.
    let found = problems(&with_traffic("curve = [1, \"high\"]"), &[]);
    assert!(message(&found, "traffic.curve[1]").contains("expected a number, got \"high\""));
    let found = problems(&with_traffic("curve = 2"), &[]);
    assert!(message(&found, "traffic.curve").contains("expected an array"));
    // And from the command line, say so.
    let found = problems(MINIMAL, &["traffic.curve=[-1]"]);
    assert!(message(&found, "traffic.curve[0]").contains("(from the command line: traffic.curve=[-1])"));
}

#[test]
fn misspelt_curve_keys_get_suggestions() {
    let found = problems(&with_traffic("curv = [1]\ncurve_stp = \"1s\""), &[]);
    assert_eq!(message(&found, "traffic.curv"), "unknown key, did you mean `curve`?");
    assert_eq!(
        message(&found, "traffic.curve_stp"),
        "unknown key, did you mean `curve_step`?"
    );
}

#[test]
fn a_step_without_a_curve_is_a_note() {
    let p = parse_text(&with_traffic("curve_step = \"1s\""), &[]).unwrap();
    assert_eq!(p.traffic.curve, None);
    assert!(
        p.notes.iter().any(|n| n.contains("traffic.curve_step has no effect")),
        "{:?}",
        p.notes
    );
}

#[test]
fn the_offered_rates_use_the_curves_mean_over_the_traffic_window() {
    // 100 users join in 0.1 s, then 10 s of traffic from run start: the first second at
    // factor 1, the other 9.1 s at 3 (the curve's clock is the run's).
    let flat = parse_text(MINIMAL, &["groups.count=10"]).unwrap();
    let curved = parse_text(
        MINIMAL,
        &[
            "groups.count=10",
            "traffic.curve=[1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]",
            "traffic.curve_step=1s",
        ],
    )
    .unwrap();
    assert_eq!(flat.curve_mean(), 1.0);
    let mean = (1.0 + 3.0 * 9.1) / 10.1;
    assert!((curved.curve_mean() - mean).abs() < 1e-9, "{}", curved.curve_mean());
    let ((f1, fg), (c1, cg)) = (flat.offered_rates(), curved.offered_rates());
    assert!(f1 > 0.0 && fg > 0.0);
    assert!((c1 / f1 - mean).abs() < 1e-9 && (cg / fg - mean).abs() < 1e-9);
    // With a warm-up, the window starts at the end of the ramp and warm-up (1.1 s here).
    let warm = parse_text(
        MINIMAL,
        &[
            "traffic.curve=[1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]",
            "traffic.curve_step=1s",
            "traffic.warmup=1s",
        ],
    )
    .unwrap();
    assert_eq!(warm.traffic_start(), Duration::from_millis(1100));
    assert!((warm.curve_mean() - 3.0).abs() < 1e-9, "{}", warm.curve_mean());
}

#[test]
fn the_curve_round_trips_through_the_effective_profile_and_is_part_of_the_workload() {
    let text = with_traffic("curve = [0.25, 1, 1.7, 0, 3e-3]\ncurve_step = \"90s\"");
    let p = parse_text(&text, &[]).unwrap();
    let eff = effective_toml(&p);
    assert!(
        eff.contains("curve = [") && eff.contains("curve_step = \"1m 30s\""),
        "{eff}"
    );
    let back = parse_text(&eff, &[]).unwrap_or_else(|e| panic!("{e}\n{eff}"));
    assert_eq!(back, p, "{eff}");
    assert_eq!(workload_hash(&back), workload_hash(&p));
    // No curve: no curve keys written.
    let eff = effective_toml(&parse_text(MINIMAL, &[]).unwrap());
    assert!(!eff.contains("curve"), "{eff}");
    // The curve changes the workload: its presence, a factor, its step.
    let base = workload_hash(&p);
    assert_ne!(workload_hash(&parse_text(MINIMAL, &[]).unwrap()), base);
    for set in ["traffic.curve=[0.25, 1, 1.7, 0, 3e-2]", "traffic.curve_step=91s"] {
        assert_ne!(workload_hash(&parse_text(&text, &[set]).unwrap()), base, "{set}");
    }
}

#[test]
fn no_model_by_default_and_a_model_file_is_carried_as_written() {
    assert_eq!(parse_text(MINIMAL, &[]).unwrap().model, None);
    for file in ["models/server.toml", "/etc/ackstorm/model.toml", "../m.toml"] {
        let p = parse_text(&format!("{MINIMAL}[model]\nfile = \"{file}\"\n"), &[]).unwrap();
        assert_eq!(p.model, Some(ModelSpec { file: file.into() }));
    }
    // Never read: a file that does not exist is fine.
    let p = parse_text(MINIMAL, &["model.file=nowhere/model.toml"]).unwrap();
    assert_eq!(p.model.unwrap().file, Path::new("nowhere/model.toml"));
}

#[test]
fn bad_model_tables_are_errors_naming_the_key() {
    let found = problems(&format!("{MINIMAL}[model]\nfile = \"\"\n"), &[]);
    assert_eq!(message(&found, "model.file"), "must not be empty");
    let found = problems(&format!("{MINIMAL}[model]\n"), &[]);
    assert!(message(&found, "model.file").starts_with("missing"));
    let found = problems(&format!("{MINIMAL}[model]\nfile = 3\n"), &[]);
    assert!(message(&found, "model.file").contains("expected a string, got 3"));
    let found = problems(&format!("{MINIMAL}[model]\nfiles = \"m.toml\"\n"), &[]);
    assert_eq!(message(&found, "model.files"), "unknown key, did you mean `file`?");
    let found = problems(&format!("{MINIMAL}[modle]\nfile = \"m.toml\"\n"), &[]);
    assert_eq!(message(&found, "modle"), "unknown key, did you mean `model`?");
}

#[test]
fn the_model_round_trips_through_the_effective_profile_and_is_not_the_workload() {
    let text = format!("{MINIMAL}[model]\nfile = \"models/server.toml\"\n[[faults.server_restarts]]\nat = \"5s\"\n");
    let p = parse_text(&text, &["traffic.curve=[1, 2]"]).unwrap();
    let eff = effective_toml(&p);
    assert!(eff.contains("[model]\nfile = \"models/server.toml\""), "{eff}");
    let back = parse_text(&eff, &[]).unwrap_or_else(|e| panic!("{e}\n{eff}"));
    assert_eq!(back, p, "{eff}");
    assert!(!effective_toml(&parse_text(MINIMAL, &[]).unwrap()).contains("model"));
    let without = parse_text(&text, &["traffic.curve=[1, 2]", "model.file=other.toml"]).unwrap();
    assert_eq!(workload_hash(&without), workload_hash(&p));
}
