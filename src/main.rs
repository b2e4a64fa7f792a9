//! The `driftless` binary: parse the command line, run the command, map errors to exit codes.

// The simulator's allocator (see `driftless_sim::MiMalloc`), for `driftless simulate`.
#[global_allocator]
static ALLOC: driftless_sim::MiMalloc = driftless_sim::MiMalloc;

fn main() -> std::process::ExitCode {
    driftless::cli::main()
}
