//! The `driftless` binary: parse the command line, run the command, map errors to exit codes.

// mimalloc for `driftless simulate`, the system's allocator for everything else (the agent's
// resident memory): see `driftless_sim::alloc`.
#[global_allocator]
static ALLOC: driftless_sim::alloc::PerCommand = driftless_sim::alloc::PerCommand;

fn main() -> std::process::ExitCode {
    driftless::cli::main()
}
