//! The simulator benchmark: `simulations/bench-10k.toml` with `nodes` rewritten to
//! 100 … 100,000 (one child process per size, for its peak RSS), printed beside log2(N) and
//! beside iroh-gossip's own simulator on the same latency model (PEERS.md).
//!
//! `cargo run --release -p driftless-sim --example bench [-- --max 100000] [--threads N]`
//! (threads: as `simulate --threads`; the figures are the same whatever N is, but wall time).

use driftless_sim::{run_scenario_with, Scenario};
use std::path::Path;
use std::process::Command;

#[global_allocator]
static ALLOC: driftless_sim::MiMalloc = driftless_sim::MiMalloc;

/// iroh-gossip 0.101 simulator, latency uniform 10–50 ms, time for one broadcast to reach
/// every node (PEERS.md, measured on this kind of machine).
const IROH: [(usize, f64); 3] = [(1_000, 0.37), (10_000, 0.90), (100_000, 2.31)];

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn one(n: usize, threads: Option<usize>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../simulations/bench-10k.toml");
    let text = std::fs::read_to_string(&path).expect("bench-10k.toml");
    let text = text.replace("nodes = 10000", &format!("nodes = {n}"));
    let sc = Scenario::parse(&path, &text).expect("scenario");
    let r = run_scenario_with(sc, None, None, threads).expect("run");
    let f = |k: &str| r.figure(k).cloned().unwrap_or(serde_json::Value::Null);
    let round = f("round_ms").as_f64().unwrap_or(1000.0);
    let ms = |k: &str| f(k).as_f64();
    let rounds = |k: &str| {
        ms(k)
            .map(|v| format!("{:.2}", v / round))
            .unwrap_or("-".into())
    };
    // One tab-separated line for the parent.
    println!(
        "ROW\t{n}\t{:.2}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.1}\t{}\t{}\t{}\t{}",
        (n as f64).log2(),
        f("v2_ms_to_all_accepted"),
        f("v2_ms_to_99pct"),
        f("v2_ms_to_100pct"),
        rounds("v2_ms_to_99pct"),
        rounds("v2_ms_to_100pct"),
        f("v2_hops_99pct"),
        f("v2_hops_max"),
        f("bundle_rx_per_node_x"),
        f("idle_bytes_per_node_s"),
        f("steady_bytes_per_node_s"),
        r.wall_ms as f64 / 1000.0,
        peak_rss_kb(),
        peak_rss_kb() * 1024 / n as u64,
        if r.passed() { "pass" } else { "FAIL" },
        f("v3_ms_to_all_accepted"),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: Option<usize> = args.iter().position(|a| a == "--threads").map(|i| {
        args.get(i + 1)
            .and_then(|v| v.parse().ok())
            .filter(|t| *t >= 1)
            .expect("--threads N (at least 1)")
    });
    if let Some(i) = args.iter().position(|a| a == "--one") {
        one(args[i + 1].parse().expect("--one N"), threads);
        return;
    }
    let max: usize = args
        .iter()
        .position(|a| a == "--max")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!("bench-10k.toml scaled: 60 virtual s, 16 KiB releases at 20 s and 40 s from two random nodes, both pushed down the tree built at start-up, latency uniform 10-50 ms, round 1 s");
    println!(
        "{:>7} {:>6} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7} {:>6} {:>6} {:>7} {:>8} {:>8} {:>7} {:>9} {:>8} {:>5}",
        "N", "log2N", "v2_all_acc", "v3_all_acc", "99%_ms", "100%_ms", "rnd99", "rnd100", "hop99", "hopmax", "bundle",
        "idle_B/s", "stdy_B/s", "wall_s", "rss_MB", "B/node", "exp"
    );
    let exe = std::env::current_exe().expect("own path");
    let mut rows = Vec::new();
    for n in [100, 1_000, 10_000, 100_000] {
        if n > max {
            break;
        }
        let mut cmd = Command::new(&exe);
        cmd.args(["--one", &n.to_string()]);
        if let Some(t) = threads {
            cmd.args(["--threads", &t.to_string()]);
        }
        let out = cmd.output().expect("child run");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find(|l| l.starts_with("ROW\t")) else {
            println!("{n:>7} failed: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        };
        let c: Vec<&str> = line.split('\t').skip(1).collect();
        let rss_mb = c[13].parse::<f64>().unwrap_or(0.0) / 1024.0;
        println!(
            "{:>7} {:>6} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7} {:>6} {:>6} {:>6}x {:>8} {:>8} {:>7} {:>9.0} {:>8} {:>5}",
            c[0], c[1], c[2], c[16], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12], rss_mb, c[14], c[15]
        );
        rows.push((n, c[2].parse::<f64>().ok(), c[16].parse::<f64>().ok()));
    }
    println!();
    println!("spread to 100% of nodes (accepted), against iroh-gossip's simulator (target: at most half):");
    for (n, iroh) in IROH {
        if let Some((_, Some(pull), push)) = rows.iter().find(|(m, _, _)| *m == n) {
            let push = push.unwrap_or(f64::NAN);
            println!(
                "  N={n:>6}: driftless {:.2} s first release / {:.2} s second, iroh-gossip {iroh:.2} s, ratio {:.2} / {:.2} (target <= 0.50)",
                pull / 1000.0,
                push / 1000.0,
                pull / 1000.0 / iroh,
                push / 1000.0 / iroh
            );
        }
    }
}
