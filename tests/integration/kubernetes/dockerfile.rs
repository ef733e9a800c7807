//! The `Dockerfile`: multi-stage, small, non-root, and its bench stubs and ignores in step
//! with the crate.

use super::*;

/// A Dockerfile's instructions (continuations joined, comments dropped), split into stages.
fn dockerfile_stages() -> Vec<Vec<(String, String)>> {
    let text = repo_file("Dockerfile");
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for l in lines {
        let (op, rest) = l.split_once(' ').unwrap_or((&l, ""));
        let op = op.to_ascii_uppercase();
        if op == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(s) = stages.last_mut() {
            s.push((op, rest.trim().to_string()));
        }
    }
    stages
}

fn instruction<'a>(stage: &'a [(String, String)], op: &str) -> Vec<&'a str> {
    stage.iter().filter(|(o, _)| o == op).map(|(_, r)| r.as_str()).collect()
}

/// The uid of the final stage's `USER uid[:gid]` (numeric, so `runAsNonRoot` can check it).
pub(super) fn dockerfile_uid() -> u64 {
    let stages = dockerfile_stages();
    let users = instruction(stages.last().unwrap(), "USER");
    let user = users.last().expect("the final stage sets USER");
    let uid = user.split(':').next().unwrap();
    uid.parse().unwrap_or_else(|_| panic!("USER {user}: use a numeric uid"))
}

#[test]
fn the_image_is_multi_stage_small_and_non_root() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    let builder = &stages[0];
    let from = instruction(builder, "FROM")[0];
    let (builder_image, builder_name) = from
        .split_once(" AS ")
        .or_else(|| from.split_once(" as "))
        .expect("named stage");
    assert!(builder_image.contains("rust"), "{builder_image}");
    assert!(
        instruction(builder, "RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "a locked release build"
    );

    let runtime = stages.last().unwrap();
    let runtime_image = instruction(runtime, "FROM")[0];
    assert!(
        runtime_image.contains("distroless") || runtime_image.contains("-slim"),
        "a small runtime image: {runtime_image}"
    );
    assert!(
        !runtime_image.contains("rust"),
        "no toolchain at run time: {runtime_image}"
    );
    assert_ne!(dockerfile_uid(), 0, "runs as non-root");
    // The binary comes from the builder; the ENTRYPOINT runs it (exec form: signals reach it).
    let copies = instruction(runtime, "COPY");
    let binary = copies
        .iter()
        .find(|c| c.starts_with(&format!("--from={}", builder_name.trim())))
        .expect("COPY --from=<builder>");
    let dest = binary.split_whitespace().last().unwrap();
    assert!(dest.ends_with("/ackstorm"), "{binary}");
    assert!(
        copies.iter().any(|c| c.starts_with("profiles ")),
        "the shipped profiles: {copies:?}"
    );
    assert_eq!(copies.len(), 2, "only the binary and profiles/: {copies:?}");
    let entry = instruction(runtime, "ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(entry.last().expect("ENTRYPOINT")).expect("exec form");
    assert!(entry[0] == "ackstorm" || entry[0] == dest, "{entry:?}");
    assert_eq!(entry.len(), 1);

    // The dependency layer's stubs cover every [[bench]] of Cargo.toml (cargo refuses a
    // manifest whose bench files are missing).
    let cargo: toml::Table = repo_file("Cargo.toml").parse().unwrap();
    let stub_line = instruction(builder, "RUN")
        .into_iter()
        .find(|r| r.contains("benches/$b.rs"))
        .expect("bench stubs");
    for bench in cargo["bench"].as_array().unwrap() {
        let name = bench["name"].as_str().unwrap();
        assert!(
            stub_line.contains(&format!(" {name} ")) || stub_line.contains(&format!(" {name};")),
            "stub for bench {name}"
        );
    }

    let ignore = repo_file(".dockerignore");
    let ignored: Vec<&str> = ignore.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    for p in ["target/", "results/", ".git"] {
        assert!(ignored.contains(&p), ".dockerignore lacks {p}");
    }
}
