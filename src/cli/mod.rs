//! Command-line interface: clap definitions and the dispatch to the library.
//!
//! This is the only layer that uses `anyhow`; everything below returns its own error enum.
//! Exit codes: 0 success, 1 a checked condition failed (an SLO, a regression), 2 the command
//! could not run (bad input, I/O, bind failure); clap's own usage errors also exit with 2.

mod serve;
mod shard;
mod simulate;

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::profile::{self, Plan, Strategy, Target};
use crate::protocol::token;
use crate::report;
use crate::runner;

use serve::{ServeArgs, serve};

/// Exit code when the command ran and a checked condition failed.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code when the command could not run.
pub const EXIT_ERROR: u8 = 2;

/// ackstorm: load-test and simulate IM message receipts.
#[derive(Debug, Parser)]
#[command(name = "ackstorm", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a load profile: simulated users against the embedded server or --target.
    Run {
        #[command(flatten)]
        run: RunArgs,
        /// Run N times, each kept in run-1..run-N of one folder (for `compare`'s spread).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        repeat: u32,
        #[command(flatten)]
        shard: shard::ShardArgs,
    },
    /// Simulate a profile in virtual time against a cost model of the reference server: the
    /// same users and behaviour as `run`, no sockets, deterministic per seed; results, report
    /// and `compare` as for a run, marked simulated.
    Simulate {
        #[command(flatten)]
        run: RunArgs,
        /// The server's cost model (TOML from `ackstorm calibrate`); default: the profile's
        /// model.file, else the calibration shipped with ackstorm.
        #[arg(long, value_name = "FILE")]
        model: Option<std::path::PathBuf>,
        /// Give the modelled server this many cores (the model's own otherwise).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
        cores: Option<u32>,
        /// Predict the server on hardware of its own, the clients elsewhere: the generator's
        /// CPU, which a one-box calibration shares the cores with, is left out.
        #[arg(long)]
        server_only: bool,
    },
    /// Derive a server cost model for `simulate` from socket runs' results folders (server
    /// frames, server and tester CPU, latencies): one run, or one workload at several loads
    /// (the CPU is then fitted as a base plus a cost per frame); writes model.toml into the
    /// first folder, or --out.
    Calibrate {
        /// The runs' results folders.
        #[arg(required = true)]
        dirs: Vec<std::path::PathBuf>,
        /// Where the model goes.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// The model's name (default: from the run's target and machine).
        #[arg(long)]
        name: Option<String>,
    },
    /// Merge the shards of a split run (`run --shard`) into one results folder: histograms
    /// added exactly, the audit run across shards, SLOs judged on the whole.
    Merge {
        /// Shard results folders, or folders holding `shard-*` folders.
        #[arg(required = true)]
        dirs: Vec<std::path::PathBuf>,
        /// Where the merged folder goes (default: `merged` beside the shards).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Run the same seeded workload once per ack strategy and compare them.
    Strategies {
        #[command(flatten)]
        run: RunArgs,
        /// Strategies to run, in order (per_message is the baseline of the savings).
        #[arg(long, value_delimiter = ',', default_value = "per_message,channel,hybrid,debounced")]
        strategies: Vec<String>,
    },
    /// Compare two results folders (runs or --repeat sets): every metric, its delta, and
    /// whether it is beyond the noise; exits 1 when a gated metric regressed.
    Compare {
        /// Baseline results folder.
        a: std::path::PathBuf,
        /// Candidate results folder.
        b: std::path::PathBuf,
        /// Fail (exit 1) when a gated metric is worse by more than this, beyond the noise, e.g. 5%.
        #[arg(long, value_name = "PERCENT")]
        fail_on_regression: Option<String>,
        /// Gated metrics (default: p50 and p99 of server_ack, delivery and read_receipt,
        /// throughput.messages_per_sec, errors.rate, audit.lost).
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
        /// Where the comparison folder goes.
        #[arg(long, default_value = "results")]
        results: std::path::PathBuf,
    },
    /// Find the highest load that holds an SLO: step up, then bisect near the edge.
    Capacity {
        #[command(flatten)]
        run: RunArgs,
        /// The checks each step must hold (repeatable; default: the profile's slo.checks).
        #[arg(long = "slo", value_name = "CHECK")]
        slo: Vec<String>,
        /// What to vary: users, or rate (one-to-one messages per minute per user).
        #[arg(long, default_value = "users", value_parser = ["users", "rate"])]
        vary: String,
        /// First load (default: the profile's).
        #[arg(long)]
        start: Option<f64>,
        /// Growth factor between steps until the first failure.
        #[arg(long, default_value_t = 2.0)]
        factor: f64,
        /// Most steps in all.
        #[arg(long, default_value_t = 12)]
        max_steps: usize,
        /// Stop bisecting when the gap is below this many percent of the load.
        #[arg(long, default_value_t = 10.0)]
        tolerance: f64,
        /// Typical schedule lag (ms, median over seconds of the per-second p99) above which
        /// the generator counts as saturated.
        #[arg(long, default_value_t = crate::runner::LAG_LIMIT_MS)]
        max_lag_ms: f64,
        /// Simulate each step in virtual time against a server cost model, instead of
        /// running it on sockets (see `simulate`).
        #[arg(long)]
        simulate: bool,
        /// With --simulate: the cost model (default: the profile's model.file, else the
        /// shipped calibration).
        #[arg(long, value_name = "FILE", requires = "simulate")]
        model: Option<std::path::PathBuf>,
    },
    /// Check the profile's target and driver through every step of the receipt chains (two
    /// users, one group): what passes, fails, or is not available with the protocol. Exits 1
    /// when a step failed.
    Conformance {
        #[command(flatten)]
        run: RunArgs,
        /// How long to wait for each answer.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Run the reference receipts server (PROTOCOL.md over WebSocket, plus /metrics, /healthz).
    Serve(ServeArgs),
    /// Print the login token of USER under a server secret.
    Token {
        /// Server secret (HMAC key).
        #[arg(long, env = "ACKSTORM_SECRET", hide_env_values = true)]
        secret: String,
        /// User id.
        user: String,
    },
}

/// Profile and overrides (command line > profile file > defaults).
#[derive(Debug, Args)]
struct RunArgs {
    /// The profile (TOML), e.g. profiles/smoke.toml.
    profile: std::path::PathBuf,
    /// Override any profile key, e.g. --set population.users=5000 --set reading.open=5s.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Users (population.users).
    #[arg(long)]
    users: Option<u64>,
    /// Steady phase (run.duration), e.g. 30s.
    #[arg(long)]
    duration: Option<String>,
    /// Workload seed (run.seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Ack strategy (acks.strategy): per_message, channel, hybrid or debounced.
    #[arg(long)]
    strategy: Option<String>,
    /// An external server (target.url) on any host: ws://HOST[:PORT]/PATH, or wss:// for TLS;
    /// default: the embedded server.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// The external server's secret (target.secret).
    #[arg(
        long,
        env = "ACKSTORM_SECRET",
        hide_env_values = true,
        conflicts_with = "token_file",
        requires = "target"
    )]
    secret: Option<String>,
    /// A file of `user token` lines for the external server (target.token_file).
    #[arg(long, requires = "target")]
    token_file: Option<String>,
    /// wss://: trust the CA certificates in this PEM file (a private CA) instead of the
    /// system's (target.ca_file).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<String>,
    /// wss://: do not verify the server's certificate at all (target.insecure); warned about
    /// and recorded in the results.
    #[arg(long, conflicts_with = "ca_file")]
    insecure: bool,
    /// A label of the server build, recorded in the results (target.label).
    #[arg(long)]
    label: Option<String>,
    /// Where result folders go (run.results_dir).
    #[arg(long)]
    results: Option<String>,
    /// No live progress line.
    #[arg(long)]
    no_progress: bool,
    /// Serve live Prometheus metrics (GET /metrics, /healthz) on ADDR while the run goes,
    /// e.g. 0.0.0.0:9464 (tester.metrics_listen).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

