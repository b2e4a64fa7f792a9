//! The command line: one file per subcommand, each thin over the library.
//!
//! Exit codes: 0 success, 1 the operation failed (or a well-formed input was refused),
//! 2 bad usage or bad input (clap also exits 2 on usage errors).

mod admit;
mod agent;
mod apply;
mod cosign;
mod demo;
mod keygen;
mod plan;
mod publish;
mod revoke;
mod root;
mod show;
mod show_signed;
mod sign;
mod signing;
mod simulate;
mod status;
mod verify;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "driftless",
    version,
    about = "Keep every server on its declared configuration: signed definitions, converged, drift undone.",
    long_about = "Keep every server on its declared configuration, without a central server.\n\n\
A release host creates keys (keygen), signs a definition into a bundle (sign, cosign) and checks \
it (verify, plan). A server converges to a bundle (apply). Admission keys admit servers to \
the fleet (admit) and drop them (revoke); root keys sign the next trust root (root). Exit codes: 0 success, 1 the \
operation failed or the input was refused, 2 bad usage or unreadable input."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Keygen(keygen::Args),
    Sign(sign::Args),
    Cosign(cosign::Args),
    Verify(verify::Args),
    Admit(admit::Args),
    Revoke(revoke::Args),
    Root(root::Args),
    Plan(plan::Args),
    Apply(apply::Args),
    Agent(agent::Args),
    Publish(publish::Args),
    Status(status::StatusArgs),
    Fleet(status::FleetArgs),
    Simulate(simulate::Args),
    Demo(demo::Args),
}

/// An error with the exit code it deserves.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub error: anyhow::Error,
}

impl CliError {
    /// Bad usage or input that could not be read: exit 2.
    pub fn bad(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: 2,
            error: error.into(),
        }
    }
    /// The operation failed, or a well-formed input was refused: exit 1.
    pub fn failed(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: 1,
            error: error.into(),
        }
    }
}

pub type CliResult = Result<u8, CliError>;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Agent(_)) {
        // A command piped into `head` should end quietly, as Unix tools do, not panic.
        // (The agent keeps SIGPIPE ignored: a closed socket is an error to handle.)
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
    }
    let result = match cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::Sign(a) => sign::run(a),
        Command::Cosign(a) => cosign::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Admit(a) => admit::run(a),
        Command::Revoke(a) => revoke::run(a),
        Command::Root(a) => root::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Apply(a) => apply::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Publish(a) => publish::run(a),
        Command::Status(a) => status::status(a),
        Command::Fleet(a) => status::fleet(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Demo(a) => demo::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {:#}", e.error);
            ExitCode::from(e.code)
        }
    }
}

/// `--root DIR`: must exist and be a directory; returned absolute.
pub fn root_dir(root: Option<&PathBuf>) -> Result<PathBuf, CliError> {
    match root {
        None => Ok(PathBuf::from("/")),
        Some(r) => {
            let abs = std::fs::canonicalize(r)
                .map_err(|e| CliError::bad(anyhow::anyhow!("--root {}: {e}", r.display())))?;
            if !abs.is_dir() {
                return Err(CliError::bad(anyhow::anyhow!(
                    "--root {}: not a directory",
                    r.display()
                )));
            }
            Ok(abs)
        }
    }
}

pub fn parse_labels(text: Option<&str>) -> Result<driftless_core::Labels, CliError> {
    match text {
        None => Ok(Default::default()),
        Some(t) => driftless_core::labels::parse_labels(t)
            .map_err(|e| CliError::bad(anyhow::anyhow!("--labels: {e}"))),
    }
}

/// The wall clock, read here and passed into the core.
pub fn now() -> driftless_core::Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    driftless_core::Timestamp(secs)
}

/// Read a bundle file, refusing one over `limit` bytes before reading it.
pub fn read_bundle_file(path: &std::path::Path, limit: usize) -> Result<Vec<u8>, CliError> {
    let md = std::fs::metadata(path)
        .map_err(|e| CliError::bad(anyhow::anyhow!("{}: cannot read: {e}", path.display())))?;
    if md.len() > limit as u64 {
        return Err(CliError::bad(anyhow::anyhow!(
            "{}: {} bytes, over the bundle size limit of {limit} bytes",
            path.display(),
            md.len()
        )));
    }
    std::fs::read(path)
        .map_err(|e| CliError::bad(anyhow::anyhow!("{}: cannot read: {e}", path.display())))
}
