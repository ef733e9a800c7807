//! The Jobs' command lines run here, one process per completion index, against the
//! reference server on loopback, then the merge Job's.

use super::*;

/// What this machine stands in for: the pod's paths and the target.
struct Local {
    profile: PathBuf,
    results: PathBuf,
}

impl Local {
    /// The pod's paths mapped onto this machine: the profile mount onto a temp file, /results
    /// onto a temp folder.
    fn map(&self, arg: String, profile_path: &str) -> String {
        if arg == profile_path {
            self.profile.display().to_string()
        } else if let Some(rest) = arg.strip_prefix("/results") {
            format!("{}{rest}", self.results.display())
        } else {
            arg
        }
    }
}

/// The metrics listener moved to loopback port 0: the N pods each have their own network
/// namespace, the processes here share one (and listen on loopback only).
fn metrics_on_loopback(argv: &mut [String]) {
    if let Some(i) = argv.iter().position(|a| a == "--metrics-listen") {
        argv[i + 1] = "127.0.0.1:0".to_string();
    }
    assert!(!argv.iter().any(|a| a.contains("0.0.0.0")), "{argv:?}");
}

/// Runs the binary with exactly `env` (a pod's environment: nothing inherited), killed if it
/// has not ended within `limit`; its exit code and output.
async fn run_as_pod(args: &[String], env: &BTreeMap<String, String>, limit: Duration) -> (Option<i32>, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::common::ackstorm_in_env(&args, Some(env), limit).await
}

fn messages_sent(summary: &Path) -> u64 {
    let text = std::fs::read_to_string(summary).unwrap_or_else(|e| panic!("{}: {e}", summary.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["throughput"]["messages_sent"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: no throughput.messages_sent", summary.display()))
}

/// The shard Job's args, expanded as Kubernetes expands them with the env the manifests give
/// (TARGET_URL and START_AT pointed at a server here and a few seconds ahead), run once per
/// index with JOB_COMPLETION_INDEX set, all at once; then the merge Job's the same way. The
/// merged run must hold every shard's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_command_lines_run_here_shard_by_shard_then_merge() {
    let m = Manifests::load();
    let secret = m.key_of("Secret", "ackstorm-secret", "ACKSTORM_SECRET").unwrap();
    let mut server_config = config();
    server_config.secret = secret.as_bytes().to_vec();
    let server = start(server_config).await;

    let tmp = tempfile::tempdir().unwrap();
    let shard_job = m.job("run");
    let profile_path = args(shard_job)[1].clone();
    let profile_text = m.key_of("ConfigMap", "ackstorm-profile", "profile.toml").unwrap();
    let local = Local {
        profile: tmp.path().join("profile.toml"),
        results: tmp.path().join("results"),
    };
    std::fs::write(&local.profile, profile_text).unwrap();
    std::fs::create_dir(&local.results).unwrap();

    let mut env = m.env_of(container(shard_job));
    env.insert("TARGET_URL".into(), server.ws_url());
    let start_at = SystemTime::now() + Duration::from_secs(3);
    env.insert(
        "START_AT".into(),
        humantime::format_rfc3339_seconds(start_at).to_string(),
    );
    let shards: usize = env["SHARDS"].parse().unwrap();
    // The profile shrunk to a few seconds on loopback (about 45 messages a shard), the
    // correctness SLO kept.
    let shrink = [
        "population.users=60",
        "groups.count=4",
        "traffic.one_to_one_per_min=60",
        "run.duration=\"3s\"",
        "run.drain=\"2s\"",
        "slo.checks=[\"audit.lost == 0\"]",
    ];
    let mut argv: Vec<String> = args(shard_job)
        .into_iter()
        .map(|a| local.map(expand(&a, &env), &profile_path))
        .collect();
    for s in shrink {
        argv.push("--set".into());
        argv.push(s.into());
    }
    metrics_on_loopback(&mut argv);
    assert!(!argv.iter().any(|a| a.contains("$(")), "unexpanded: {argv:?}");

    let mut shard_runs = tokio::task::JoinSet::new();
    for index in 0..shards {
        let mut pod_env = env.clone();
        pod_env.insert("JOB_COMPLETION_INDEX".into(), index.to_string());
        let argv = argv.clone();
        shard_runs.spawn(async move {
            let (code, out) = run_as_pod(&argv, &pod_env, Duration::from_secs(90)).await;
            (index, code, out)
        });
    }
    while let Some(done) = shard_runs.join_next().await {
        let (index, code, out) = done.unwrap();
        assert_eq!(code, Some(0), "shard {index} of {shards}: {out}");
    }

    let run_dir = local
        .results
        .join(format!("{}-{}", m.run_value("PROFILE_NAME"), m.run_value("RUN_ID")));
    let mut sent = 0;
    for index in 0..shards {
        let shard = run_dir.join(format!("shard-{index}"));
        for file in ["manifest.json", "summary.json"] {
            assert!(shard.join(file).is_file(), "{}/{file} missing", shard.display());
        }
        let n = messages_sent(&shard.join("summary.json"));
        assert!(n > 0, "shard {index} sent nothing");
        sent += n;
    }

    let merge_job = m.job("merge");
    let merge_env = m.env_of(container(merge_job));
    let mut merge_argv: Vec<String> = args(merge_job)
        .into_iter()
        .map(|a| local.map(expand(&a, &merge_env), &profile_path))
        .collect();
    metrics_on_loopback(&mut merge_argv);
    assert!(
        !merge_argv.iter().any(|a| a.contains("$(")),
        "unexpanded: {merge_argv:?}"
    );
    let (code, out) = run_as_pod(&merge_argv, &merge_env, Duration::from_secs(60)).await;
    assert_eq!(code, Some(0), "merge: {out}");
    let merged = run_dir.join("merged").join("summary.json");
    assert_eq!(
        messages_sent(&merged),
        sent,
        "the merged run holds every shard's messages"
    );
    drop(server);
}