impl RunArgs {
    /// All overrides as `key=value`, shorthands after `--set` (so they win).
    fn overrides(&self) -> Vec<String> {
        let mut o = self.set.clone();
        let quoted = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
        let mut add = |key: &str, v: Option<String>| {
            if let Some(v) = v {
                o.push(format!("{key}={v}"));
            }
        };
        add("population.users", self.users.map(|v| v.to_string()));
        add("run.duration", self.duration.as_deref().map(quoted));
        add("run.seed", self.seed.map(|v| v.to_string()));
        add("acks.strategy", self.strategy.as_deref().map(quoted));
        add("target.url", self.target.as_deref().map(quoted));
        add("target.secret", self.secret.as_deref().map(quoted));
        add("target.token_file", self.token_file.as_deref().map(quoted));
        add("target.ca_file", self.ca_file.as_deref().map(quoted));
        add("target.insecure", self.insecure.then(|| "true".to_string()));
        add("target.label", self.label.as_deref().map(quoted));
        add("run.results_dir", self.results.as_deref().map(quoted));
        add("tester.metrics_listen", self.metrics_listen.as_deref().map(quoted));
        if self.no_progress {
            o.push("tester.progress=false".to_string());
        }
        o
    }

    fn plan(&self) -> Result<Plan> {
        Ok(profile::load(&self.profile, &self.overrides())?)
    }
}

