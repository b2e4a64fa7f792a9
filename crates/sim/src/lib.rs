//! `driftless simulate`: the protocol core of every agent, run for N virtual nodes on a
//! virtual network and clock, with faults on a timeline and expectations checked at the end.
//!
//! Same seed, same run, whatever the number of threads: a random stream per node, events
//! ordered by (time, who caused them), no wall clock in anything written to `--out` (wall
//! time goes to the terminal only). See `engine.rs` and ARCHITECTURE.md ("The simulator").

pub mod alloc;
pub mod door;
pub mod engine;
pub mod metrics;
pub mod models;
pub mod plot;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod wire;

pub use report::{Check, Report};
pub use scenario::Scenario;

/// The allocator of the `simulate` and `bench` examples, which run nothing but the simulator
/// (the `driftless` binary takes [`alloc::PerCommand`], which picks it for `simulate` only):
/// mimalloc, a well-kept crate over Microsoft's allocator (MIT). See [`alloc`] for why.
pub use mimalloc::MiMalloc;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read scenario {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}: field `{field}`: {message}", file.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Invalid {
        file: PathBuf,
        field: String,
        line: Option<usize>,
        message: String,
    },
    #[error("cannot write {}: {source}", path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// Bad input (exit code 2) rather than a failure while running or writing (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::Read { .. } | Error::Invalid { .. })
    }
}

/// What to run: a scenario file, or one already parsed.
pub enum Source<'a> {
    File(&'a Path),
    Parsed(Box<Scenario>),
}

impl<'a> From<&'a Path> for Source<'a> {
    fn from(p: &'a Path) -> Self {
        Source::File(p)
    }
}

impl From<Scenario> for Source<'_> {
    fn from(s: Scenario) -> Self {
        Source::Parsed(Box::new(s))
    }
}

/// Run a scenario. `seed` overrides the file's seed; `out` receives JSON, CSV and SVG plots
/// (byte-identical for the same seed). Threads: [`engine::default_threads`].
pub fn run_scenario<'a>(
    scenario: impl Into<Source<'a>>,
    seed: Option<u64>,
    out: Option<&Path>,
) -> Result<Report, Error> {
    run_scenario_with(scenario, seed, out, None)
}

/// [`run_scenario`] on `threads` threads (None: [`engine::default_threads`]). The outputs
/// are the same bytes whatever the thread count.
pub fn run_scenario_with<'a>(
    scenario: impl Into<Source<'a>>,
    seed: Option<u64>,
    out: Option<&Path>,
    threads: Option<usize>,
) -> Result<Report, Error> {
    let sc = match scenario.into() {
        Source::File(p) => Scenario::load(p)?,
        Source::Parsed(s) => *s,
    };
    let seed = seed.unwrap_or(sc.seed);
    let started = std::time::Instant::now();
    let mut report = match sc.mode {
        scenario::Mode::Protocol => {
            let threads = threads.unwrap_or_else(|| engine::default_threads(sc.nodes));
            report::run_protocol(&sc, seed, threads)
        }
        scenario::Mode::Models => models::run_models(&sc, seed),
    };
    report.wall_ms = started.elapsed().as_millis() as u64;
    if let Some(dir) = out {
        report.write(dir)?;
    }
    Ok(report)
}
