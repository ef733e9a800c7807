//! `ackstorm merge`: the shards of one run folded into one results folder and report.
//!
//! Nothing is averaged. Every shard's event log goes, interleaved by time, through the very
//! fold a single process uses ([`crate::collector::replay`]): the audit matches a message sent
//! in one shard with its pushes and receipts in another, and every histogram is built from all
//! samples, so merged percentiles are those of one histogram of everything. Counters of the
//! wire (frames by op, bytes) are summed from the shards' reports. Shards of different runs,
//! workloads or shard counts, and missing or repeated shards, are refused with what is wrong.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use thiserror::Error;

use super::results::{Manifest, RunData};
use super::shards::{CLOCKS_NOTE, EVENTS_FILE};
use super::summary::Sources;
use super::{Measured, RunOutput, collector_settings, conclude};
use crate::collector::{self, EventLogError, EventReader, Source};
use crate::profile::{self, Launch, Partition, Plan, Shard};
use crate::report::{Report, ServerFrames, ShardRow, ShardSet};
use crate::sim::world::World;
use crate::transport::Capabilities;

/// Why shards could not be merged.
#[derive(Debug, Error)]
pub enum MergeError {
    /// A folder or file could not be read or written.
    #[error("{}: {reason}", path.display())]
    Read {
        /// Which.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The folders are not the shards of one run, or some are missing.
    #[error("{0}")]
    Mismatch(String),
    /// An event log is damaged.
    #[error(transparent)]
    Events(#[from] EventLogError),
    /// Writing the merged folder failed.
    #[error(transparent)]
    Write(#[from] super::RunError),
}

/// One shard's folder, read.
struct ShardFolder {
    dir: PathBuf,
    manifest: Manifest,
    run: RunData,
    report: Report,
    index: u32,
    count: u32,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, MergeError> {
    let text = std::fs::read_to_string(path).map_err(|e| MergeError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| MergeError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The shard folders named by `dirs`: each a shard folder, or a folder of `shard-*` ones.
fn shard_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, MergeError> {
    let mut found = Vec::new();
    for d in dirs {
        if d.join("manifest.json").is_file() {
            found.push(d.clone());
            continue;
        }
        let entries = std::fs::read_dir(d).map_err(|e| MergeError::Read {
            path: d.clone(),
            reason: e.to_string(),
        })?;
        let mut inner: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("shard-"))
                    && p.join("manifest.json").is_file()
            })
            .collect();
        if inner.is_empty() {
            return Err(MergeError::Mismatch(format!(
                "{}: neither a shard's results folder (no manifest.json) nor a folder of shard-* folders",
                d.display()
            )));
        }
        inner.sort();
        found.extend(inner);
    }
    Ok(found)
}

fn load(dir: PathBuf) -> Result<ShardFolder, MergeError> {
    let manifest: Manifest = read_json(&dir.join("manifest.json"))?;
    let report: Report = read_json(&dir.join("summary.json"))?;
    let not_a_shard = || {
        MergeError::Mismatch(format!(
            "{}: not a shard of a split run (run without --shard)",
            dir.display()
        ))
    };
    let run = manifest.run.clone().ok_or_else(not_a_shard)?;
    let (index, count) = run.shard.ok_or_else(not_a_shard)?;
    if !dir.join(EVENTS_FILE).is_file() {
        return Err(MergeError::Mismatch(format!(
            "{}: no {EVENTS_FILE} (the shard did not finish writing its results)",
            dir.display()
        )));
    }
    Ok(ShardFolder {
        dir,
        manifest,
        run,
        report,
        index,
        count,
    })
}

/// Checks that `shards` are all of one run, each index once; sorts them by index.
fn check(shards: &mut [ShardFolder]) -> Result<(), MergeError> {
    let first = &shards[0];
    let (run_id, count, hash, seed) = (
        first.run.run_id.clone(),
        first.count,
        first.manifest.profile_hash.clone(),
        first.manifest.seed,
    );
    for s in shards.iter() {
        let name = s.dir.display();
        if s.run.run_id != run_id {
            return Err(MergeError::Mismatch(format!(
                "{name} is of run {:?}, {} of run {run_id:?}: shards of different runs do not merge",
                s.run.run_id,
                first.dir.display()
            )));
        }
        if s.manifest.profile_hash != hash || s.manifest.seed != seed {
            return Err(MergeError::Mismatch(format!(
                "{name} ran workload {} seed {}, {} workload {hash} seed {seed}: shards of different profiles do not merge",
                s.manifest.profile_hash,
                s.manifest.seed,
                first.dir.display()
            )));
        }
        if s.count != count {
            return Err(MergeError::Mismatch(format!(
                "{name} is a shard of {}, {} of {count}",
                s.count,
                first.dir.display()
            )));
        }
    }
    shards.sort_by_key(|s| s.index);
    for (want, s) in (0..count).zip(shards.iter()) {
        if s.index != want {
            let why = if s.index < want { "given twice" } else { "missing" };
            return Err(MergeError::Mismatch(format!(
                "shard {} of run {run_id:?} is {why} (found {} folder(s) for {count} shards)",
                if s.index < want { s.index } else { want },
                shards.len()
            )));
        }
    }
    if shards.len() as u32 != count {
        let why = if shards.len() as u32 > count {
            format!("shard {} is given twice", shards[count as usize].index)
        } else {
            format!("shard {} is missing", shards.len())
        };
        return Err(MergeError::Mismatch(format!(
            "run {run_id:?} has {count} shards: {why}"
        )));
    }
    Ok(())
}

/// Merges the shards in `dirs` into `out` (default: `merged` beside the shard folders).
pub fn merge(dirs: &[PathBuf], out: Option<&Path>) -> Result<RunOutput, MergeError> {
    let mut shards = shard_dirs(dirs)?.into_iter().map(load).collect::<Result<Vec<_>, _>>()?;
    if shards.is_empty() {
        return Err(MergeError::Mismatch("no shard folders given".into()));
    }
    check(&mut shards)?;
    let first = &shards[0];
    let profile_path = first.dir.join("profile.toml");
    let effective = std::fs::read_to_string(&profile_path).map_err(|e| MergeError::Read {
        path: profile_path.clone(),
        reason: e.to_string(),
    })?;
    let mut plan = workload_plan(&profile_path, &effective)?;
    let count = first.count;
    let run_id = first.run.run_id.clone();
    // The world every shard built: partitioned by the shard count when the profile says so.
    let mut world_plan = plan.clone();
    world_plan.launch = Launch {
        shard: Some(Shard { index: 0, count }),
        run_id: Some(run_id.clone()),
        start_at: None,
    };
    let world = World::build_tagged(&world_plan, &run_id);
    plan.launch = Launch {
        shard: None,
        run_id: Some(run_id.clone()),
        start_at: None,
    };
    let capabilities = Capabilities::without(&first.run.missing_capabilities);
    let out = out.map_or_else(
        || first.dir.parent().unwrap_or(Path::new(".")).join("merged"),
        Path::to_path_buf,
    );
    std::fs::create_dir_all(&out).map_err(|e| MergeError::Read {
        path: out.clone(),
        reason: e.to_string(),
    })?;

    let zero = shards
        .iter()
        .map(|s| s.run.clock_zero())
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let offset = |s: &ShardFolder| s.run.clock_zero().duration_since(zero).unwrap_or_default();
    let partitioned = plan.population.partition == Partition::Shard;
    let sources = shards
        .iter()
        .map(|s| {
            Ok(Source {
                reader: EventReader::open(&s.dir.join(EVENTS_FILE))?,
                offset: offset(s).as_micros() as u64,
                id_prefix: partitioned.then(|| format!("s{}:", s.index)),
            })
        })
        .collect::<Result<Vec<_>, EventLogError>>()?;
    let mut settings = collector_settings(&plan, &world, capabilities);
    settings.hlog_path = Some(out.join("latencies.hlog"));
    let folded = collector::replay(zero, settings, sources)?;

    let src = sources_of(&shards, capabilities, partitioned);
    let elapsed = shards
        .iter()
        .map(|s| offset(s) + Duration::from_secs_f64(s.report.elapsed_secs))
        .max()
        .unwrap_or_default();
    let interrupted = shards.iter().any(|s| s.report.interrupted);
    let measured = Measured {
        folded,
        clock_zero: zero,
        before: None,
        after: None,
        elapsed,
        interrupted: interrupted.then_some(0),
    };
    let data = RunData::of(&plan, &run_id, zero, capabilities);
    let report = conclude(
        &plan,
        &src,
        measured,
        (zero, zero + elapsed),
        &out,
        (&effective, data),
        |report| {
            report.interrupted = interrupted;
            if partitioned {
                // One server per shard: their frames add up.
                report.ack_economics.server_frames = sum_server_frames(&shards);
            }
            add_resources(report, &shards, offset);
            for s in &shards {
                for w in s.report.warnings.iter().filter(|w| shard_warning(w)) {
                    report.warnings.push(format!("shard {}: {w}", s.index));
                }
            }
            report.shards = Some(ShardSet {
                run_id: run_id.clone(),
                count,
                index: None,
                partitioned,
                rows: shards.iter().map(|s| row(s, offset(s))).collect(),
                clocks: CLOCKS_NOTE.to_string(),
            });
        },
    )?;
    Ok(RunOutput {
        report,
        dir: out,
        interrupted: None,
    })
}

/// The plan of a shard's effective profile. The profile does not keep the target's
/// credentials (secrets stay out of results folders), and a merge needs none: a stand-in
/// secret takes their place.
fn workload_plan(path: &Path, effective: &str) -> Result<Plan, MergeError> {
    let bad = |reason: String| MergeError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let mut table: toml::Table = toml::from_str(effective).map_err(|e| bad(e.to_string()))?;
    if let Some(toml::Value::Table(t)) = table.get_mut("target")
        && t.contains_key("url")
    {
        t.remove("token_file");
        let stand_in = toml::Value::String("merge".into());
        if t.get("protocol").and_then(toml::Value::as_str) == Some("xmpp") {
            // XMPP users log in with a password.
            if let Some(toml::Value::Table(x)) = t.get_mut("xmpp") {
                x.insert("password".into(), stand_in);
            } else {
                t.insert(
                    "xmpp".into(),
                    toml::Value::Table(toml::Table::from_iter([("password".to_string(), stand_in)])),
                );
            }
        } else {
            t.insert("secret".into(), stand_in);
        }
    }
    let text = toml::to_string(&table).map_err(|e| bad(e.to_string()))?;
    profile::parse(path, &text, &[]).map_err(|e| bad(e.to_string()))
}

/// The wire as all shards saw it: frames and bytes summed, the target of shard 0 (or "one
/// embedded server per shard").
fn sources_of(shards: &[ShardFolder], capabilities: Capabilities, partitioned: bool) -> Sources {
    let first = &shards[0].report;
    let mut src = Sources {
        kind: first.target.kind.clone(),
        url: first.target.url.clone(),
        protocol: first.target.protocol.clone(),
        capabilities,
        ..Sources::default()
    };
    if partitioned && shards.iter().any(|s| s.report.target.url != first.target.url) {
        src.url = format!("{} servers, one per shard (first: {})", shards.len(), first.target.url);
    }
    for s in shards {
        let r = &s.report;
        for (op, n) in &r.counters.frames_sent_by_op {
            *src.sent_by_op.entry(op.clone()).or_default() += n;
        }
        for (op, n) in &r.counters.frames_received_by_op {
            *src.received_by_op.entry(op.clone()).or_default() += n;
        }
        for (cause, n) in &r.audit.protocol_errors {
            *src.faults_by_cause.entry(cause.clone()).or_default() += n;
        }
        src.bytes_sent += r.throughput.bytes_sent;
        src.bytes_received += r.throughput.bytes_received;
    }
    src
}

fn sum_server_frames(shards: &[ShardFolder]) -> Option<ServerFrames> {
    let mut total = ServerFrames::default();
    for s in shards {
        let f = s.report.ack_economics.server_frames.as_ref()?;
        total.total_in += f.total_in;
        total.total_out += f.total_out;
        for (k, n) in &f.frames_in {
            *total.frames_in.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &f.frames_out {
            *total.frames_out.entry(k.clone()).or_default() += n;
        }
    }
    Some(total)
}

/// The testers' memory and CPU per second: summed over the shards (a merge has no process of
/// its own to sample).
fn add_resources(report: &mut Report, shards: &[ShardFolder], offset: impl Fn(&ShardFolder) -> Duration) {
    for s in shards {
        let shift = offset(s).as_secs_f64().round();
        for p in &s.report.timeline {
            let t = p.t + shift;
            if let Some(q) = report.timeline.iter_mut().find(|q| q.t == t) {
                q.rss_mb += p.rss_mb;
                q.cpu_pct += p.cpu_pct;
            }
        }
    }
}

/// Shard warnings worth repeating on the merged report (the rest are recomputed from the
/// merged data).
fn shard_warning(w: &str) -> bool {
    [
        "generator bottleneck",
        "connection attempts failed",
        "insecure",
        "could not be written",
        "started",
    ]
    .iter()
    .any(|k| w.contains(k))
}

fn row(s: &ShardFolder, offset: Duration) -> ShardRow {
    let r = &s.report;
    ShardRow {
        index: s.index,
        results_dir: s.dir.display().to_string(),
        users: (r.plan.users + u64::from(s.count) - 1 - u64::from(s.index)) / u64::from(s.count.max(1)),
        connected_peak: r.connections.peak,
        messages_sent: r.throughput.messages_sent,
        schedule_lag_p99_ms: r.latencies.get("schedule_lag").map_or(0.0, |l| l.p99),
        cpu_secs: r.timeline.iter().map(|p| p.cpu_pct / 100.0).sum(),
        peak_rss_mb: r.timeline.iter().map(|p| p.rss_mb).fold(0.0, f64::max),
        clock_offset_ms: offset.as_secs_f64() * 1e3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped profile, as a shard saves it (credentials left out), reads back for a
    /// merge: native or XMPP, embedded or external.
    #[test]
    fn saved_profiles_read_back_without_their_credentials() {
        for name in ["smoke.toml", "xmpp-smoke.toml", "xmpp-load.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles").join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            let mut table: toml::Table = toml::from_str(&text).unwrap();
            if let Some(toml::Value::Table(t)) = table.get_mut("target") {
                t.remove("secret");
                t.remove("token_file");
                if let Some(toml::Value::Table(x)) = t.get_mut("xmpp") {
                    x.remove("password");
                }
            }
            let saved = toml::to_string(&table).unwrap();
            let plan = workload_plan(&path, &saved).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(plan.population.users > 0, "{name}");
        }
        let ws = "[run]\nduration = \"5s\"\n[population]\nusers = 10\n[target]\nurl = \"ws://10.0.0.1/ws\"\n";
        if let Err(e) = workload_plan(Path::new("x.toml"), ws) {
            panic!("{e}");
        }
    }
}
