//! `driftless simulate`: rehearse a rollout on N virtual nodes running the agent's own
//! protocol core, in virtual time.

use super::{CliError, CliResult};
use std::path::PathBuf;

/// Run a scenario (see simulations/) over virtual nodes: the same protocol code as the agent,
/// on a virtual network and clock with the faults the scenario schedules. Prints a summary;
/// writes JSON, CSV and SVG plots to --out (byte-identical for the same seed). Exit 0 when
/// every expectation holds, 1 when one fails (the seed that reproduces it is printed), 2 for
/// a bad scenario file.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The scenario file (TOML)
    pub scenario: PathBuf,
    /// Override the scenario's seed
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for report.json, rows.csv and the SVG plots
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run the virtual fleet on N threads (default: the machine's cores, at most one thread
    /// per 5,000 nodes). The outputs are the same bytes whatever N is
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

pub fn run(a: Args) -> CliResult {
    let threads = a.threads.map(usize::from);
    let (scenario, out) = (a.scenario.as_path(), a.out.as_deref());
    let report = driftless_sim::run_scenario_with(scenario, a.seed, out, threads).map_err(|e| {
        if e.is_bad_input() {
            CliError::bad(e)
        } else {
            CliError::failed(e)
        }
    })?;
    print!("{}", report.table());
    println!("wall time {:.2} s", report.wall_ms as f64 / 1000.0);
    if let Some(out) = &a.out {
        println!("wrote {}", out.display());
    }
    if report.passed() {
        Ok(0)
    } else {
        eprintln!(
            "error: {}: an expectation failed; reproduce with `driftless simulate {} --seed {}`",
            a.scenario.display(),
            a.scenario.display(),
            report.seed
        );
        Ok(1)
    }
}
