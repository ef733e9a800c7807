//! The command-line side of split runs: `run --shard I/N` (or `--shards N` with the index from
//! `JOB_COMPLETION_INDEX`, as a Kubernetes Indexed Job sets it), `--run-id`, `--start-at`,
//! `run --workers N`, and `ackstorm merge`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Result, bail};
use clap::Args;

use crate::profile::{Launch, Plan, Shard};
use crate::runner;
use crate::runner::shards::{default_run_id, valid_run_id};

/// How a `run` takes part in a split run.
#[derive(Debug, Args)]
pub(super) struct ShardArgs {
    /// Run shard I of N (users whose index is I modulo N), e.g. 0/4.
    #[arg(long, value_name = "I/N", conflicts_with_all = ["shards", "workers"])]
    shard: Option<String>,
    /// Shards in the run; this one's index comes from --shard-index.
    #[arg(long, value_name = "N", conflicts_with = "workers", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    shards: Option<u32>,
    /// This shard's index with --shards (a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "I", env = "JOB_COMPLETION_INDEX")]
    shard_index: Option<u32>,
    /// The id every shard of the run shares (default: from the profile hash, seed and
    /// --start-at).
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
    /// Start the run's clock at this UTC time, e.g. 2026-12-02T15:00:00Z (a barrier for all
    /// shards).
    #[arg(long, value_name = "RFC3339")]
    start_at: Option<String>,
    /// Run N shard processes on this machine, then merge them.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: Option<u32>,
}

impl ShardArgs {
    /// This process's part, checked against `plan`.
    pub fn launch(&self, plan: &Plan) -> Result<Launch> {
        let shard = match (&self.shard, self.shards) {
            (Some(text), _) => Some(Shard::parse(text).map_err(|e| anyhow::anyhow!("--shard: {e}"))?),
            (None, Some(count)) => {
                let Some(index) = self.shard_index else {
                    bail!("--shards {count}: give this shard's index with --shard-index I (or JOB_COMPLETION_INDEX)");
                };
                if index >= count {
                    bail!("--shard-index {index} (or JOB_COMPLETION_INDEX) must be below --shards {count}");
                }
                Some(Shard { index, count })
            }
            (None, None) => None,
        };
        let start_at = self
            .start_at
            .as_deref()
            .map(|t| {
                humantime::parse_rfc3339_weak(t)
                    .map_err(|e| anyhow::anyhow!("--start-at {t:?}: {e} (expected e.g. 2026-12-02T15:00:00Z)"))
            })
            .transpose()?;
        if let Some(id) = &self.run_id
            && !valid_run_id(id)
        {
            bail!("--run-id {id:?}: use 1 to 32 letters, digits, '-' or '_' (it goes into group ids and folder names)");
        }
        let run_id = self
            .run_id
            .clone()
            .or_else(|| start_at.map(|at| default_run_id(plan, at)));
        if shard.is_some_and(|s| s.count > 1) && run_id.is_none() {
            bail!("--shard needs --run-id or --start-at: every shard of a run must name the same run");
        }
        Ok(Launch {
            shard,
            run_id,
            start_at,
        })
    }
}

/// `ackstorm merge`: prints the merged report; exit 1 when it fails an SLO.
pub(super) fn merge(dirs: &[PathBuf], out: Option<&std::path::Path>) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let out = runner::merge::merge(dirs, out)?;
    if let Some(s) = &out.report.shards {
        eprintln!(
            "merged {} shards of run {} in {:.1} s",
            s.count,
            s.run_id,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(super::finished(&out))
}

/// The start time `run --workers` gives its shards: far enough ahead for each to start its
/// server and create its groups.
pub(super) fn workers_start(plan: &Plan) -> SystemTime {
    let setup = std::time::Duration::from_secs(3) + std::time::Duration::from_millis(plan.groups.count * 2);
    SystemTime::now() + setup
}
