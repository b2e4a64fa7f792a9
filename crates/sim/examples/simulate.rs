//! Run one scenario file: `cargo run --release -p driftless-sim --example simulate -- FILE [--seed N] [--out DIR]`.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut seed = None;
    let mut out = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()),
            "--out" => out = args.next().map(PathBuf::from),
            _ => file = Some(PathBuf::from(a)),
        }
    }
    let Some(file) = file else {
        eprintln!("usage: simulate FILE [--seed N] [--out DIR]");
        std::process::exit(2);
    };
    match driftless_sim::run_scenario(file.as_path(), seed, out.as_deref()) {
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
