//! Run one scenario file: `cargo run --release -p driftless-sim --example simulate -- FILE [--seed N] [--out DIR] [--threads N]`.

use std::path::PathBuf;

#[global_allocator]
static ALLOC: driftless_sim::MiMalloc = driftless_sim::MiMalloc;

const USAGE: &str = "usage: simulate FILE [--seed N] [--out DIR] [--threads N]

  --seed N      the scenario's random seed (default: the file's `seed`)
  --out DIR     write summary.json, timeline.csv and SVG plots to DIR
  --threads N   run the fleet's shards on N threads (default: the machine's parallelism,
                at most one thread per 5,000 nodes and at most 8; 1 when the minimum
                latency is 0). The outputs are the same bytes whatever N is.";

fn main() {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut seed = None;
    let mut out = None;
    let mut threads = None;
    let bad = |what: &str| -> ! {
        eprintln!("error: {what}\n{USAGE}");
        std::process::exit(2);
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()),
            "--out" => out = args.next().map(PathBuf::from),
            "--threads" => match args.next().and_then(|s| s.parse::<usize>().ok()) {
                Some(n) if n >= 1 => threads = Some(n),
                _ => bad("--threads takes a number of at least 1"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            _ => file = Some(PathBuf::from(a)),
        }
    }
    let Some(file) = file else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    match driftless_sim::run_scenario_with(file.as_path(), seed, out.as_deref(), threads) {
        Ok(r) => {
            print!("{}", r.table());
            std::process::exit(if r.passed() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(if e.is_bad_input() { 2 } else { 1 });
        }
    }
}
