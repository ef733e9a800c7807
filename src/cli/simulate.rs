//! `ackstorm simulate` and `ackstorm calibrate`: virtual-time runs against a server model, and
//! the model derived from a socket run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use super::{RunArgs, finished, print_plan};
use crate::profile::{self, Plan};
use crate::simulate::{self, model::Model};

/// The model a simulation of `plan` uses: `--model`, else the profile's `model.file`, else the
/// calibration that ships with ackstorm.
pub(super) fn model_of(plan: &Plan, flag: Option<&Path>) -> Result<Model> {
    let file = flag
        .map(Path::to_path_buf)
        .or_else(|| plan.model.as_ref().map(|m| m.file.clone()));
    Ok(match file {
        Some(f) => Model::load(&f)?,
        None => Model::shipped(),
    })
}

/// `ackstorm simulate PROFILE`.
pub(super) fn run(args: &RunArgs, model: Option<&Path>, cores: Option<u32>, server_only: bool) -> Result<ExitCode> {
    let plan = args.plan()?;
    let mut model = model_of(&plan, model)?;
    if let Some(n) = cores {
        model.name = format!("{}, given {n} cores", model.name);
        model.cores = n;
    }
    if server_only && model.colocated {
        model.name = format!("{}, server only", model.name);
        model.colocated = false;
    }
    print_plan(&plan, &args.overrides());
    eprintln!("  simulated: virtual time, model {:?}", model.name);
    let effective = profile::effective_toml(&plan);
    let out = simulate::simulate(&plan, &effective, &model)?;
    if let Some(s) = &out.report.simulation {
        eprintln!(
            "simulated {:.0} s of run time in {:.1} s ({} events); predicted server cores: peak {:.2}, steady mean {:.2}",
            out.report.elapsed_secs, s.wall_secs, s.events, s.peak_server_cores, s.mean_server_cores
        );
    }
    Ok(finished(&out))
}

/// `ackstorm calibrate RESULTS_DIR...`.
pub(super) fn calibrate(dirs: &[PathBuf], out: Option<&Path>, name: Option<&str>) -> Result<ExitCode> {
    let refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    let (model, header) = simulate::calibrate::from_results(&refs, name)?;
    let path: PathBuf = out.map_or_else(|| dirs[0].join("model.toml"), Path::to_path_buf);
    std::fs::write(&path, model.to_toml(&header)).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    println!("{}", model.to_toml(&header));
    println!("model: {}", path.display());
    Ok(ExitCode::SUCCESS)
}
