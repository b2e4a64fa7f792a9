//! `simulations/` is a test suite: every scenario small enough runs here and must meet its
//! expectations; the same seed must give the same bytes.
//!
//! Scenarios of up to 2,000 nodes (or marked `ci = true`) run in an optimised build
//! (`cargo test --release -p driftless-sim`, as CI does). A debug build runs only those of up
//! to 300 nodes and says which it skipped: the unoptimised core is ~50x slower.

use driftless_sim::{run_scenario, run_scenario_with, Scenario};
use std::path::{Path, PathBuf};

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../simulations");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("simulations/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// The files a run writes to `--out`.
const OUTPUTS: [&str; 6] = [
    "summary.json",
    "timeline.csv",
    "adoption.svg",
    "bytes.svg",
    "drift.svg",
    "rollout.svg",
];

#[test]
fn small_scenarios_meet_their_expectations() {
    let limit = if cfg!(debug_assertions) { 300 } else { 2000 };
    let mut run = Vec::new();
    for path in scenarios() {
        let sc = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let in_ci = sc.ci.unwrap_or(sc.nodes <= 2000);
        if !in_ci {
            continue;
        }
        if sc.nodes > limit && sc.ci != Some(true) {
            eprintln!(
                "skipped {} ({} nodes) in a debug build; run cargo test --release -p driftless-sim",
                path.display(),
                sc.nodes
            );
            continue;
        }
        run.push(path);
    }
    assert!(!run.is_empty(), "no scenario ran");
    // Scenarios are independent (each run deterministic, whatever its thread count): run
    // them on the machine's cores, one thread each.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(run.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(path) = run.get(i) else { break };
                let report = run_scenario_with(path.as_path(), None, None, Some(1))
                    .unwrap_or_else(|e| panic!("{e}"));
                eprint!("{}", report.table());
                if !report.passed() {
                    failed.lock().unwrap().push(path.display().to_string());
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap();
    assert!(failed.is_empty(), "scenarios failed: {failed:?}");
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let text = "# determinism\nnodes = 60\nduration = \"12s\"\nexpect = [\"100% at version 2 by 11s\"]\n\
                [network]\nloss = 0.1\n[fleet]\ndrift_per_node_hour = 100.0\n\
                [[timeline]]\nat = \"4s\"\npublish = 2\n[[timeline]]\nat = \"5s\"\ncrash = 0.1\ndown = \"3s\"\n\
                [[timeline]]\nat = \"8s\"\npublish = 3\nunhealthy = 0.3\n\
                rollout = { waves = [0.2, 1.0], bake = \"1s\", max_unhealthy = 0.1 }\n";
    let sc = Scenario::parse(Path::new("determinism.toml"), text).unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    run_scenario(sc.clone(), Some(11), Some(dirs[0].path())).unwrap();
    run_scenario(sc.clone(), Some(11), Some(dirs[1].path())).unwrap();
    run_scenario(sc, Some(12), Some(dirs[2].path())).unwrap();
    let read = |d: &tempfile::TempDir, n: &str| std::fs::read(d.path().join(n)).unwrap();
    for n in OUTPUTS {
        assert_eq!(
            read(&dirs[0], n),
            read(&dirs[1], n),
            "{n} differs with the same seed"
        );
    }
    assert_ne!(
        read(&dirs[0], "timeline.csv"),
        read(&dirs[2], "timeline.csv"),
        "another seed should give another run"
    );
    let svg = String::from_utf8(read(&dirs[0], "adoption.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("share of nodes"));
}

/// The engine runs shards of the fleet on threads; the run must not depend on how many.
/// A scenario with every source of disorder (loss, drift, crashes and restarts, a partition,
/// a rollout that halts, a liar, a rogue publisher) run on 1, 2 and 3 threads must give the
/// same files and the same summary (but for the wall time).
#[test]
fn the_thread_count_does_not_change_the_bytes() {
    let text = "# threads\nnodes = 90\nduration = \"14s\"\n\
                [network]\nloss = 0.05\nlatency = \"10ms..12ms\"\n[fleet]\ndrift_per_node_hour = 100.0\nliars = 1\n\
                [[timeline]]\nat = \"3s\"\npublish = 2\n\
                [[timeline]]\nat = \"4s\"\ncrash = 0.1\ndown = \"2s\"\n\
                [[timeline]]\nat = \"5s\"\npartition = 0.3\nheal = \"7s\"\n\
                [[timeline]]\nat = \"6s\"\nrogue = 9\n\
                [[timeline]]\nat = \"8s\"\npublish = 3\nunhealthy = 0.3\n\
                rollout = { waves = [0.2, 1.0], bake = \"1s\", max_unhealthy = 0.1 }\n\
                [[timeline]]\nat = \"9s\"\nchurn = 0.02\ndown = \"1s\"\nuntil = \"12s\"\n";
    let sc = Scenario::parse(Path::new("threads.toml"), text).unwrap();
    let table = |r: &driftless_sim::Report| {
        let t = r.table();
        t.lines()
            .filter(|l| !l.contains("wall time"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let one = tempfile::tempdir().unwrap();
    let first = run_scenario_with(sc.clone(), Some(5), Some(one.path()), Some(1)).unwrap();
    for threads in [2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let r = run_scenario_with(sc.clone(), Some(5), Some(dir.path()), Some(threads)).unwrap();
        assert_eq!(
            table(&first),
            table(&r),
            "summary differs on {threads} threads"
        );
        for n in OUTPUTS {
            let a = std::fs::read(one.path().join(n)).unwrap();
            let b = std::fs::read(dir.path().join(n)).unwrap();
            assert!(a == b, "{n} differs between 1 and {threads} threads");
        }
    }
    // The scenario exercised what it should.
    let f = |k: &str| first.figure(k).cloned().unwrap();
    assert!(f("crashes").as_u64().unwrap() > 0);
    assert!(f("drift_events").as_u64().unwrap() > 0);
    assert!(f("v3_ever_applied").as_u64().unwrap() > 0);
}

#[test]
fn a_bad_scenario_names_file_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "nodes = 10\nduration = \"10s\"\n\n[[timeline]]\nat = \"soon\"\npublish = 2\n",
    )
    .unwrap();
    let err = run_scenario(p.as_path(), None, None).unwrap_err();
    assert!(err.is_bad_input());
    let msg = err.to_string();
    assert!(
        msg.contains("bad.toml") && msg.contains("timeline[0].at"),
        "{msg}"
    );
}
