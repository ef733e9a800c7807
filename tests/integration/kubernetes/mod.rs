//! The container image and the Kubernetes manifests (`Dockerfile`, `deploy/kubernetes/`), checked
//! without a cluster: every field ackstorm relies on is read back from the YAML and checked
//! against the others (the Job's N against the run ConfigMap's, each `$(VAR)` of the args
//! against the env and the ConfigMap or Secret keys behind it, the profile's mount against
//! the path the args name, ...), and the shard and merge Jobs' command lines are run here, one
//! process per index with `JOB_COMPLETION_INDEX` set as Kubernetes sets it, against the
//! reference server on loopback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::{config, start};

/// The deploy/kubernetes folder.
fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join("kubernetes")
}

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One YAML document of the manifests, with the file it came from.
struct Doc {
    file: String,
    value: Value,
}

/// Every YAML document of every `*.yaml` file under deploy/kubernetes.
struct Manifests {
    docs: Vec<Doc>,
}

impl Manifests {
    fn load() -> Manifests {
        let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        assert!(files.len() >= 6, "manifests missing: {files:?}");
        let mut docs = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let file = path.file_name().unwrap().to_str().unwrap().to_string();
            let values: Vec<Value> =
                serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"));
            assert!(!values.is_empty(), "{file} has no document");
            for value in values {
                assert!(
                    value["kind"].is_string() && value["apiVersion"].is_string(),
                    "{file}: a document without kind or apiVersion"
                );
                docs.push(Doc {
                    file: file.clone(),
                    value,
                });
            }
        }
        Manifests { docs }
    }

    /// The one document of `kind` named `name`.
    fn get(&self, kind: &str, name: &str) -> &Value {
        let found: Vec<&Doc> = self
            .docs
            .iter()
            .filter(|d| d.value["kind"] == kind && d.value["metadata"]["name"] == name)
            .collect();
        assert_eq!(found.len(), 1, "{kind} {name}: expected exactly one");
        &found[0].value
    }

    /// The one document of `kind`.
    fn only(&self, kind: &str) -> &Value {
        let found: Vec<&Doc> = self.docs.iter().filter(|d| d.value["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "expected exactly one {kind}");
        &found[0].value
    }

    /// The Job whose container's first arg is `subcommand` (`run` or `merge`).
    fn job(&self, subcommand: &str) -> &Value {
        let found: Vec<&Value> = self
            .docs
            .iter()
            .map(|d| &d.value)
            .filter(|v| v["kind"] == "Job" && container(v)["args"][0] == subcommand)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one Job running `ackstorm {subcommand}`"
        );
        found[0]
    }

    /// A value of a ConfigMap (`data`) or a Secret (`stringData`, else base64 `data`).
    fn key_of(&self, kind: &str, name: &str, key: &str) -> Option<String> {
        let doc = self.get(kind, name);
        if let Some(v) = doc["data"][key].as_str().filter(|_| kind == "ConfigMap") {
            return Some(v.to_string());
        }
        if let Some(v) = doc["stringData"][key].as_str() {
            return Some(v.to_string());
        }
        doc["data"][key].as_str().map(|b64| {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            String::from_utf8(bytes).unwrap()
        })
    }

    /// The run ConfigMap's value of `key`.
    fn run_value(&self, key: &str) -> String {
        self.key_of("ConfigMap", "ackstorm-run", key)
            .unwrap_or_else(|| panic!("configmap-run.yaml has no {key}"))
    }

    /// The container's environment as Kubernetes builds it from the manifests: `env` entries
    /// (literal values, ConfigMap and Secret keys) over `envFrom` sources. Panics naming the
    /// variable when a reference points at a ConfigMap, Secret or key the manifests lack.
    fn env_of(&self, c: &Value) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let prefix = from["prefix"].as_str().unwrap_or("");
            let (kind, r) = if from["configMapRef"].is_object() {
                ("ConfigMap", &from["configMapRef"])
            } else {
                ("Secret", &from["secretRef"])
            };
            let doc = self.get(kind, r["name"].as_str().unwrap());
            for field in ["data", "stringData"] {
                for (k, v) in doc[field].as_object().into_iter().flatten() {
                    env.insert(format!("{prefix}{k}"), v.as_str().unwrap().to_string());
                }
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap().to_string();
            let value = if let Some(v) = e["value"].as_str() {
                v.to_string()
            } else if e["valueFrom"]["configMapKeyRef"].is_object() {
                let r = &e["valueFrom"]["configMapKeyRef"];
                let (cm, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
                self.key_of("ConfigMap", cm, key)
                    .unwrap_or_else(|| panic!("env {name}: ConfigMap {cm} has no key {key}"))
            } else if e["valueFrom"]["secretKeyRef"].is_object() {
                let r = &e["valueFrom"]["secretKeyRef"];
                let (s, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
                self.key_of("Secret", s, key)
                    .unwrap_or_else(|| panic!("env {name}: Secret {s} has no key {key}"))
            } else {
                panic!("env {name}: neither a value nor a ConfigMap or Secret key: {e}")
            };
            env.insert(name, value);
        }
        env
    }
}

/// The pod spec of a Job (or of a Pod).
fn pod_spec(doc: &Value) -> &Value {
    if doc["kind"] == "Pod" {
        &doc["spec"]
    } else {
        &doc["spec"]["template"]["spec"]
    }
}

/// The one container of a Job's pod (ackstorm runs alone in its pod).
fn container(job: &Value) -> &Value {
    let cs = pod_spec(job)["containers"].as_array().expect("containers");
    assert_eq!(cs.len(), 1, "one container per pod");
    &cs[0]
}

fn args(job: &Value) -> Vec<String> {
    container(job)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("args are strings").to_string())
        .collect()
}