/// The exit code of a command that failed: 130/143 when a signal stopped it, else
/// [`EXIT_ERROR`].
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<runner::RunError>() {
        Some(runner::RunError::Interrupted { signal, .. }) => runner::interrupt::exit_code(*signal),
        _ => EXIT_ERROR,
    }
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run { run, repeat, shard } => run_profile(&run, repeat, &shard),
        Command::Merge { dirs, out } => shard::merge(&dirs, out.as_deref()),
        Command::Simulate {
            run,
            model,
            cores,
            server_only,
        } => simulate::run(&run, model.as_deref(), cores, server_only),
        Command::Calibrate { dirs, out, name } => simulate::calibrate(&dirs, out.as_deref(), name.as_deref()),
        Command::Strategies { run, strategies } => compare_strategies(&run, &strategies),
        Command::Compare {
            a,
            b,
            fail_on_regression,
            metrics,
            results,
        } => compare_results(&a, &b, fail_on_regression.as_deref(), metrics, &results),
        Command::Capacity {
            run,
            slo,
            vary,
            start,
            factor,
            max_steps,
            tolerance,
            max_lag_ms,
            simulate: simulated,
            model,
        } => {
            let slo = slo
                .iter()
                .map(|s| profile::SloCheck::parse(s).map_err(|e| anyhow::anyhow!("--slo: {e}")))
                .collect::<Result<Vec<_>>>()?;
            if factor.is_nan() || factor <= 1.0 {
                bail!("--factor must be above 1, got {factor}");
            }
            let search = runner::capacity::Search {
                vary: if vary == "rate" {
                    runner::capacity::Vary::Rate
                } else {
                    runner::capacity::Vary::Users
                },
                slo,
                start,
                factor,
                tolerance: tolerance / 100.0,
                max_steps: max_steps.max(1),
                max_lag_ms,
            };
            find_capacity(&run, &search, simulated.then_some(model.as_deref()))
        }
        Command::Conformance { run, wait } => conformance(&run, wait),
        Command::Serve(args) => serve(args),
        Command::Token { secret, user } => {
            if !crate::protocol::is_valid_id(&user) {
                bail!("{user:?} is not a valid user id ([A-Za-z0-9_.-]{{1,64}})");
            }
            println!("{}", token::token(secret.as_bytes(), &user));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `ackstorm conformance`: the steps as a table; exit 1 when one failed.
fn conformance(run: &RunArgs, wait: std::time::Duration) -> Result<ExitCode> {
    use crate::transport::conformance::{Outcome, passed};
    let plan = run.plan()?;
    let checks = runner::conformance(&plan, wait)?;
    let mut table = report::text::table(&["step", "outcome", "what the tester relies on"]);
    for c in &checks {
        let outcome = match &c.outcome {
            Outcome::Passed(d) => format!("passed ({:.1} ms)", d.as_secs_f64() * 1e3),
            Outcome::Failed(why) => format!("FAILED: {why}"),
            Outcome::NotAvailable(cap) => format!("not available (no {cap})"),
            Outcome::Skipped => "skipped (an earlier step failed)".to_string(),
        };
        table.add_row([c.name.to_string(), outcome, c.meaning.to_string()]);
    }
    println!("{table}");
    Ok(if passed(&checks) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

/// Prints the effective plan in brief (the full profile goes to the results folder).
fn print_plan(plan: &Plan, overrides: &[String]) {
    let target = match &plan.target {
        Target::Embedded { .. } => "embedded reference server".to_string(),
        Target::External { url, .. } => url.clone(),
    };
    let (single, group) = plan.offered_rates();
    eprintln!("ackstorm run {}: {target}", plan.name);
    eprintln!(
        "  users {} x {} devices, {} groups, strategy {}, seed {}",
        plan.peak_users(),
        plan.population.devices_per_user,
        plan.groups.count,
        plan.acks.strategy.as_str(),
        plan.seed
    );
    eprintln!(
        "  offered {single:.0} one-to-one + {group:.0} group messages/s; steady {}, drain {}",
        humantime::format_duration(plan.duration),
        humantime::format_duration(plan.drain)
    );
    if let Some(c) = &plan.traffic.curve {
        eprintln!(
            "  traffic curve: {} factors of {} each, mean {:.3} over the run (in the offered rates)",
            c.factors().len(),
            humantime::format_duration(c.step()),
            plan.curve_mean()
        );
    }
    if !overrides.is_empty() {
        eprintln!("  overrides: {}", overrides.join(" "));
    }
    for n in &plan.notes {
        eprintln!("  note: {n}");
    }
}

fn slo_exit(report: &report::Report) -> ExitCode {
    if report.connections.achieved == 0 {
        eprintln!("error: no user could log in: nothing was measured (see the warnings above)");
        ExitCode::from(EXIT_ERROR)
    } else if report.slo.iter().all(|s| s.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    }
}

/// Prints a finished run (or merge) and returns its exit code.
fn finished(out: &runner::RunOutput) -> ExitCode {
    println!("{}", report::render_text(&out.report));
    println!("results: {}", out.dir.display());
    println!("report:  {}", out.dir.join("report.html").display());
    match out.interrupted {
        Some(sig) => ExitCode::from(runner::interrupt::exit_code(sig)),
        None => slo_exit(&out.report),
    }
}

fn run_profile(args: &RunArgs, repeat: u32, shards: &shard::ShardArgs) -> Result<ExitCode> {
    let mut plan = args.plan()?;
    plan.launch = shards.launch(&plan)?;
    if plan.launch.shard.is_some() && repeat > 1 {
        bail!("--repeat cannot be combined with --shard: repeat the whole split run instead");
    }
    print_plan(&plan, &args.overrides());
    let effective = profile::effective_toml(&plan);
    if let Some(n) = shards.workers.filter(|n| *n > 1) {
        if repeat > 1 {
            bail!("--repeat cannot be combined with --workers");
        }
        let start_at = plan.launch.start_at.unwrap_or_else(|| shard::workers_start(&plan));
        let w = runner::workers::Workers {
            profile: &args.profile,
            overrides: &args.overrides(),
            count: n,
            start_at,
            run_id: plan.launch.run_id.clone(),
        };
        return Ok(finished(&runner::workers::run(&plan, &w)?));
    }
    if repeat == 1 {
        return Ok(finished(&runner::run(&plan, &effective)?));
    }
    let (set, outs) = runner::run_repeated(&plan, &effective, repeat)?;
    for (i, o) in outs.iter().enumerate() {
        let l = |m: &str| o.report.latencies.get(m).map_or(0.0, |l| l.p99);
        let slo = if o.report.slo.iter().all(|s| s.passed) {
            "SLOs held"
        } else {
            "SLO FAILED"
        };
        println!(
            "run {}: {:.0} msg/s, server_ack p99 {:.2} ms, read_receipt p99 {:.2} ms, lost {}, {slo}",
            i + 1,
            o.report.throughput.messages_per_sec,
            l("server_ack"),
            l("read_receipt"),
            o.report.audit.total.lost
        );
    }
    println!("results: {} ({repeat} runs)", set.display());
    if let Some(sig) = outs.iter().find_map(|o| o.interrupted) {
        return Ok(ExitCode::from(runner::interrupt::exit_code(sig)));
    }
    let all = outs.iter().all(|o| o.report.slo.iter().all(|s| s.passed));
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn compare_strategies(args: &RunArgs, names: &[String]) -> Result<ExitCode> {
    let plan = args.plan()?;
    let list: Vec<Strategy> = names
        .iter()
        .map(|n| {
            Strategy::parse(n.trim())
                .with_context(|| format!("--strategies: {n:?} is not one of per_message, channel, hybrid, debounced"))
        })
        .collect::<Result<_>>()?;
    print_plan(&plan, &args.overrides());
    let (comparison, runs) = runner::strategies(&plan, &list, profile::effective_toml)?;
    let dir = runner::write_comparison(&plan, &comparison, &runs)?;
    println!("{}", report::render_comparison_text(&comparison));
    println!("comparison: {}", dir.join("comparison.html").display());
    let all_pass = runs.iter().all(|r| r.report.slo.iter().all(|s| s.passed));
    Ok(if all_pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn compare_results(
    a: &std::path::Path,
    b: &std::path::Path,
    threshold: Option<&str>,
    gate: Vec<String>,
    results: &std::path::Path,
) -> Result<ExitCode> {
    let threshold_pct = threshold
        .map(|t| {
            t.trim()
                .trim_end_matches('%')
                .parse::<f64>()
                .ok()
                .filter(|v| *v >= 0.0)
                .with_context(|| format!("--fail-on-regression: {t:?} is not a percentage such as 5%"))
        })
        .transpose()?;
    let report = crate::compare::compare(a, b, &crate::compare::Options { threshold_pct, gate })?;
    let dir = runner::write_compare(results, &report)?;
    println!("{}", report::render_compare_text(&report));
    println!("comparison: {}", dir.join("compare.html").display());
    Ok(if report.failed {
        ExitCode::from(EXIT_CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// `ackstorm capacity`; `simulated` holds `--model` when each step is simulated.
fn find_capacity(
    args: &RunArgs,
    search: &runner::capacity::Search,
    simulated: Option<Option<&std::path::Path>>,
) -> Result<ExitCode> {
    let plan = args.plan()?;
    print_plan(&plan, &args.overrides());
    let (report, dir) = match simulated {
        Some(flag) => {
            let model = simulate::model_of(&plan, flag)?;
            crate::simulate::capacity(&plan, search, profile::effective_toml, &model)?
        }
        None => runner::capacity::capacity(&plan, search, profile::effective_toml)?,
    };
    println!("{}", report::render_capacity_text(&report));
    println!("capacity: {}", dir.join("capacity.html").display());
    Ok(ExitCode::SUCCESS)
}