/// The value following `flag` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// One piece of a container arg as Kubernetes reads it: literal text or a `$(NAME)` reference.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Var(String),
}

/// Splits `input` the way Kubernetes expands command and args
/// (k8s.io/kubernetes/third_party/forked/golang/expansion): `$$` is a literal `$`, `$(NAME)` a
/// reference, and a `$` before anything else (or an unclosed `$(`) stays as written.
fn pieces(input: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            text.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(close) => {
                    if !text.is_empty() {
                        out.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    out.push(Piece::Var(inner[..close].to_string()));
                    rest = &inner[close + 1..];
                }
                None => {
                    text.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            // `$` then one character, both kept (`$` at the very end too).
            text.push('$');
            let n = after.chars().next().map_or(0, char::len_utf8);
            text.push_str(&after[..n]);
            rest = &after[n..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

/// `input` with each `$(NAME)` replaced by `env[NAME]`; an unknown name stays `$(NAME)`, as
/// Kubernetes leaves it.
fn expand(input: &str, env: &BTreeMap<String, String>) -> String {
    pieces(input)
        .into_iter()
        .map(|p| match p {
            Piece::Text(t) => t,
            Piece::Var(name) => env.get(&name).cloned().unwrap_or_else(|| format!("$({name})")),
        })
        .collect()
}

fn vars_in(input: &str) -> Vec<String> {
    pieces(input)
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(v) => Some(v),
            Piece::Text(_) => None,
        })
        .collect()
}

#[test]
fn argument_expansion_follows_kubernetes() {
    let env: BTreeMap<String, String> = [("A", "1"), ("B", "two")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(expand("$(A)", &env), "1");
    assert_eq!(expand("/r/$(B)-$(A)/m", &env), "/r/two-1/m");
    assert_eq!(expand("$$(A)", &env), "$(A)", "$$ escapes");
    assert_eq!(expand("$$$(A)", &env), "$1");
    assert_eq!(expand("$(C)", &env), "$(C)", "unknown names stay");
    assert_eq!(expand("a$b $", &env), "a$b $");
    assert_eq!(expand("$(A", &env), "$(A", "unclosed");
    assert_eq!(vars_in("x$(A)y$$(B)$(C)"), ["A", "C"]);
}

/// The volume of `spec` mounted at `mount_path` in `c`, and the mount.
fn volume_at<'a>(spec: &'a Value, c: &'a Value, mount_path: &str) -> (&'a Value, &'a Value) {
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    let mount = mounts
        .iter()
        .find(|m| m["mountPath"] == mount_path)
        .unwrap_or_else(|| panic!("nothing mounted at {mount_path}"));
    let volume = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume {} for {mount_path}", mount["name"]));
    (volume, mount)
}

#[test]
fn the_shard_job_is_indexed_with_one_pod_per_shard() {
    let m = Manifests::load();
    let job = m.job("run");
    assert_eq!(job["apiVersion"], "batch/v1");
    let spec = &job["spec"];
    assert_eq!(
        spec["completionMode"], "Indexed",
        "the shard index comes from JOB_COMPLETION_INDEX"
    );
    let shards: u64 = m.run_value("SHARDS").parse().expect("SHARDS is a number");
    assert!(shards >= 1);
    assert_eq!(spec["completions"].as_u64(), Some(shards), "completions == SHARDS");
    assert_eq!(
        spec["parallelism"].as_u64(),
        Some(shards),
        "every shard runs at once (they meet at START_AT)"
    );
    // A failed shard is retried alone; the others are not stopped by it.
    let per_index = spec["backoffLimitPerIndex"].as_u64().expect("backoffLimitPerIndex");
    assert!(per_index >= 1, "a failed shard gets a retry");
    let max_failed = spec["maxFailedIndexes"].as_u64().expect("maxFailedIndexes");
    assert!(max_failed <= shards, "maxFailedIndexes must not exceed completions");
    assert!(
        spec["backoffLimit"].is_null(),
        "backoffLimit would count failures over all indexes"
    );
    // An SLO failure (exit 1, results written) is not rerun: FailIndex on exit code 1.
    let rules = spec["podFailurePolicy"]["rules"].as_array().expect("podFailurePolicy");
    assert!(
        rules.iter().any(|r| r["action"] == "FailIndex"
            && r["onExitCodes"]["operator"] == "In"
            && r["onExitCodes"]["values"].as_array().unwrap().contains(&Value::from(1))),
        "{rules:?}"
    );
    for r in rules.iter().filter(|r| r["onExitCodes"].is_object()) {
        assert_eq!(r["onExitCodes"]["containerName"], container(job)["name"]);
        let codes = r["onExitCodes"]["values"].as_array().unwrap();
        assert!(
            !codes.contains(&Value::from(2)),
            "exit 2 (could not run) must be retried"
        );
    }
    let pod = pod_spec(job);
    assert_eq!(pod["restartPolicy"], "Never", "retries are new pods, counted per index");

    let a = args(job);
    assert_eq!(a[0], "run");
    assert!(
        container(job)["command"].is_null(),
        "the image's ENTRYPOINT (ackstorm) runs the args"
    );
    assert_eq!(flag_value(&a, "--shards"), Some("$(SHARDS)"));
    assert_eq!(flag_value(&a, "--run-id"), Some("$(RUN_ID)"));
    assert_eq!(flag_value(&a, "--start-at"), Some("$(START_AT)"));
    assert_eq!(flag_value(&a, "--target"), Some("$(TARGET_URL)"));
    assert_eq!(flag_value(&a, "--results"), Some("/results"));
    assert!(a.iter().any(|x| x == "--no-progress"), "no progress line in pod logs");
    for index_flag in ["--shard-index", "--shard"] {
        assert!(
            !a.iter().any(|x| x == index_flag),
            "{index_flag}: the index must come from JOB_COMPLETION_INDEX"
        );
    }
    // Live metrics: listened for on all interfaces, on the port the annotations and the
    // container port name.
    let listen = flag_value(&a, "--metrics-listen").expect("--metrics-listen");
    let (host, port) = listen.rsplit_once(':').unwrap();
    assert_eq!(host, "0.0.0.0", "a scraper reaches the pod's IP, not its loopback");
    let annotations = &job["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port);
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let ports = container(job)["ports"].as_array().expect("ports");
    assert!(
        ports
            .iter()
            .any(|p| p["containerPort"].as_u64().map(|n| n.to_string()) == Some(port.to_string())),
        "{ports:?}"
    );
    // A CPU limit below the request would throttle the tester; requests are set.
    let res = &container(job)["resources"];
    assert!(
        res["requests"]["cpu"].is_string() && res["requests"]["memory"].is_string(),
        "{res}"
    );
    assert!(res["limits"]["memory"].is_string(), "{res}");
}

#[test]
fn every_variable_the_jobs_use_is_defined() {
    let m = Manifests::load();
    for sub in ["run", "merge"] {
        let job = m.job(sub);
        let c = container(job);
        let env = m.env_of(c);
        let mut used = Vec::new();
        for a in args(job) {
            used.extend(vars_in(&a));
        }
        assert!(!used.is_empty(), "{sub}: args use no variable");
        for v in &used {
            assert!(
                env.contains_key(v),
                "{sub}: $({v}) is in the args but not in the container's env {:?}",
                env.keys()
            );
        }
        assert!(
            !env.contains_key("JOB_COMPLETION_INDEX"),
            "Kubernetes sets JOB_COMPLETION_INDEX itself"
        );
        if sub == "run" {
            assert!(
                env.contains_key("ACKSTORM_SECRET"),
                "the target's secret reaches ackstorm"
            );
        }
    }
}

#[test]
fn the_run_configmap_holds_usable_values() {
    let m = Manifests::load();
    let start_at = m.run_value("START_AT");
    humantime::parse_rfc3339(&start_at).unwrap_or_else(|e| panic!("START_AT {start_at:?}: {e}"));
    assert!(start_at.ends_with('Z'), "START_AT in UTC: {start_at}");
    let target = m.run_value("TARGET_URL");
    assert!(
        ["ws://", "wss://", "xmpp://"].iter().any(|s| target.starts_with(s)),
        "TARGET_URL {target:?}"
    );
    for key in ["RUN_ID", "PROFILE_NAME"] {
        let v = m.run_value(key);
        assert!(
            !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{key} {v:?} names a folder: letters, digits, - _ ."
        );
    }
}

/// The profile in the ConfigMap, checked by ackstorm's own profile checker as `ackstorm run`
/// reads it with the Job's --target and the Secret's secret.
#[test]
fn the_profile_configmap_is_a_valid_profile_mounted_where_the_args_name_it() {
    let m = Manifests::load();
    let job = m.job("run");
    let pod = pod_spec(job);
    let c = container(job);
    let profile_path = args(job)[1].clone();
    let (dir, file) = profile_path.rsplit_once('/').unwrap();
    let (volume, mount) = volume_at(pod, c, dir);
    assert_eq!(mount["readOnly"], true);
    let cm_name = volume["configMap"]["name"].as_str().expect("a ConfigMap volume");
    let item = volume["configMap"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["path"] == file)
        .unwrap_or_else(|| panic!("no item of {cm_name} mounted as {file}"));
    let key = item["key"].as_str().unwrap();
    assert_eq!(key, "profile.toml");
    let text = m.key_of("ConfigMap", cm_name, key).expect("the profile");

    let secret = m.key_of("Secret", "ackstorm-secret", "ACKSTORM_SECRET").unwrap();
    let quoted = |v: &str| format!("\"{v}\"");
    let overrides = [
        format!("target.url={}", quoted(&m.run_value("TARGET_URL"))),
        format!("target.secret={}", quoted(&secret)),
    ];
    let plan = ackstorm::profile::parse(Path::new("configmap-profile.yaml:profile.toml"), &text, &overrides)
        .unwrap_or_else(|e| panic!("the ConfigMap's profile: {e}"));
    assert_eq!(
        plan.name,
        m.run_value("PROFILE_NAME"),
        "run.name names the results folder"
    );
    let shards: u64 = m.run_value("SHARDS").parse().unwrap();
    assert!(plan.population.users >= shards, "at least one user per shard");
    assert!(!plan.slo.is_empty(), "the merged run is judged on SLOs");
}

#[test]
fn both_jobs_share_the_results_volume() {
    let m = Manifests::load();
    let pvc = m.only("PersistentVolumeClaim");
    let claim = pvc["metadata"]["name"].as_str().unwrap();
    assert!(
        pvc["spec"]["accessModes"]
            .as_array()
            .unwrap()
            .contains(&Value::from("ReadWriteMany")),
        "shards on several nodes write at once"
    );
    for sub in ["run", "merge"] {
        let job = m.job(sub);
        let (volume, mount) = volume_at(pod_spec(job), container(job), "/results");
        assert_eq!(volume["persistentVolumeClaim"]["claimName"], claim, "{sub}");
        assert_ne!(mount["readOnly"], true, "{sub} writes results");
    }
    // The merge reads the folder the shards write: /results/<run.name>-<run id>.
    let merge = args(m.job("merge"));
    assert_eq!(merge[0], "merge");
    assert_eq!(merge[1], "/results/$(PROFILE_NAME)-$(RUN_ID)");
    assert_eq!(
        flag_value(&merge, "--out"),
        Some("/results/$(PROFILE_NAME)-$(RUN_ID)/merged")
    );
    let spec = &m.job("merge")["spec"];
    assert_eq!(pod_spec(m.job("merge"))["restartPolicy"], "Never");
    assert_eq!(spec["backoffLimit"], 0, "a merge that failed fails again");
    let reader = m.only("Pod");
    let (volume, mount) = volume_at(pod_spec(reader), container(reader), "/results");
    assert_eq!(volume["persistentVolumeClaim"]["claimName"], claim);
    assert_eq!(mount["readOnly"], true);
}

#[test]
fn every_pod_runs_as_the_images_non_root_user() {
    let m = Manifests::load();
    let uid = dockerfile_uid();
    let pods: Vec<&Value> = m
        .docs
        .iter()
        .map(|d| &d.value)
        .filter(|v| v["kind"] == "Job" || v["kind"] == "Pod")
        .collect();
    assert_eq!(pods.len(), 3, "the shard Job, the merge Job, the results reader");
    let shard_image = container(m.job("run"))["image"].as_str().unwrap();
    assert_eq!(
        container(m.job("merge"))["image"].as_str().unwrap(),
        shard_image,
        "the merge reads what the same build wrote"
    );
    for doc in pods {
        let name = doc["metadata"]["name"].as_str().unwrap();
        let sc = &pod_spec(doc)["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        let user = sc["runAsUser"].as_u64().expect("a numeric runAsUser");
        assert_ne!(user, 0, "{name}");
        let c = container(doc);
        if c["image"].as_str().unwrap().contains("ackstorm") {
            assert_eq!(user, uid, "{name} runs as the Dockerfile's USER");
            assert_eq!(
                sc["fsGroup"].as_u64(),
                Some(uid),
                "{name}: the results volume is writable"
            );
        }
        let csc = &c["securityContext"];
        assert_eq!(csc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(csc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(csc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{name}");
    }
}

#[test]
fn the_kustomization_applies_the_run_but_not_the_placeholders() {
    let m = Manifests::load();
    let k = m.only("Kustomization");
    let ns = m.only("Namespace")["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(k["namespace"], ns.as_str());
    let resources: Vec<&str> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for r in &resources {
        assert!(manifests_dir().join(r).is_file(), "{r} listed but missing");
    }
    for f in [
        "job-shards.yaml",
        "configmap-run.yaml",
        "configmap-profile.yaml",
        "pvc.yaml",
    ] {
        assert!(resources.contains(&f), "{f} not applied by -k");
    }
    for f in ["secret.example.yaml", "job-merge.yaml", "results-reader.yaml"] {
        assert!(!resources.contains(&f), "{f} must be applied on its own");
    }
    // Every object names the namespace itself, so `kubectl apply -f FILE` works too.
    for d in m
        .docs
        .iter()
        .filter(|d| !["Kustomization", "Namespace"].contains(&d.value["kind"].as_str().unwrap()))
    {
        assert_eq!(d.value["metadata"]["namespace"], ns.as_str(), "{}", d.file);
    }
}

mod dockerfile;
use dockerfile::dockerfile_uid;
mod jobs;
